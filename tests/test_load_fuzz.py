"""Fuzzing mr.load: damaged and crafted files give a CheckpointError or a correct load.

Random truncations, byte flips, inserted and deleted bytes, forged zip header fields,
forged .npy headers and mangled manifests, from a fixed seed (so a failure reproduces).
The default run tries a few hundred files per format; ``pytest -m slow`` tries thousands
and adds byte flips inside PyTorch files. Anything but a ``CheckpointError`` naming the
file (a MemoryError, a RecursionError, a bare zipfile or numpy exception) fails, and so
does a load that returns something other than what was saved.
"""

from __future__ import annotations

import io
import json
import math
import zipfile

import numpy as np
import pytest

import minires as mr
from minires import backend
from minires.nn import Parameter
from minires.serialization import CheckpointError, load, save

SEED = 1234


def reference():
    rng = np.random.default_rng(0)
    return {
        "model": {"conv.weight": mr.tensor(rng.standard_normal((4, 3, 3, 3)).astype(np.float32)),
                  "bn.num_batches_tracked": mr.tensor(np.array(7, dtype=np.int64))},
        "params": [Parameter(rng.standard_normal(5)), mr.tensor([1.5], requires_grad=True)],
        "mask": np.array([[True, False], [False, True]]),
        "step": 3, "lr": 0.1, "name": "run", "nan": float("nan"), "none": None,
        "rng": {"state": 2**100 + 7, "scalar": np.float32(2.5)},
        "nested": (1, [2, (3, {"deep": np.arange(6, dtype=np.int16).reshape(2, 3)})]),
        7: "int key",
    }


def same(a, b) -> bool:
    """Deep equality that also checks types (tuple vs list, bool vs int, int vs float)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, mr.Tensor):
        return a.requires_grad == b.requires_grad and same(backend.to_numpy(a.data),
                                                           backend.to_numpy(b.data))
    if isinstance(a, (np.ndarray, np.generic)):
        return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


# --------------------------------------------------------------------------- mutations


def truncate(rng, data: bytes) -> bytes:
    return data[: int(rng.integers(0, len(data)))]


def flip(rng, data: bytes) -> bytes:
    out = bytearray(data)
    for at in rng.integers(0, len(out), size=int(rng.integers(1, 9))):
        out[at] ^= int(rng.integers(1, 256))
    return bytes(out)


def splice(rng, data: bytes) -> bytes:
    at = int(rng.integers(0, len(data)))
    if rng.random() < 0.5:
        return data[:at] + rng.bytes(int(rng.integers(1, 64))) + data[at:]
    return data[:at] + data[at + int(rng.integers(1, 64)):]


def forge_zip_field(rng, data: bytes) -> bytes:
    """Overwrite one field of one central-directory or local header with a forged value."""
    out = bytearray(data)
    signature = [b"PK\x01\x02", b"PK\x03\x04"][int(rng.integers(0, 2))]
    starts = [i for i in range(len(out)) if out.startswith(signature, i)]
    at = starts[int(rng.integers(0, len(starts)))]
    # central: flags 8, method 10, crc 16, sizes 20/24, name length 28, offset 42;
    # local: flags 6, method 8, crc 14, sizes 18/22, name length 26
    offsets = [8, 10, 16, 20, 24, 28, 42] if signature == b"PK\x01\x02" else [6, 8, 14, 18, 22, 26]
    field = offsets[int(rng.integers(0, len(offsets)))]
    width = 2 if field in (6, 8, 10, 26, 28) else 4
    value = int(rng.choice([0, 1, 8, 12, 14, 99, 2**(8 * width) - 1, int(rng.integers(0, 2**16))]))
    out[at + field: at + field + width] = (value % 2**(8 * width)).to_bytes(width, "little")
    return bytes(out)


def members(data: bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rebuild(items: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, value in items.items():
            archive.writestr(name, value)
    return buffer.getvalue()


def forge_npy_header(rng, data: bytes) -> bytes:
    """Give one array's .npy header another shape or dtype (a huge one, often)."""
    items = members(data)
    name = sorted(n for n in items if n.startswith("arrays/"))[int(rng.integers(0, 7))]
    shape = tuple(int(d) for d in rng.choice([0, 1, 3, 2**20, 2**31, 2**40],
                                             size=int(rng.integers(0, 4))))
    descr = str(rng.choice(["<f4", "<f8", "|u1", "<i8", "|O", "|V16", "<U1000000"]))
    header = io.BytesIO()
    try:
        np.lib.format.write_array_header_1_0(header, {"descr": descr, "fortran_order":
                                                      bool(rng.random() < 0.3), "shape": shape})
    except ValueError:
        return data
    body = items[name]
    items[name] = header.getvalue() + body[128:] if len(body) > 128 else header.getvalue()
    return rebuild(items)


JUNK = [None, -1, 0, 2**70, 1e308, "x", "<f8", "|O", [], {}, [[[[]]]], {"type": "pickle"},
        True, [-5], [2**40, 2**40]]


def forge_manifest(rng, data: bytes) -> bytes:
    """Replace one value somewhere in the manifest with junk, or nest it very deeply."""
    items = members(data)
    manifest = json.loads(items["manifest.json"])
    slots = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                slots.append((node, key))
                walk(value)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                slots.append((node, i))
                walk(value)

    walk(manifest)
    container, key = slots[int(rng.integers(0, len(slots)))]
    if rng.random() < 0.1:
        depth = int(rng.choice([200, 5000, 50000]))
        container[key] = json.loads("[" * depth + "]" * depth) if depth < 900 else None
        text = json.dumps(manifest)
        if depth >= 900:  # too deep for json.dumps itself: splice the text in
            text = text.replace("null", "[" * depth + "]" * depth, 1)
        items["manifest.json"] = text.encode()
    else:
        container[key] = JUNK[int(rng.integers(0, len(JUNK)))]
        items["manifest.json"] = json.dumps(manifest).encode()
    return rebuild(items)


