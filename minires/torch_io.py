"""PyTorch ``.pth``/``.pt`` files, read without ever running their code.

A PyTorch file is a pickle (inside a zip archive since PyTorch 1.6). An ordinary
unpickler runs whatever the file's author put there, so minires has none. It reads these
files only through PyTorch's own restricted loader, ``torch.load(path,
weights_only=True, map_location='cpu')``, which rebuilds tensors and plain containers
and refuses every other object. That needs torch (``pip install 'minires[torch]'``), at
least version ``MIN_TORCH``: earlier versions' ``weights_only`` loader has published
code-execution flaws (CVE-2025-32434, fixed in 2.6; CVE-2026-24747, fixed in 2.10).
Before torch sees a zip-format file (every ``torch.save`` since PyTorch 1.6), ``mr.load``
checks its members as it checks its own: stored uncompressed, unencrypted, each once,
within the file. Files in the older, pre-1.6 format are plain pickles: their declared
storage sizes are checked by torch alone.

What comes back mirrors the file, with every torch tensor turned into a minires Tensor
(its bytes copied exactly) and ``torch.Size`` into a tuple; a ``torch.dtype`` or
``torch.device`` becomes its name (``'torch.float32'``, ``'cpu'``). Tensors NumPy has no
dtype for (bfloat16, float8, quantized, sparse) are refused with the path to them. A
checkpoint that wraps its state dict (``{'state_dict': ...}``, ``{'model': ...}``,
``module.`` prefixes) comes back as it is; ``minires.models.pretrained.state_dict_from``
unwraps it.
"""

from __future__ import annotations

import os
import re

from . import backend
from .serialization import MAX_DEPTH, CheckpointError
from .tensors import Tensor

MIN_TORCH = (2, 10)


def _torch(path: str):
    try:
        import torch
    except ImportError:
        raise CheckpointError(
            f"load: {path} is a PyTorch file; minires reads those only through PyTorch's "
            "own safe loader (torch.load with weights_only=True), and PyTorch is not "
            "installed: pip install 'minires[torch]'. Or convert it where torch is "
            "installed: from safetensors.torch import save_file; "
            "save_file(torch.load(path, weights_only=True), 'weights.safetensors'); "
            "mr.load reads safetensors without torch") from None
    found = tuple(int(part) for part in re.findall(r"\d+", torch.__version__)[:2])
    if found < MIN_TORCH:
        raise CheckpointError(
            f"load: {path} is a PyTorch file, and torch {torch.__version__}'s weights_only "
            "loader has published code-execution flaws (CVE-2025-32434, CVE-2026-24747); "
            f"minires reads PyTorch files only with torch >= "
            f"{'.'.join(map(str, MIN_TORCH))}: pip install -U 'minires[torch]'")
    return torch


def load_torch(path, map_location="cpu"):
    """Read a PyTorch file with ``torch.load(weights_only=True)``; torch tensors become Tensors."""
    path = os.fspath(path)
    device = backend.normalize_device(map_location)
    torch = _torch(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:
        text = str(error)
        if "Weights only load failed" in text or "Unsupported global" in text:
            reason = text.split("\n\n")[-1].strip() if "\n\n" in text else text
            raise CheckpointError(
                f"load: {path} holds objects other than tensors and plain containers, so "
                "PyTorch's weights_only loader refused it (minires never unpickles "
                f"anything else): {reason[:600]}") from error
        raise CheckpointError(f"load: {path} is a PyTorch file that torch could not read "
                              f"({type(error).__name__}: {text[:600]})") from error
    return _Converter(torch, path, device).convert(obj, "obj", 0)


class _Converter:
    """torch objects -> minires objects, checking each on the way."""

    def __init__(self, torch, path: str, device: str):
        self.torch, self.path, self.device = torch, path, device

    def fail(self, message: str):
        raise CheckpointError(f"load: {self.path}: {message}")

    def convert(self, obj, where: str, depth: int):
        torch = self.torch
        if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
            return obj
        if isinstance(obj, torch.Tensor):
            return self.tensor(obj, where)
        if isinstance(obj, (torch.dtype, torch.device)):
            return str(obj)
        if isinstance(obj, (dict, list, tuple)):
            if depth >= MAX_DEPTH:
                self.fail(f"{where} is nested more than {MAX_DEPTH} containers deep")
            if isinstance(obj, dict):
                return {key: self.convert(value, f"{where}[{key!r}]", depth + 1)
                        for key, value in obj.items()}
            items = [self.convert(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(obj)]
            return items if isinstance(obj, list) else tuple(items)
        self.fail(f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}, which "
                  "minires has no counterpart for")

    def tensor(self, tensor, where: str) -> Tensor:
        torch = self.torch
        if tensor.layout != torch.strided or tensor.is_quantized:
            self.fail(f"{where} is a {tensor.layout} {'quantized ' if tensor.is_quantized else ''}"
                      "tensor; minires reads dense tensors only (call .to_dense() or "
                      ".dequantize() in PyTorch first)")
        try:
            array = tensor.detach().cpu().numpy()
        except TypeError:
            self.fail(f"{where} has dtype {tensor.dtype}, which NumPy (and so minires) has no "
                      "type for; convert it in PyTorch first, e.g. "
                      "{k: v.float() for k, v in state_dict.items()}")
        # own the bytes: never a view into torch's storage, shared or memory-mapped
        return Tensor(backend.to_device(array.copy(), self.device))


__all__ = ["MIN_TORCH", "load_torch"]
