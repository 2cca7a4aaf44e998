"""``mr.save`` / ``mr.load``: checkpoints without pickle.

``torch.save`` pickles, and unpickling a file runs whatever code its author chose.
A minires checkpoint is data only: a zip archive (stored, not compressed: weights
hardly compress) holding

    manifest.json      the structure of the saved object, as JSON
    arrays/0.npy ...   one .npy file per array, written and read with allow_pickle=False

The manifest describes the object as nested nodes, e.g. a state dict::

    {"type": "dict", "items": [[{"type": "str", "value": "fc.weight"},
                                {"type": "tensor", "array": 0, "requires_grad": false}]]}

and lists every array with its dtype, shape and the device it was saved from. What
can be saved: dicts (keys: str, int, float, bool or None), lists, tuples, Tensors and
Parameters, numpy/cupy arrays and scalars, and plain None/bool/int/float/str. Tuples
come back as tuples and int keys as ints (optimizer state dicts use them); arbitrarily
large ints (numpy's RNG state) are exact. Anything else is refused with the path to it.

Writing is atomic: the archive goes to a temporary file in the destination folder,
which is flushed, fsync'ed and renamed over the destination only once complete, so a
crash or an error midway leaves the previous checkpoint intact.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import uuid
import zipfile

import numpy

from . import backend
from .tensor import Tensor

FORMAT = "minires.checkpoint"
VERSION = 1
MANIFEST = "manifest.json"


class CheckpointError(RuntimeError):
    """A file that ``mr.load`` cannot read: not a checkpoint, truncated, or corrupted."""


# --------------------------------------------------------------------------- save


def save(obj, path) -> None:
    """Save ``obj`` (e.g. ``model.state_dict()``) to the file ``path``, atomically."""
    path = os.fspath(path)
    encoder = _Encoder()
    root = encoder.encode(obj, "obj")  # fails on unsupported values before touching disk
    manifest = {"format": FORMAT, "version": VERSION, "root": root,
                "arrays": encoder.entries}
    manifest_bytes = json.dumps(manifest, allow_nan=False, indent=1).encode("utf-8")

    def write(file):
        with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_STORED,
                             allowZip64=True) as archive:
            archive.writestr(MANIFEST, manifest_bytes)
            for i, array in enumerate(encoder.arrays):
                with archive.open(_member(i), "w", force_zip64=True) as member:
                    # one array at a time on the host: a GPU checkpoint never needs
                    # all of its arrays copied to host memory at once
                    _write_array(member, backend.to_numpy(array))

    _atomic_write(path, write)


def _write_array(file, array: numpy.ndarray) -> None:
    numpy.lib.format.write_array(file, array, allow_pickle=False)


def _member(index: int) -> str:
    return f"arrays/{index}.npy"


def _atomic_write(path: str, write) -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it over ``path``.

    The rename is atomic on POSIX and Windows (``os.replace``), and it only happens after
    the data reached the disk (``fsync``): readers see the old file or the new one,
    never half of one. On any error the temporary file is removed.
    """
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "xb") as file:  # 'x': never clobber; honours the umask
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt too: never leave a stray temporary file
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    if os.name == "posix":  # make the rename itself durable
        with contextlib.suppress(OSError):
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


