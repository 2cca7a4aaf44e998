"""``mr.save`` / ``mr.load``: checkpoints without pickle, and weights from other tools.

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
Parameters, numpy/cupy arrays and scalars, and plain None/bool/int/float/str, nested
up to ``MAX_DEPTH`` containers deep. Tuples come back as tuples and int keys as ints
(optimizer state dicts use them); arbitrarily large ints (numpy's RNG state) are exact.
Anything else is refused with the path to it.

Writing is atomic (``minires.files.atomic_write``): the archive goes to a temporary file
in the destination folder, which is flushed, fsync'ed and renamed over the destination
only once complete, so a crash or an error midway leaves the previous file intact; the
temporary files of killed writes are removed by the next write into that folder.

Reading treats the file as hostile: every size is checked against the file's real size
before anything is allocated (a member cannot claim more bytes than the file holds, an
array header cannot claim more than its member stores), compressed or encrypted members
are refused (minires never writes them, and a compressed member can expand a thousand
times), nesting is bounded, and every manifest entry is type-checked. Whatever is wrong,
the answer is a ``CheckpointError`` naming the file and the problem.

``mr.load`` also reads two formats of other tools, recognised by their content, not
their name: safetensors files (``minires.safetensors_io``) and PyTorch ``.pth``/``.pt``
files (``minires.torch_io``, through torch's ``weights_only`` loader when torch is
installed). ``mr.save`` writes safetensors when asked (``format="safetensors"``) or when
the file name ends in ``.safetensors``.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import zipfile

import numpy

from . import backend
from .files import atomic_write
from .nn.parameter import Parameter  # a saved Parameter loads as one
from .tensors import Tensor

FORMAT = "minires.checkpoint"
VERSION = 1
MANIFEST = "manifest.json"
MAX_DEPTH = 100  # containers inside containers; a training checkpoint needs about 6
# A ResNet-50 training checkpoint's manifest is ~60 KB. The cap bounds what parsing a
# hostile one costs: Python objects take up to ~20 times the JSON text.
MAX_MANIFEST_BYTES = 16 << 20
# JSON levels per container level: a dict node, its items list, a [key, value] pair
_MAX_JSON_DEPTH = 3 * MAX_DEPTH + 8
_CHUNK = 16 << 20  # arrays are read in pieces of this size, never via one big bytes object
_ARRAY_MEMBER = re.compile(r"^arrays/(0|[1-9][0-9]*)\.npy$")
# dtype kinds an array may have: bool, ints, floats, complex, bytes, str, datetimes;
# not objects (pickle), not void/structured (their fields could hold objects)
_DTYPE_KINDS = "biufcSUmM"
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"


class CheckpointError(RuntimeError):
    """A file that ``mr.load`` cannot read: not a checkpoint, truncated, corrupted or hostile."""


# --------------------------------------------------------------------------- save


def save(obj, path, format: str | None = None) -> None:
    """Save ``obj`` (e.g. ``model.state_dict()``) to the file ``path``, atomically.

    ``format``: ``"minires"`` (any supported object, the default) or ``"safetensors"``
    (a flat ``{name: tensor}`` dict that PyTorch and other tools read; the default when
    ``path`` ends in ``.safetensors``).
    """
    path = os.fspath(path)
    if format is None:
        format = "safetensors" if path.endswith(".safetensors") else "minires"
    if format == "safetensors":
        from .safetensors_io import save_safetensors

        return save_safetensors(obj, path)
    if format != "minires":
        raise ValueError(f"save: unknown format {format!r}; expected 'minires' or "
                         "'safetensors'")
    encoder = _Encoder()
    root = encoder.encode(obj, "obj", 0)  # fails on unsupported values before touching disk
    manifest = {"format": FORMAT, "version": VERSION, "root": root,
                "arrays": encoder.entries}
    manifest_bytes = json.dumps(manifest, allow_nan=False, indent=1).encode("utf-8")
    if len(manifest_bytes) > MAX_MANIFEST_BYTES:
        raise ValueError(f"save: the structure of {type(obj).__name__} takes "
                         f"{len(manifest_bytes)} bytes of manifest, more than the "
                         f"{MAX_MANIFEST_BYTES} a checkpoint allows; keep long runs of numbers "
                         "in arrays (numpy.asarray(values)), not in Python lists")

    def write(file):
        with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_STORED,
                             allowZip64=True) as archive:
            archive.writestr(MANIFEST, manifest_bytes)
            for i, array in enumerate(encoder.arrays):
                with archive.open(_member(i), "w", force_zip64=True) as member:
                    # one array at a time on the host: a GPU checkpoint never needs
                    # all of its arrays copied to host memory at once
                    _write_array(member, backend.to_numpy(array))

    atomic_write(path, write)


def _write_array(file, array: numpy.ndarray) -> None:
    numpy.lib.format.write_array(file, array, allow_pickle=False)


def _member(index: int) -> str:
    return f"arrays/{index}.npy"


class _Encoder:
    """Turns an object into manifest nodes and collects its arrays."""

    def __init__(self):
        self.arrays = []  # in index order; holding them keeps their id()s unique
        self.entries = []  # manifest description of each array
        self._index = {}  # id(array) -> index: an array saved twice is stored once
        self._active = set()  # ids of the containers being encoded (cycle detection)

    def encode(self, obj, where: str, depth: int) -> dict:
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
            return {"type": "tensor", "array": self._add_array(obj.data, where),
                    "requires_grad": bool(obj.requires_grad),
                    "parameter": isinstance(obj, Parameter)}
        if isinstance(obj, numpy.ndarray) or backend.is_cupy_array(obj):
            return {"type": "ndarray", "array": self._add_array(obj, where)}
        if isinstance(obj, (dict, list, tuple)):
            if id(obj) in self._active:
                raise ValueError(f"save: {where} contains itself (a reference cycle); "
                                 "a checkpoint can only hold a tree")
            if depth >= MAX_DEPTH:
                raise ValueError(f"save: {where} is nested {depth + 1} containers deep; a "
                                 f"checkpoint holds at most {MAX_DEPTH} levels")
            self._active.add(id(obj))
            try:
                if isinstance(obj, dict):
                    items = []
                    for key, value in obj.items():
                        if not (key is None or isinstance(key, (str, int, float))):
                            raise TypeError(f"save: dict key {key!r} at {where} is a "
                                            f"{type(key).__name__}; keys must be str, int, "
                                            "float, bool or None")
                        items.append([self.encode(key, where, depth + 1),
                                      self.encode(value, f"{where}[{key!r}]", depth + 1)])
                    return {"type": "dict", "items": items}
                kind = "list" if isinstance(obj, list) else "tuple"
                return {"type": kind, "items": [self.encode(v, f"{where}[{i}]", depth + 1)
                                                for i, v in enumerate(obj)]}
            finally:
                self._active.discard(id(obj))
        raise TypeError(f"save: cannot save {where}, a {type(obj).__module__}."
                        f"{type(obj).__qualname__}: a checkpoint holds only dicts, lists, "
                        "tuples, Tensors, numpy/cupy arrays and None/bool/int/float/str "
                        "(it is never pickled)")

    def _add_array(self, array, where: str) -> int:
        if id(array) in self._index:
            return self._index[id(array)]
        if array.dtype.hasobject or array.dtype.kind not in _DTYPE_KINDS:
            raise TypeError(f"save: {where} is an array of dtype {array.dtype}, which "
                            + ("holds Python objects that only pickle can store; convert it "
                               "to a numeric dtype" if array.dtype.hasobject else
                               "a checkpoint does not store (structured or void); convert it "
                               "to a numeric dtype"))
        index = len(self.arrays)
        self._index[id(array)] = index
        self.arrays.append(array)
        self.entries.append({"dtype": array.dtype.str, "shape": list(array.shape),
                             "device": backend.device_of(array)})
        return index


# --------------------------------------------------------------------------- load


def load(path, map_location="cpu"):
    """Read back an object written by ``save``, or the tensors of a safetensors/PyTorch file.

    ``map_location`` is where tensors and arrays go: ``'cpu'`` (the default: numpy, so a
    checkpoint saved on a GPU loads on any machine), ``'cuda'`` (cupy), or ``None`` for
    the device each one was saved from. The format is recognised by the file's content:
    a minires checkpoint, a safetensors file (a dict of Tensors comes back), or a PyTorch
    file (read by ``torch.load(weights_only=True)``; needs torch). Pickle is never used
    by minires itself: a plain pickle file is refused.
    """
    path = os.fspath(path)
    device = None if map_location is None else backend.normalize_device(map_location)
    with open(path, "rb") as file:  # a missing file raises FileNotFoundError as usual
        size = os.fstat(file.fileno()).st_size
        head = file.read(16)
        kind = _sniff(head, size)
        if kind == "zip":
            return _load_zip(file, path, size, device)
    if kind == "safetensors":
        from .safetensors_io import load_safetensors

        return load_safetensors(path, map_location=device or "cpu")
    if kind == "torch":
        from .torch_io import load_torch

        return load_torch(path, map_location=device or "cpu")
    if kind == "pickle":
        raise CheckpointError(f"load: {path} is a Python pickle, not a minires checkpoint: "
                              "unpickling runs whatever code the file's author chose, so "
                              "minires never does it; save the arrays with mr.save or as "
                              "safetensors instead")
    if size == 0:
        raise CheckpointError(f"load: {path} is empty (0 bytes): not a minires checkpoint")
    raise CheckpointError(f"load: {path} is not a minires checkpoint, a safetensors file "
                          f"or a PyTorch file (it starts with the bytes {head[:8]!r})")


def _sniff(head: bytes, size: int) -> str:
    """The format of a file from its first bytes: zip, safetensors, torch, pickle or unknown."""
    if head[:2] == b"PK":
        return "zip"
    if head.startswith(_LEGACY_TORCH_MAGIC):  # torch.save before PyTorch 1.6: a pickle
        return "torch"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"  # a pickle protocol 2-5 header
    if len(head) >= 9 and head[8:9] == b"{":
        # safetensors: an 8-byte little-endian header length, then the JSON header
        header = int.from_bytes(head[:8], "little")
        if 2 <= header <= size - 8:
            return "safetensors"
    return "unknown"


def _load_zip(file, path: str, size: int, device):
    file.seek(0)
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, OSError,
            OverflowError, UnicodeDecodeError, NotImplementedError, struct.error) as error:
        raise CheckpointError(f"load: {path} is not a minires checkpoint: not a zip "
                              f"archive, or a truncated one ({error})") from error
    with archive:
        names = archive.namelist()
        decoder = _Decoder(archive, path, size, device)
        try:
            if MANIFEST not in names and any(n == "data.pkl" or n.endswith("/data.pkl")
                                             for n in names):
                # PyTorch >= 1.6 saves a zip with data.pkl. Its members face the same
                # checks before torch reads them: a compressed one could be a zip bomb.
                decoder.check_members()
                from .torch_io import load_torch

                return load_torch(path, map_location=device or "cpu")
            return decoder.load()
        except CheckpointError:
            raise
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, TypeError, KeyError,
                IndexError, AttributeError, OverflowError, NotImplementedError,
                UnicodeDecodeError, RecursionError, struct.error) as error:
            # every known problem has its own message above; this names anything else
            # the zip or npy readers find, rather than letting it out bare
            raise CheckpointError(f"load: {path} is corrupted: {type(error).__name__}: "
                                  f"{error}") from error


_JSON_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.S)


def _json_too_deep(data: bytes, limit: int) -> bool:
    """Whether the arrays and objects of a JSON text nest deeper than ``limit``.

    Scans tokens without parsing (strings are skipped whole: a bracket inside one nests
    nothing) and stops at the first level too deep, in constant memory.
    """
    level = 0
    for match in _JSON_TOKENS.finditer(data):
        token = match.group()[:1]
        if token in (b"[", b"{"):
            level += 1
            if level > limit:
                return True
        elif token in (b"]", b"}"):
            level -= 1
    return False


class _Decoder:
    """Checks an archive against its manifest, and its manifest against itself, then
    rebuilds the saved object."""

    def __init__(self, archive: zipfile.ZipFile, path: str, size: int, device):
        self.archive, self.path, self.size, self.device = archive, path, size, device
        self._loaded = {}  # (array index, device) -> array: arrays saved once stay shared

    def fail(self, message: str, error: Exception | None = None):
        raise CheckpointError(f"load: {self.path}: {message}") from error

    # ----------------------------------------------------------------- the archive
    def check_members(self) -> dict:
        """Every member stored plainly, within the file, once: ``{name: ZipInfo}``."""
        members, claimed = {}, 0
        for info in self.archive.infolist():
            name = info.filename
            if name in members:
                self.fail(f"the archive lists a member named {name!r} twice; which one is "
                          "meant cannot be known")
            if info.flag_bits & 0x1:
                self.fail(f"member {name} is encrypted; minires and PyTorch never encrypt")
            if info.compress_type != zipfile.ZIP_STORED:
                method = {zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2",
                          zipfile.ZIP_LZMA: "lzma"}.get(info.compress_type,
                                                        f"unknown method {info.compress_type}")
                self.fail(f"member {name} is compressed ({method}); minires (like PyTorch) "
                          "writes members uncompressed and refuses compressed ones, which "
                          "could expand far beyond the file's size")
            if info.compress_size != info.file_size:
                self.fail(f"member {name} is stored uncompressed but its sizes disagree "
                          f"({info.compress_size} bytes stored, {info.file_size} claimed)")
            if info.header_offset + info.compress_size > self.size:
                self.fail(f"member {name} claims {info.compress_size} bytes at offset "
                          f"{info.header_offset}, beyond the end of the {self.size}-byte "
                          "file: it is truncated or corrupted")
            claimed += info.compress_size
            members[name] = info
        if claimed > self.size:
            self.fail(f"its members claim {claimed} bytes in all but the file has only "
                      f"{self.size}: members overlap or the sizes are forged")
        return members

    def load(self):
        members = self.check_members()
        if MANIFEST not in members:
            self.fail(f"not a minires checkpoint: the archive has no {MANIFEST}")
        manifest = self.manifest(members[MANIFEST])
        self.entries = manifest["arrays"]
        expected = {_member(i) for i in range(len(self.entries))}
        present = {n for n in members if n != MANIFEST}
        if present != expected:
            missing = sorted(expected - present)
            extra = sorted(present - expected)
            self.fail(f"the archive does not match its manifest: missing members "
                      f"{missing[:10]}, unexpected members {extra[:10]}")
        self.members = members
        return self.decode(manifest["root"], 0)

    def manifest(self, info: zipfile.ZipInfo) -> dict:
        if info.file_size > MAX_MANIFEST_BYTES:
            self.fail(f"{MANIFEST} is {info.file_size} bytes; a checkpoint's manifest is at "
                      f"most {MAX_MANIFEST_BYTES} bytes")
        data = self._read(MANIFEST)
        if _json_too_deep(data, _MAX_JSON_DEPTH):
            self.fail(f"{MANIFEST} nests more than {_MAX_JSON_DEPTH} levels deep; a "
                      f"checkpoint holds at most {MAX_DEPTH} containers inside each other")
        try:
            manifest = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as error:
            # ValueError: bad JSON, or an integer too long to convert
            self.fail(f"{MANIFEST} is not valid JSON ({error})", error)
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            found = manifest.get("format") if isinstance(manifest, dict) else None
            self.fail(f"{MANIFEST} does not describe a minires checkpoint (format "
                      f"{found!r:.80})")
        version = manifest.get("version")
        if type(version) is not int or not 1 <= version <= VERSION:
            self.fail(f"checkpoint format version {version!r:.40} is not one this "
                      f"minires reads (1 to {VERSION}); a newer minires may read it")
        if not isinstance(manifest.get("arrays"), list) or "root" not in manifest:
            self.fail(f"{MANIFEST} lacks its 'root' or its 'arrays' list")
        return manifest

    def _read(self, name: str) -> bytes:
        try:
            return self.archive.read(name)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
            self.fail(f"member {name} is corrupted or truncated ({error})", error)

    # ----------------------------------------------------------------- the object
    def decode(self, node, depth: int):
        if not isinstance(node, dict) or not isinstance(node.get("type"), str):
            self.fail(f"manifest node {node!r:.80} has no type")
        kind = node["type"]
        if kind in ("list", "tuple", "dict"):
            if depth >= MAX_DEPTH:  # the JSON nesting check makes this unreachable
                self.fail(f"the manifest nests more than {MAX_DEPTH} containers")
            items = node.get("items")
            if not isinstance(items, list):
                self.fail(f"malformed manifest node {node!r:.80} (its items are not a list)")
            if kind == "dict":
                result = {}
                for pair in items:
                    if not isinstance(pair, list) or len(pair) != 2:
                        self.fail(f"malformed manifest node {node!r:.80} (a dict item is "
                                  "not a [key, value] pair)")
                    key = self.decode(pair[0], depth + 1)
                    if not (key is None or isinstance(key, (str, int, float))):
                        self.fail(f"malformed manifest node {node!r:.80} (a dict key is a "
                                  f"{type(key).__name__})")
                    result[key] = self.decode(pair[1], depth + 1)
                return result
            values = [self.decode(item, depth + 1) for item in items]
            return values if kind == "list" else tuple(values)
        value = node.get("value")
        if kind == "none":
            return None
        if kind == "bool" and type(value) is bool:
            return value
        if kind == "int" and type(value) is int:
            return value
        if kind == "float" and type(value) in (int, float):
            return float(value)
        if kind == "float" and value in ("nan", "inf", "-inf"):
            return float(value)
        if kind == "str" and type(value) is str:
            return value
        if kind == "ndarray":
            return self.array(node.get("array"), self.device)
        if kind == "numpy_scalar":
            array = self.array(node.get("array"), "cpu")
            if array.ndim != 0:
                self.fail(f"manifest node {node!r:.80} is a numpy scalar but its array has "
                          f"shape {array.shape}")
            return array[()]
        if kind == "tensor":
            return self.tensor(node)
        self.fail(f"malformed manifest node {node!r:.80}")

    def tensor(self, node) -> Tensor:
        requires_grad, parameter = node.get("requires_grad", False), node.get("parameter", False)
        if type(requires_grad) is not bool or type(parameter) is not bool:
            self.fail(f"malformed manifest node {node!r:.80} (requires_grad and parameter "
                      "must be true or false)")
        data = self.array(node.get("array"), self.device)
        if requires_grad and data.dtype.kind != "f":
            self.fail(f"manifest node {node!r:.80} asks for gradients of an array of dtype "
                      f"{data.dtype}; only floating point tensors can require them")
        if parameter:
            return Parameter(data, requires_grad=requires_grad)
        return Tensor(data, requires_grad=requires_grad)

    # ----------------------------------------------------------------- arrays
    def entry(self, index) -> tuple:
        """The manifest's (dtype, shape, device) of array ``index``, checked."""
        if type(index) is not int or not 0 <= index < len(self.entries):
            self.fail(f"the manifest refers to array {index!r:.40}, but lists "
                      f"{len(self.entries)} arrays")
        name, entry = _member(index), self.entries[index]
        if not isinstance(entry, dict):
            self.fail(f"the manifest entry of {name} is not an object: {entry!r:.80}")
        shape, device = entry.get("shape"), entry.get("device", "cpu")
        if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
            self.fail(f"the manifest entry of {name} has no valid shape: {entry!r:.80}")
        if device not in ("cpu", "cuda"):
            self.fail(f"the manifest entry of {name} names an unknown device "
                      f"{device!r:.40}")
        dtype = self.dtype(entry.get("dtype"), f"the manifest entry of {name}")
        return dtype, tuple(shape), device

    def dtype(self, descr, where: str) -> numpy.dtype:
        if not isinstance(descr, (str, numpy.dtype)):
            self.fail(f"{where} has no valid dtype ({descr!r:.80})")
        try:
            dtype = numpy.dtype(descr)
        except (TypeError, ValueError, SyntaxError) as error:
            self.fail(f"{where} has an unknown dtype {descr!r:.80}", error)
        if dtype.hasobject:
            self.fail(f"{where} has dtype {dtype}, which would need pickle to load; refused")
        if dtype.kind not in _DTYPE_KINDS or dtype.fields is not None or dtype.subdtype:
            self.fail(f"{where} has dtype {dtype}, which a checkpoint never holds")
        return dtype

    def array(self, index, device):
        """Array ``index``, verified against the manifest, on ``device`` (None: as saved)."""
        dtype, shape, saved_on = self.entry(index)
        target = device or saved_on
        key = (index, target)
        if key in self._loaded:
            return self._loaded[key]
        host = self._loaded.get((index, "cpu"))
        if host is None:
            host = self.read_npy(_member(index), dtype, shape)
        array = backend.to_device(host, target)
        self._loaded[key] = array
        return array

    def read_npy(self, name: str, dtype: numpy.dtype, shape: tuple) -> numpy.ndarray:
        """Read member ``name``, a .npy file, allocating only what its member stores."""
        stored = self.members[name].file_size
        try:
            with self.archive.open(name) as member:
                version = numpy.lib.format.read_magic(member)
                if version == (1, 0):
                    header = numpy.lib.format.read_array_header_1_0(member)
                elif version == (2, 0):
                    header = numpy.lib.format.read_array_header_2_0(member)
                else:
                    self.fail(f"{name} is a .npy file of version {version}; minires writes "
                              "versions 1.0 and 2.0")
                found_shape, fortran_order, found_dtype = header
                offset = member.tell()
                found_dtype = self.dtype(found_dtype, name)
                if any(type(d) is not int or d < 0 for d in found_shape):
                    self.fail(f"{name} has an invalid shape {found_shape!r:.80} in its header")
                if found_dtype != dtype or tuple(found_shape) != shape:
                    self.fail(f"{name} holds an array of dtype {found_dtype} and shape "
                              f"{tuple(found_shape)}, but the manifest says dtype {dtype} and "
                              f"shape {shape}")
                nbytes = math.prod(shape) * dtype.itemsize  # Python ints: never overflows
                if nbytes != stored - offset:
                    self.fail(f"{name} claims an array of shape {shape} and dtype {dtype} "
                              f"({nbytes} bytes) but stores {stored - offset} bytes of data; "
                              "nothing was allocated")
                array = numpy.empty(math.prod(shape), dtype=dtype)
                if nbytes:
                    view = array.view(numpy.uint8)
                    done = 0
                    while done < nbytes:
                        chunk = member.read(min(_CHUNK, nbytes - done))
                        if not chunk:
                            self.fail(f"{name} ends after {done} of its {nbytes} data bytes")
                        view[done: done + len(chunk)] = numpy.frombuffer(chunk, numpy.uint8)
                        done += len(chunk)
                if member.read(1):  # also makes zipfile check the CRC of the whole member
                    self.fail(f"{name} has data after its array")
        except CheckpointError:
            raise
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, SyntaxError) as error:
            # ValueError: a bad .npy header; BadZipFile: a CRC mismatch (a changed byte)
            self.fail(f"cannot read {name}: {error}", error)
        if fortran_order:
            return array.reshape(shape[::-1]).transpose()  # (d0, ..., dn) in Fortran order
        return array.reshape(shape)


__all__ = ["CheckpointError", "MAX_DEPTH", "load", "save"]
