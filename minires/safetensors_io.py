"""safetensors in and out: the weights format PyTorch, Hugging Face and most tools read.

A safetensors file is an 8-byte header length, a JSON header giving each tensor's name,
dtype, shape and byte range, then the raw bytes: data only, nothing to unpickle, and
every size checkable before anything is read. minires reads and writes it with the
``safetensors`` package's NumPy API, so no torch is needed.

It holds one flat dict of named tensors, which is what a state dict is. minires's
layers use PyTorch's names and layouts (``conv1.weight`` is ``(out, in, kH, kW)``,
``fc.weight`` is ``(out, in)``), so a file written here loads in PyTorch with
``model.load_state_dict(safetensors.torch.load_file(path), strict=True)`` and a file
PyTorch wrote with ``safetensors.torch.save_file(model.state_dict(), path)`` loads here;
the bytes are copied as they are (bit for bit). Full training state (optimizer moments,
step counters, the RNG) is not a flat dict of tensors: ``mr.save``'s own format keeps it.

The header records ``{"format": "pt"}``, the convention tools such as Hugging Face's
use to say "PyTorch layouts" (TensorFlow's differ).
"""

from __future__ import annotations

import os

import numpy

from . import backend
from .files import atomic_write
from .serialization import CheckpointError
from .tensors import Tensor

# The NumPy dtypes safetensors stores, by the names its header uses.
DTYPES = {
    "BOOL": numpy.bool_, "U8": numpy.uint8, "I8": numpy.int8, "U16": numpy.uint16,
    "I16": numpy.int16, "U32": numpy.uint32, "I32": numpy.int32, "U64": numpy.uint64,
    "I64": numpy.int64, "F16": numpy.float16, "F32": numpy.float32, "F64": numpy.float64,
    "C64": numpy.complex64,
}
_SUPPORTED = {numpy.dtype(d) for d in DTYPES.values()}


def _package():
    try:
        import safetensors.numpy as package
    except ImportError as error:  # a dependency of minires: only a broken install lacks it
        raise ImportError("reading and writing safetensors files needs the safetensors "
                          "package: pip install safetensors") from error
    return package


def save_safetensors(state, path, metadata: dict | None = None) -> None:
    """Write ``state``, a flat ``{name: Tensor or array}`` dict, as a safetensors file.

    Atomic like ``mr.save``. ``metadata`` (str to str) goes into the header next to
    ``"format": "pt"``. Refused, naming the entry: non-str names, values that are not
    tensors or arrays (a nested dict, an int step counter), and dtypes safetensors
    cannot store (object, str, float128, ...).
    """
    path = os.fspath(path)
    if not isinstance(state, dict):
        raise TypeError(f"save_safetensors: expected a flat dict {{name: tensor}} such as "
                        f"model.state_dict(), got a {type(state).__name__}")
    arrays = {}
    for name, value in state.items():
        if not isinstance(name, str):
            raise TypeError(f"save_safetensors: tensor names must be str, got {name!r} "
                            f"({type(name).__name__})")
        array = value.data if isinstance(value, Tensor) else value
        if not (isinstance(array, numpy.ndarray) or backend.is_cupy_array(array)):
            raise TypeError(
                f"save_safetensors: {name!r} is a {type(value).__name__}; a safetensors file "
                "holds a flat dict of tensors only. Save full training state (optimizer, "
                "counters, nested dicts) with mr.save's own format")
        array = backend.to_numpy(array)
        if array.dtype not in _SUPPORTED:
            raise TypeError(f"save_safetensors: {name!r} has dtype {array.dtype}, which "
                            "safetensors cannot store; supported: "
                            + ", ".join(sorted(str(d) for d in _SUPPORTED)))
        # native little-endian and C-contiguous: the bytes go into the file as they are
        # (not ascontiguousarray: it turns a 0-d array, a BatchNorm counter, into shape (1,))
        arrays[name] = array.astype(array.dtype.newbyteorder("<"), order="C", copy=False)
    header = {"format": "pt"}
    for key, value in (metadata or {}).items():
        if not (isinstance(key, str) and isinstance(value, str)):
            raise TypeError(f"save_safetensors: metadata must map str to str, got "
                            f"{key!r}: {value!r}")
        header[key] = value
    data = _package().save(arrays, metadata=header)
    atomic_write(path, lambda file: file.write(data))


def load_safetensors(path, map_location="cpu") -> dict:
    """The tensors of a safetensors file as ``{name: Tensor}`` on ``map_location``.

    ``model.load_state_dict(mr.load_safetensors(path))`` loads weights PyTorch wrote.
    A file that is not valid safetensors, or holds a dtype NumPy has no type for
    (bfloat16, float8), raises ``CheckpointError`` naming the file and the tensor.
    """
    path = os.fspath(path)
    device = backend.normalize_device(map_location)
    _package()
    from safetensors import safe_open

    if not os.path.exists(path):
        raise FileNotFoundError(f"load_safetensors: no such file: {path}")
    arrays = {}
    try:
        with safe_open(path, framework="np") as file:
            for name in file.keys():
                kind = file.get_slice(name).get_dtype()
                if kind not in DTYPES:
                    raise CheckpointError(
                        f"load: {path}: tensor {name!r} has dtype {kind}, which NumPy (and so "
                        "minires) has no type for; convert it where it was made, e.g. in "
                        "PyTorch: {k: v.float() for k, v in state_dict.items()}")
                array = file.get_tensor(name)
                if not array.flags.writeable or not array.flags.owndata:
                    array = array.copy()  # never a view of the file's mapping
                arrays[name] = array
    except CheckpointError:
        raise
    except Exception as error:  # the safetensors package's own errors, and its parsing's
        raise CheckpointError(f"load: {path} is not a valid safetensors file "
                              f"({type(error).__name__}: {error})") from error
    return {name: Tensor(backend.to_device(array, device)) for name, array in arrays.items()}


__all__ = ["DTYPES", "load_safetensors", "save_safetensors"]