class _Encoder:
    """Turns an object into manifest nodes and collects its arrays."""

    def __init__(self):
        self.arrays = []  # in index order; holding them keeps their id()s unique
        self.entries = []  # manifest description of each array
        self._index = {}  # id(array) -> index: an array saved twice is stored once
        self._active = set()  # ids of the containers being encoded (cycle detection)

    def encode(self, obj, where: str) -> dict:
        if obj is None:
            return {"type": "none"}
        if isinstance(obj, numpy.generic):  # first: numpy.float64 is also a Python float
            return {"type": "numpy_scalar", "array": self._add_array(numpy.asarray(obj), where)}
        if isinstance(obj, bool):  # before int: bool is a subclass of int
            return {"type": "bool", "value": obj}
        if isinstance(obj, int):
            return {"type": "int", "value": int(obj)}
        if isinstance(obj, float):
            # JSON has no NaN or infinity: those go as strings float() reads back
            value = float(obj)
            return {"type": "float", "value": value if math.isfinite(value) else repr(value)}
        if isinstance(obj, str):
            return {"type": "str", "value": obj}
        if isinstance(obj, Tensor):
            from .nn.parameter import Parameter  # lazy: nn imports far more than we need

            return {"type": "tensor", "array": self._add_array(obj.data, where),
                    "requires_grad": bool(obj.requires_grad),
                    "parameter": isinstance(obj, Parameter)}
        if isinstance(obj, numpy.ndarray) or backend.is_cupy_array(obj):
            return {"type": "ndarray", "array": self._add_array(obj, where)}
        if isinstance(obj, (dict, list, tuple)):
            if id(obj) in self._active:
                raise ValueError(f"save: {where} contains itself (a reference cycle); "
                                 "a checkpoint can only hold a tree")
            self._active.add(id(obj))
            try:
                if isinstance(obj, dict):
                    items = []
                    for key, value in obj.items():
                        if not (key is None or isinstance(key, (str, int, float))):
                            raise TypeError(f"save: dict key {key!r} at {where} is a "
                                            f"{type(key).__name__}; keys must be str, int, "
                                            "float, bool or None")
                        items.append([self.encode(key, where),
                                      self.encode(value, f"{where}[{key!r}]")])
                    return {"type": "dict", "items": items}
                kind = "list" if isinstance(obj, list) else "tuple"
                return {"type": kind,
                        "items": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]}
            finally:
                self._active.discard(id(obj))
        raise TypeError(f"save: cannot save {where}, a {type(obj).__module__}."
                        f"{type(obj).__qualname__}: a checkpoint holds only dicts, lists, "
                        "tuples, Tensors, numpy/cupy arrays and None/bool/int/float/str "
                        "(it is never pickled)")

    def _add_array(self, array, where: str) -> int:
        if id(array) in self._index:
            return self._index[id(array)]
        if array.dtype.hasobject:
            raise TypeError(f"save: {where} is an array of dtype {array.dtype}, which holds "
                            "Python objects that only pickle can store; convert it to a "
                            "numeric dtype")
        index = len(self.arrays)
        self._index[id(array)] = index
        self.arrays.append(array)
        self.entries.append({"dtype": array.dtype.str, "shape": list(array.shape),
                             "device": backend.device_of(array)})
        return index


# --------------------------------------------------------------------------- load


def load(path, map_location="cpu"):
    """Read back an object written by ``save``.

    ``map_location`` is where tensors and arrays go: ``'cpu'`` (the default: numpy, so a
    checkpoint saved on a GPU loads on any machine), ``'cuda'`` (cupy), or ``None`` for
    the device each one was saved from. Pickle is never used: a file that would need it
    is refused.
    """
    path = os.fspath(path)
    device = None if map_location is None else backend.normalize_device(map_location)
    with open(path, "rb") as file:  # a missing file raises FileNotFoundError as usual
        try:
            archive = zipfile.ZipFile(file)
        except (zipfile.BadZipFile, EOFError, ValueError) as error:
            raise CheckpointError(f"load: {path} is not a minires checkpoint: not a zip "
                                  f"archive, or a truncated one ({error})") from error
        with archive:
            return _Decoder(archive, path, device).load()


