"""Pretrained weights: a file in any supported format, or a named torchvision release.

``resnet18(weights=...)`` (and ``resnet34``, ``resnet50``) takes

* a path to a file: a minires checkpoint (a saved state dict, or a training checkpoint,
  whose ``'model'`` entry is used), a safetensors file, or a PyTorch ``.pth``/``.pt``
  (read through torch's ``weights_only`` loader; needs torch). A state dict wrapped in
  ``{'state_dict': ...}`` or ``{'model': ...}``, or with the ``module.`` prefix of
  PyTorch's DataParallel (or ``_orig_mod.`` of torch.compile), is unwrapped;
* a torchvision release name, ``"IMAGENET1K_V1"``, ``"DEFAULT"`` or
  ``"ResNet50_Weights.IMAGENET1K_V2"`` as torchvision spells them: downloaded once from
  download.pytorch.org into ``<data root>/weights/`` (``$MINIRES_DATA``, default
  ``~/.cache/minires``), atomically, and checked against the SHA-256 prefix torchvision
  publishes in the file name; a file already there is checked once (remembered by its
  size and mtime). Offline, or with the file placed there by hand, the error says where
  the file goes and what hash it must have. The files are PyTorch files, so reading them
  needs torch; once read they can be saved as safetensors for machines without it.

``load_weights(model, weights)`` does the same for any model: it checks every name,
shape and dtype against the model and says what does not match before copying anything.

The torchvision weights were trained on ImageNet-1k. Their inputs are RGB images scaled
to [0, 1], resized (shorter side 256, or 232 for ResNet-50 V2), centre-cropped to
224x224 and normalised with ``IMAGENET_MEAN``/``IMAGENET_STD``:
``pretrained_weights('resnet18', 'DEFAULT').transforms()`` is that pipeline. See
docs/weights.md for their licence terms.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass

import numpy

from ..serialization import CheckpointError, load
from ..tensors import Tensor

TORCHVISION_URL = "https://download.pytorch.org/models/"


@dataclass(frozen=True)
class PretrainedWeights:
    """One published set of weights: where it is, how to check it, what its inputs need."""

    arch: str
    name: str
    filename: str
    resize: int = 256
    crop: int = 224
    num_classes: int = 1000
    url_base: str = TORCHVISION_URL
    source: str = "torchvision"

    @property
    def url(self) -> str:
        return self.url_base + self.filename

    @property
    def sha256_prefix(self) -> str:
        """The hash prefix torchvision publishes in the file name (``-f37072fd.pth``)."""
        match = re.search(r"-([0-9a-f]{8,})\.[A-Za-z]+$", self.filename)
        if match is None:
            raise ValueError(f"{self.filename}: no hash in the file name")
        return match.group(1)

    def transforms(self):
        """The evaluation preprocessing of these weights, as batch transforms on [0, 1] images."""
        from ..data.transforms import (
            IMAGENET_MEAN,
            IMAGENET_STD,
            CenterCrop,
            Compose,
            Normalize,
            Resize,
        )

        return Compose([Resize(self.resize), CenterCrop(self.crop),
                        Normalize(IMAGENET_MEAN, IMAGENET_STD)])


# torchvision's ImageNet-1k weights for the ResNets whose names and shapes minires shares
# (torchvision/models/resnet.py). DEFAULT is the name torchvision gives the best one.
WEIGHTS = {
    "resnet18": {"IMAGENET1K_V1": PretrainedWeights("resnet18", "IMAGENET1K_V1",
                                                    "resnet18-f37072fd.pth")},
    "resnet34": {"IMAGENET1K_V1": PretrainedWeights("resnet34", "IMAGENET1K_V1",
                                                    "resnet34-b627a593.pth")},
    "resnet50": {"IMAGENET1K_V1": PretrainedWeights("resnet50", "IMAGENET1K_V1",
                                                    "resnet50-0676ba61.pth"),
                 "IMAGENET1K_V2": PretrainedWeights("resnet50", "IMAGENET1K_V2",
                                                    "resnet50-11ad3fa6.pth", resize=232)},
}
DEFAULT = {"resnet18": "IMAGENET1K_V1", "resnet34": "IMAGENET1K_V1", "resnet50": "IMAGENET1K_V2"}
MAX_DOWNLOAD_BYTES = 1 << 30  # the largest of these files is about 100 MB


def _release_name(arch: str, name: str) -> str | None:
    """``name`` as a key of WEIGHTS[arch] (torchvision's spellings accepted), else None."""
    if arch not in WEIGHTS or not isinstance(name, str):
        return None
    key = name.split(".", 1)[1] if name.lower().startswith(f"{arch}_weights.") else name
    key = key.upper()
    if key == "DEFAULT":
        key = DEFAULT[arch]
    return key if key in WEIGHTS[arch] else None


def pretrained_weights(arch: str, name: str = "DEFAULT") -> PretrainedWeights:
    """The published weights ``name`` of ``arch`` ('resnet18', 'resnet34', 'resnet50')."""
    key = _release_name(arch, name)
    if key is None:
        known = {a: ["DEFAULT", *names] for a, names in WEIGHTS.items()}
        raise ValueError(f"no published weights {name!r} for {arch!r}; known: {known}")
    return WEIGHTS[arch][key]


def weights_folder(root=None) -> str:
    from ..data.readers import default_root

    return os.path.join(os.path.expanduser(os.fspath(root)) if root else default_root(),
                        "weights")


def weights_file(weights: PretrainedWeights, root=None) -> str:
    """The local path of ``weights``: downloaded and verified on first use, checked after."""
    from ..data.download import download_url, verify_file

    path = os.path.join(weights_folder(root), weights.filename)
    where = (f"\nTo place it by hand: download {weights.url} (by any means) and save it as "
             f"{path}; minires checks that its SHA-256 starts with {weights.sha256_prefix}. "
             f"Or pass weights= the path of a file you have.")
    if os.path.isfile(path):
        verify_file(path, sha256=weights.sha256_prefix,
                    what=f"{weights.arch} {weights.name} weights file", where=where)
        return path
    if weights.filename.endswith((".pth", ".pt")):
        from ..torch_io import _torch

        _torch(path)  # needs torch to read it: say so before a 100 MB download
    print(f"downloading {weights.source} {weights.arch} {weights.name} weights: {weights.url} "
          f"-> {path}", file=sys.stderr)
    download_url(weights.url, path, sha256=weights.sha256_prefix, where=where,
                 max_bytes=MAX_DOWNLOAD_BYTES)
    return path


# --------------------------------------------------------------------------- state dicts

_WRAPPERS = ("state_dict", "model", "model_state_dict")
_PREFIXES = ("module.", "_orig_mod.")


def _is_tensor(value) -> bool:
    from .. import backend

    return isinstance(value, (Tensor, numpy.ndarray)) or backend.is_cupy_array(value)


def state_dict_from(obj, where: str = "the weights") -> dict:
    """The ``{name: tensor}`` dict inside ``obj``: unwraps ``'state_dict'``/``'model'``
    entries (a minires training checkpoint keeps its weights under ``'model'``) and strips
    a ``module.``/``_orig_mod.`` prefix every name carries."""
    for _ in range(4):
        if not isinstance(obj, dict):
            raise CheckpointError(f"{where} holds a {type(obj).__name__}, not a state dict "
                                  "({name: tensor})")
        if obj and all(isinstance(k, str) and _is_tensor(v) for k, v in obj.items()):
            break
        inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            keys = ", ".join(repr(k) for k in list(obj)[:8])
            raise CheckpointError(
                f"{where} is a dict (keys {keys}{', ...' if len(obj) > 8 else ''}) that is "
                "neither a state dict ({name: tensor}) nor wraps one under 'state_dict' or "
                "'model'")
        obj = inner
    else:
        raise CheckpointError(f"{where}: no state dict within four levels of wrapping")
    for prefix in _PREFIXES:  # DataParallel/DDP, torch.compile
        if all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix):]: v for k, v in obj.items()}
    return obj