MUTATIONS = [truncate, flip, splice, forge_zip_field, forge_npy_header, forge_manifest]
# These rewrite the archive with fresh CRCs: the result may be a well-formed checkpoint
# of another object (a manifest value changed from 3 to -1), which loads as that object.
REBUILT = (forge_npy_header, forge_manifest)


def check(path, original, exact: bool):
    """A CheckpointError naming the file, or (``exact``) the original object."""
    try:
        back = load(path)
    except CheckpointError as error:
        assert str(path) in str(error), error
        return "refused"
    assert not exact or same(original, back), "a damaged file loaded as something else"
    return "loaded"


def fuzz(tmp_path, count: int, seed: int) -> dict:
    original = reference()
    save(original, tmp_path / "good.ckpt")
    good = (tmp_path / "good.ckpt").read_bytes()
    rng = np.random.default_rng(seed)
    outcomes = {"refused": 0, "loaded": 0}
    for i in range(count):
        mutation = MUTATIONS[i % len(MUTATIONS)]
        data = mutation(rng, good)
        path = tmp_path / f"fuzz-{i}.ckpt"
        path.write_bytes(data)
        try:
            outcomes[check(path, original, exact=mutation not in REBUILT)] += 1
        except Exception as error:  # report which file, which mutation, and keep it
            raise AssertionError(f"{mutation.__name__} (seed {seed}, case {i}): mr.load raised "
                                 f"{type(error).__name__}: {error}") from error
        path.unlink()
    return outcomes


def test_damaged_minires_checkpoints_give_a_checkpoint_error_or_a_correct_load(tmp_path):
    outcomes = fuzz(tmp_path, 300, SEED)
    assert outcomes["refused"] > 200  # most damage is caught (a flipped timestamp is not damage)


@pytest.mark.slow
def test_many_damaged_minires_checkpoints(tmp_path):
    for seed in range(10):
        fuzz(tmp_path, 1000, SEED + 1 + seed)


def fuzz_foreign(tmp_path, good: bytes, suffix: str, count: int, seed: int, mutations) -> None:
    """Damaged safetensors/PyTorch files: a CheckpointError, or plain data and Tensors.

    Neither format checksums its bytes, so a changed byte inside a tensor loads as another
    value, one inside a name as another name, one inside a pickle as another object; what
    must hold is that nothing but a CheckpointError escapes and that whatever loads is
    plain data and host Tensors whose bytes match their shapes.
    """
    rng = np.random.default_rng(seed)
    for i in range(count):
        mutation = mutations[i % len(mutations)]
        path = tmp_path / f"fuzz-{i}{suffix}"
        path.write_bytes(mutation(rng, good))
        try:
            back = load(path)
        except CheckpointError as error:
            assert str(path) in str(error), error
            continue
        except Exception as error:
            raise AssertionError(f"{mutation.__name__} (seed {seed}, case {i}): mr.load raised "
                                 f"{type(error).__name__}: {error}") from error
        assert plain_data(back), f"{mutation.__name__}: {back!r:.200}"


def plain_data(obj) -> bool:
    """Only containers, plain values and host Tensors whose bytes match their shape."""
    if isinstance(obj, dict):
        return all(plain_data(k) and plain_data(v) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return all(plain_data(v) for v in obj)
    if isinstance(obj, mr.Tensor):
        return (isinstance(obj.data, np.ndarray)
                and obj.data.nbytes == math.prod(obj.shape) * obj.dtype.itemsize)
    return obj is None or isinstance(obj, (bool, int, float, complex, str, bytes))


def safetensors_bytes(tmp_path) -> bytes:
    state = {k: v for k, v in reference()["model"].items()}
    state["fc.bias"] = mr.zeros(10)
    mr.save_safetensors(state, tmp_path / "ref.safetensors")
    return (tmp_path / "ref.safetensors").read_bytes()


def test_damaged_safetensors_files_give_a_checkpoint_error_or_their_tensors(tmp_path):
    fuzz_foreign(tmp_path, safetensors_bytes(tmp_path), ".safetensors", 200, SEED,
                 [truncate, flip, splice])


def torch_bytes(tmp_path) -> bytes:
    torch = pytest.importorskip("torch")
    torch.save({"w": torch.arange(12.0).reshape(3, 4), "n": torch.tensor(3)},
               tmp_path / "ref.pth")
    return (tmp_path / "ref.pth").read_bytes()


def test_truncated_pytorch_files_give_a_checkpoint_error(tmp_path):
    fuzz_foreign(tmp_path, torch_bytes(tmp_path), ".pth", 40, SEED, [truncate])


@pytest.mark.slow
def test_many_damaged_safetensors_and_pytorch_files(tmp_path):
    for seed in range(5):
        fuzz_foreign(tmp_path, safetensors_bytes(tmp_path), ".safetensors", 1000, SEED + seed,
                     [truncate, flip, splice])
        fuzz_foreign(tmp_path, torch_bytes(tmp_path), ".pth", 300, SEED + seed,
                     [truncate, flip, splice])