class _Decoder:
    """Checks the manifest against the archive and rebuilds the saved object."""

    def __init__(self, archive: zipfile.ZipFile, path: str, device):
        self.archive, self.path, self.device = archive, path, device
        self._loaded = {}  # array index -> array, so arrays saved once stay shared

    def fail(self, message: str, error: Exception | None = None):
        raise CheckpointError(f"load: {self.path}: {message}") from error

    def load(self):
        names = set(self.archive.namelist())
        if MANIFEST not in names:
            hint = (" (it looks like a PyTorch checkpoint: minires does not unpickle files; "
                    "convert its tensors to numpy arrays and mr.save those)"
                    if any(n.endswith("data.pkl") for n in names) else "")
            self.fail(f"not a minires checkpoint: the archive has no {MANIFEST}{hint}")
        try:
            manifest = json.loads(self._read(MANIFEST).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            self.fail(f"{MANIFEST} is not valid JSON ({error})", error)
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            self.fail(f"{MANIFEST} does not describe a minires checkpoint "
                      f"(format {manifest.get('format') if isinstance(manifest, dict) else '?'!r})")
        if not isinstance(manifest.get("version"), int) or manifest["version"] > VERSION:
            self.fail(f"checkpoint format version {manifest.get('version')!r} is not one this "
                      f"minires reads (up to {VERSION}); upgrade minires")
        self.entries = manifest.get("arrays")
        if not isinstance(self.entries, list) or "root" not in manifest:
            self.fail(f"{MANIFEST} lacks its 'root' or 'arrays' entry")
        expected = {_member(i) for i in range(len(self.entries))}
        present = {n for n in names if n.startswith("arrays/")}
        if present != expected:
            missing, extra = sorted(expected - present), sorted(present - expected)
            self.fail(f"the archive does not match its manifest: missing members {missing}, "
                      f"unexpected members {extra}")
        return self.decode(manifest["root"])

    def _read(self, name: str) -> bytes:
        try:
            return self.archive.read(name)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
            self.fail(f"member {name} is corrupted or truncated ({error})", error)

    def decode(self, node):
        if not isinstance(node, dict) or "type" not in node:
            self.fail(f"manifest node {node!r:.80} has no type")
        kind = node["type"]
        try:
            if kind == "none":
                return None
            if kind == "bool" and isinstance(node["value"], bool):
                return node["value"]
            if kind == "int" and type(node["value"]) is int:
                return node["value"]
            if kind == "float" and isinstance(node["value"], (int, float, str)):
                return float(node["value"])
            if kind == "str" and isinstance(node["value"], str):
                return node["value"]
            if kind in ("list", "tuple"):
                items = [self.decode(item) for item in node["items"]]
                return items if kind == "list" else tuple(items)
            if kind == "dict":
                return {self.decode(key): self.decode(value) for key, value in node["items"]}
            if kind == "ndarray":
                return self.array(node["array"], self.device)
            if kind == "numpy_scalar":
                return self.array(node["array"], "cpu")[()]
            if kind == "tensor":
                return self.tensor(node)
        except (KeyError, TypeError, ValueError) as error:
            self.fail(f"malformed manifest node {node!r:.80} ({error!r})", error)
        self.fail(f"malformed manifest node {node!r:.80}")

    def tensor(self, node) -> Tensor:
        data = self.array(node["array"], self.device)
        requires_grad = bool(node.get("requires_grad", False))
        if node.get("parameter", False):
            from .nn.parameter import Parameter

            return Parameter(data, requires_grad=requires_grad)
        return Tensor(data, requires_grad=requires_grad)

    def array(self, index, device):
        """Array ``index``, verified against the manifest, on ``device`` (None: as saved)."""
        if type(index) is not int or not 0 <= index < len(self.entries):
            self.fail(f"the manifest refers to array {index!r}, but lists "
                      f"{len(self.entries)} arrays")
        entry = self.entries[index]
        target = device or entry.get("device", "cpu")
        if target not in ("cpu", "cuda"):
            self.fail(f"the manifest entry of {_member(index)} names an unknown device "
                      f"{target!r}")
        key = (index, target)
        if key in self._loaded:
            return self._loaded[key]
        name = _member(index)
        try:
            dtype = numpy.dtype(entry["dtype"])
            shape = tuple(entry["shape"])
        except (KeyError, TypeError, ValueError) as error:
            self.fail(f"the manifest entry of {name} is malformed: {entry!r:.80}", error)
        if dtype.hasobject:
            self.fail(f"{name} has dtype {dtype}, which would need pickle to load; refused")
        try:
            with self.archive.open(name) as member:
                array = numpy.lib.format.read_array(member, allow_pickle=False)
                if member.read(1):
                    self.fail(f"{name} has data after its array")
        except CheckpointError:
            raise
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
            # ValueError: truncated data, a bad .npy header, or an object array
            # (numpy refuses those when allow_pickle=False)
            self.fail(f"cannot read {name}: {error}", error)
        if array.dtype != dtype or array.shape != shape:
            self.fail(f"{name} holds an array of dtype {array.dtype} and shape {array.shape}, "
                      f"but the manifest says dtype {dtype} and shape {shape}")
        array = backend.to_device(array, target)
        self._loaded[key] = array
        return array


__all__ = ["CheckpointError", "load", "save"]