@dataclass
class WeightsReport:
    """What ``load_weights`` did: the names it copied, and those it left (strict=False)."""

    source: str
    loaded: list
    missing: list
    unexpected: list

    def __str__(self) -> str:
        text = f"loaded {len(self.loaded)} tensors from {self.source}"
        if self.missing:
            text += f"; {len(self.missing)} of the model's kept their values"
        if self.unexpected:
            text += f"; {len(self.unexpected)} in the file were not used"
        return text


def _describe(names, what: str, limit: int = 8) -> str:
    """'2 missing (a, b)', '0 unexpected', '96 unexpected (a, b, ... (96 in all))'."""
    if not names:
        return f"0 {what}"
    shown = ", ".join(names[:limit])
    return f"{len(names)} {what} ({shown}{', ...' if len(names) > limit else ''})"


def load_weights(model, weights, *, arch: str | None = None, strict: bool = True,
                 root=None) -> WeightsReport:
    """Copy ``weights`` into ``model``: a state dict, a file path, or a release name.

    Checks first, copies after: names (all of the model's must be there and nothing else
    when ``strict``; a file from before PyTorch 0.4.1 without BatchNorm's
    ``num_batches_tracked`` counters gets zeros, as PyTorch does), shapes (always), and
    dtypes (floating point stays floating point). ``arch`` names the architecture for
    release names ('resnet18' ...); a string that is a release name is taken as one
    (write ``'./DEFAULT'`` for a file of that name). Returns a ``WeightsReport``.
    """
    source = "a state dict"
    if isinstance(weights, PretrainedWeights) or (arch is not None and _release_name(
            arch, weights) is not None):
        release = weights if isinstance(weights, PretrainedWeights) else \
            pretrained_weights(arch, weights)
        path = weights_file(release, root)
        source = f"{release.source} {release.arch} {release.name} ({path})"
        weights = load(path)
    elif isinstance(weights, (str, os.PathLike)):
        path = os.fspath(weights)
        if not os.path.exists(path):
            names = (f"; or one of the published names {['DEFAULT', *WEIGHTS[arch]]}"
                     if arch in WEIGHTS else "")
            raise FileNotFoundError(f"weights: no such file {path!r}{names}")
        source = path
        weights = load(path)
    state = state_dict_from(weights, source)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    filled = [k for k in missing if k.endswith("num_batches_tracked")]
    missing = [k for k in missing if k not in filled]
    problems = []
    if strict and (missing or unexpected):
        problems.append(f"names do not match {type(model).__name__}'s: "
                        f"{_describe(missing, 'missing')}, {_describe(unexpected, 'unexpected')}"
                        "; are these weights of another architecture?")
    for key, target in own.items():
        if key not in state:
            continue
        value = state[key]
        array = value.data if isinstance(value, Tensor) else value
        if tuple(array.shape) != tuple(target.shape):
            problems.append(f"{key}: shape {tuple(array.shape)} in {source}, "
                            f"{tuple(target.shape)} in the model")
        elif (numpy.dtype(array.dtype).kind == "f") != (numpy.dtype(target.dtype).kind == "f"):
            problems.append(f"{key}: dtype {array.dtype} in {source}, {target.dtype} in the "
                            "model")
    if problems:
        raise CheckpointError(f"cannot load {source} into {type(model).__name__}:\n  "
                              + "\n  ".join(problems[:20])
                              + (f"\n  ... {len(problems) - 20} more" if len(problems) > 20
                                 else ""))
    state = {k: v for k, v in state.items() if k in own}
    for key in filled:
        state[key] = numpy.zeros((), dtype=numpy.int64)
    model.load_state_dict(state, strict=False)
    return WeightsReport(source, sorted(k for k in state if k not in filled), missing,
                         unexpected)


__all__ = ["DEFAULT", "PretrainedWeights", "WEIGHTS", "WeightsReport", "load_weights",
           "pretrained_weights", "state_dict_from", "weights_file", "weights_folder"]
