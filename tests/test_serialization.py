"""mr.save / mr.load: round trips, dtypes, atomic writes, corrupt files, and no pickle."""

import io
import json
import os
import pickle
import signal
import stat
import subprocess
import sys
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

import minires as mr
from minires import backend, files, serialization
from minires.nn import Parameter
from minires.serialization import CheckpointError, load, save


def same(a, b):
    """Deep equality that also checks types (tuple vs list, bool vs int, int vs float)."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, dict):
        assert list(a) == list(b) and [type(k) for k in a] == [type(k) for k in b]
        for key in a:
            same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            same(x, y)
    elif isinstance(a, mr.Tensor):
        assert a.requires_grad == b.requires_grad and a.dtype == b.dtype
        np.testing.assert_array_equal(backend.to_numpy(a.data), backend.to_numpy(b.data))
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, float) and a != a:
        assert b != b  # NaN
    else:
        assert a == b


def test_round_trip_of_nested_structures(tmp_path):
    obj = {
        "model": {"fc.weight": mr.tensor([[1.0, 2.0]]), "fc.bias": mr.zeros(1)},
        "params": [Parameter(np.ones(3)), mr.tensor([1.5], requires_grad=True)],
        3: ("a", (1, 2.5), [None, True, False]),
        -7: {"nested": [{"deep": np.arange(4)}]},
        "floats": [0.1, -0.0, float("inf"), float("-inf"), float("nan"), 1e-310],
        "ints": [0, -1, 2**64 + 1, -(2**100)],
        "text": "héllo ✓ \"quoted\" \n",
        "numpy_scalars": (np.float32(1.25), np.int64(-3), np.bool_(True)),
        "empty": ({}, [], ()),
        "": None,
        2.5: "float key",
        None: "None key",
        True: "bool key",
    }
    save(obj, tmp_path / "ckpt")
    back = load(tmp_path / "ckpt")
    same(obj, back)
    assert isinstance(back["params"][0], Parameter)
    assert not isinstance(back["params"][1], Parameter) and back["params"][1].requires_grad
    assert back["model"]["fc.weight"].grad is None and back["model"]["fc.weight"].is_leaf


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "uint8", "bool", "int32",
                                   "float16", "complex64"])
def test_dtypes_are_preserved(dtype, tmp_path):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((3, 5)) * 10).astype(dtype)
    save({"array": array, "tensor": mr.Tensor(array)}, tmp_path / "c")
    back = load(tmp_path / "c")
    assert back["array"].dtype == np.dtype(dtype) and back["tensor"].dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back["array"], array)
    np.testing.assert_array_equal(back["tensor"].data, array)


def test_odd_shapes_and_layouts(tmp_path):
    base = np.arange(24.0).reshape(2, 3, 4)
    obj = [base.transpose(2, 0, 1), base[:, ::2], np.asfortranarray(base), np.float64(3.0),
           np.array(7), np.zeros((0, 3)), np.array(["ab", "c"])]
    save(obj, tmp_path / "c")
    for a, b in zip(obj, load(tmp_path / "c")):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def test_rng_state_round_trips(tmp_path):
    mr.manual_seed(123)
    mr.randn(5)
    save({"rng": backend.get_rng_state()}, tmp_path / "c")
    expected = mr.randn(4).data
    mr.manual_seed(999)
    state = load(tmp_path / "c")["rng"]
    backend.set_rng_state(state)
    np.testing.assert_array_equal(mr.randn(4).data, expected)
    assert isinstance(state["numpy"]["state"]["state"], int) and state["numpy"]["state"][
        "state"] > 2**64


def test_an_array_saved_twice_is_stored_once_and_stays_shared(tmp_path):
    w = np.arange(6.0)
    t = mr.Tensor(w)
    save({"a": w, "b": w, "t": t}, tmp_path / "c")
    with zipfile.ZipFile(tmp_path / "c") as archive:
        assert [n for n in archive.namelist() if n.startswith("arrays/")] == ["arrays/0.npy"]
    back = load(tmp_path / "c")
    assert back["a"] is back["b"] and back["t"].data is back["a"]


def test_file_is_a_zip_of_npy_files_and_a_json_manifest(tmp_path):
    save({"w": np.ones(2, dtype=np.float32)}, tmp_path / "c")
    with zipfile.ZipFile(tmp_path / "c") as archive:
        manifest = json.loads(archive.read("manifest.json"))
        assert manifest["format"] == "minires.checkpoint"
        assert manifest["arrays"] == [{"dtype": "<f4", "shape": [2], "device": "cpu"}]
        with archive.open("arrays/0.npy") as f:
            np.testing.assert_array_equal(np.load(f, allow_pickle=False), [1, 1])


def test_unsupported_values_are_refused_with_their_path(tmp_path):
    target = tmp_path / "c"
    with pytest.raises(TypeError, match=r"obj\['layers'\]\[1\].*set"):
        save({"layers": [1, {2}]}, target)
    with pytest.raises(TypeError, match="object.*pickle"):
        save({"x": np.array([1, "a", None], dtype=object)}, target)
    with pytest.raises(TypeError, match="dict key"):
        save({(1, 2): 3}, target)
    loop = []
    loop.append(loop)
    with pytest.raises(ValueError, match="cycle"):
        save(loop, target)
    assert os.listdir(tmp_path) == []  # nothing written, not even a temporary file


def test_load_accepts_str_paths_and_reports_missing_files(tmp_path):
    save([1], str(tmp_path / "c"))
    assert load(str(tmp_path / "c")) == [1]
    with pytest.raises(FileNotFoundError, match="nope"):
        load(tmp_path / "nope")


# --------------------------------------------------------------------------- atomic writes


def test_a_failure_while_writing_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "model.ckpt"
    save({"version": 1, "w": np.zeros(3)}, target)
    old_bytes = target.read_bytes()
    calls = []

    def failing_write(file, array):
        calls.append(1)
        if len(calls) == 2:
            file.write(b"half an array")
            raise OSError("disk full (simulated)")
        serialization.numpy.lib.format.write_array(file, array, allow_pickle=False)

    monkeypatch.setattr(serialization, "_write_array", failing_write)
    with pytest.raises(OSError, match="disk full"):
        save({"version": 2, "w": np.ones(3), "v": np.ones(2)}, target)
    assert len(calls) == 2
    assert os.listdir(tmp_path) == ["model.ckpt"]  # no temporary file left behind
    assert target.read_bytes() == old_bytes
    assert load(target)["version"] == 1


def test_a_failing_rename_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "c"
    save("old", target)

    def failing_replace(src, dst):
        raise OSError("simulated rename failure")

    monkeypatch.setattr(serialization.os, "replace", failing_replace)
    with pytest.raises(OSError, match="rename"):
        save("new", target)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["c"] and load(target) == "old"


def test_an_interrupt_leaves_no_temporary_file(tmp_path, monkeypatch):
    def interrupted(file, array):
        raise KeyboardInterrupt

    monkeypatch.setattr(serialization, "_write_array", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save([np.ones(2)], tmp_path / "new")
    assert os.listdir(tmp_path) == []


def test_data_is_fsynced_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync file" if stat.S_ISREG(os.fstat(fd).st_mode) else "fsync dir")
        real_fsync(fd)

    def replace(src, dst):
        events.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(serialization.os, "fsync", fsync)
    monkeypatch.setattr(serialization.os, "replace", replace)
    save([1], tmp_path / "c")
    save([2], tmp_path / "c")  # overwrites
    monkeypatch.undo()
    assert load(tmp_path / "c") == [2]
    expected = ["fsync file", "replace", "fsync dir"] if os.name == "posix" else [
        "fsync file", "replace"]
    assert events == expected * 2


def test_saved_file_gets_normal_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        save([1], tmp_path / "c")
    finally:
        os.umask(umask)
    if os.name == "posix":
        assert (tmp_path / "c").stat().st_mode & 0o777 == 0o644


# --------------------------------------------------------------------------- corrupt files


def saved(tmp_path, obj=None):
    path = tmp_path / "good.ckpt"
    save({"w": np.arange(1000.0), "n": 3} if obj is None else obj, path)
    return path


def rewrite(path, members: dict):
    """Write a zip with the given members (name -> bytes) to ``path``."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def members_of(path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


@pytest.mark.parametrize("keep", [0.5, 0.97, 0.1])
def test_truncated_file_names_the_file(tmp_path, keep):
    data = saved(tmp_path).read_bytes()
    bad = tmp_path / "truncated.ckpt"
    bad.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match="truncated.ckpt"):
        load(bad)


def test_garbage_and_empty_files_are_refused(tmp_path):
    for name, data in [("garbage.bin", b"\x00not a zip at all" * 10), ("empty.ckpt", b"")]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match=name):
            load(tmp_path / name)


def test_a_flipped_byte_in_an_array_is_detected(tmp_path):
    path = saved(tmp_path)
    data = bytearray(path.read_bytes())
    offset = data.index(np.arange(1000.0)[500:501].tobytes())
    data[offset] ^= 0xFF
    bad = tmp_path / "flipped.ckpt"
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="flipped.ckpt.*arrays/0.npy"):
        load(bad)


def test_missing_member_or_manifest(tmp_path):
    members = members_of(saved(tmp_path))
    bad = tmp_path / "missing.ckpt"
    rewrite(bad, {"manifest.json": members["manifest.json"]})
    with pytest.raises(CheckpointError, match=r"missing.ckpt.*missing members \['arrays/0.npy'\]"):
        load(bad)
    rewrite(bad, {"arrays/0.npy": members["arrays/0.npy"]})
    with pytest.raises(CheckpointError, match="missing.ckpt.*no manifest.json"):
        load(bad)
    rewrite(bad, {**members, "arrays/1.npy": members["arrays/0.npy"]})
    with pytest.raises(CheckpointError, match=r"unexpected members \['arrays/1.npy'\]"):
        load(bad)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["arrays"][0].update(dtype="<f4"), "manifest says dtype float32"),
    (lambda m: m["arrays"][0].update(shape=[10, 100]), r"shape \(10, 100\)"),
    (lambda m: m.update(format="something else"), "does not describe a minires checkpoint"),
    (lambda m: m.update(version=99), "version 99"),
    (lambda m: m["root"]["items"][0].__setitem__(1, {"type": "ndarray", "array": 5}),
     "refers to array 5"),
    (lambda m: m["root"]["items"][1].__setitem__(1, {"type": "int", "value": "3"}),
     "malformed manifest node"),
    (lambda m: m["root"].update(type="pickle"), "malformed manifest node"),
])
def test_manifest_mismatch_is_refused(tmp_path, edit, message):
    members = members_of(saved(tmp_path))
    manifest = json.loads(members["manifest.json"])
    edit(manifest)
    bad = tmp_path / "edited.ckpt"
    rewrite(bad, {**members, "manifest.json": json.dumps(manifest).encode()})
    with pytest.raises(CheckpointError, match=f"edited.ckpt.*{message}"):
        load(bad)
    rewrite(bad, {**members, "manifest.json": b"{not json"})
    with pytest.raises(CheckpointError, match="edited.ckpt.*not valid JSON"):
        load(bad)


# --------------------------------------------------------------------------- no pickle


class Boom:
    """Unpickling this would run code: a real attack would call os.system instead."""

    def __reduce__(self):
        return (print, ("pickle ran!",))


def test_a_pickled_object_array_is_refused(tmp_path):
    import io

    payload = io.BytesIO()
    np.save(payload, np.array([Boom()], dtype=object), allow_pickle=True)
    members = members_of(saved(tmp_path, {"w": np.zeros(1)}))
    manifest = json.loads(members["manifest.json"])
    bad = tmp_path / "pickled.ckpt"
    # the manifest honestly says "object": refused before the array is read
    manifest["arrays"][0].update(dtype="|O")
    rewrite(bad, {"manifest.json": json.dumps(manifest).encode(),
                  "arrays/0.npy": payload.getvalue()})
    with pytest.raises(CheckpointError, match="pickled.ckpt.*pickle"):
        load(bad)
    # the manifest lies ("float64"): numpy's allow_pickle=False refuses the object array
    manifest["arrays"][0].update(dtype="<f8")
    rewrite(bad, {"manifest.json": json.dumps(manifest).encode(),
                  "arrays/0.npy": payload.getvalue()})
    with pytest.raises(CheckpointError, match="pickled.ckpt.*(allow_pickle|pickle)"):
        load(bad)


def test_a_pickle_file_is_refused(tmp_path):
    bad = tmp_path / "model.pkl"
    bad.write_bytes(pickle.dumps({"w": Boom()}))
    with pytest.raises(CheckpointError, match="model.pkl"):
        load(bad)


def test_a_torch_checkpoint_is_read_through_torchs_weights_only_loader(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    path = tmp_path / "model.pt"
    torch.save({"w": torch.arange(3.0)}, path)
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    back = load(path)
    assert calls == [{"map_location": "cpu", "weights_only": True}]
    assert isinstance(back["w"], mr.Tensor)
    np.testing.assert_array_equal(back["w"].data, [0.0, 1.0, 2.0])


def test_load_never_unpickles(tmp_path, monkeypatch):
    path = saved(tmp_path, {"w": np.ones(3), "t": mr.ones(2), "x": [(1, "a")]})

    def no_pickle(*args, **kwargs):
        raise AssertionError("pickle was used")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, no_pickle)
    back = load(path)
    np.testing.assert_array_equal(back["w"], np.ones(3))


# --------------------------------------------------------------------------- devices


def test_tensors_come_back_on_the_host_by_default(tmp_path, device):
    t = mr.tensor([1.0, 2.0], device=device, requires_grad=True)
    a = backend.to_device(np.arange(3), device)
    save({"t": t, "a": a}, tmp_path / "c")
    with zipfile.ZipFile(tmp_path / "c") as archive:
        manifest = json.loads(archive.read("manifest.json"))
    assert {e["device"] for e in manifest["arrays"]} == {device}
    back = load(tmp_path / "c")  # map_location='cpu': loads on machines without a GPU
    assert back["t"].device == "cpu" and isinstance(back["a"], np.ndarray)
    assert back["t"].requires_grad
    np.testing.assert_array_equal(back["t"].data, [1.0, 2.0])
    as_saved = load(tmp_path / "c", map_location=None)
    assert as_saved["t"].device == device and backend.device_of(as_saved["a"]) == device
    moved = load(tmp_path / "c", map_location=device)
    assert moved["t"].device == device and backend.device_of(moved["a"]) == device


def test_map_location_cuda_without_a_gpu_is_a_clear_error(tmp_path):
    if mr.cuda.is_available():
        pytest.skip("a GPU is present")
    save({"t": mr.ones(2)}, tmp_path / "c")
    with pytest.raises(RuntimeError, match="CUDA"):
        load(tmp_path / "c", map_location="cuda")
    with pytest.raises(ValueError, match="unknown device"):
        load(tmp_path / "c", map_location="tpu")


# --------------------------------------------------------------------------- hostile files
# Each of these once got past mr.load as something other than a CheckpointError (or
# loaded silently); see the module docstring of minires.serialization for the rules.

CENTRAL, LOCAL = b"PK\x01\x02", b"PK\x03\x04"


def patch_member(data: bytes, name: str, **fields) -> bytes:
    """Change header fields of member ``name`` in a zip's bytes (local and central headers).

    ``fields``: flags, method, compress_size, file_size (the last two in the central
    directory only, where zipfile reads them). Works on archives without zip64 fields.
    """
    data = bytearray(data)
    encoded = name.encode()
    at = 0
    while (at := data.find(LOCAL, at)) != -1:
        length = int.from_bytes(data[at + 26: at + 28], "little")
        if bytes(data[at + 30: at + 30 + length]) == encoded:
            if "flags" in fields:
                data[at + 6: at + 8] = fields["flags"].to_bytes(2, "little")
            if "method" in fields:
                data[at + 8: at + 10] = fields["method"].to_bytes(2, "little")
        at += 4
    at = 0
    while (at := data.find(CENTRAL, at)) != -1:
        length = int.from_bytes(data[at + 28: at + 30], "little")
        if bytes(data[at + 46: at + 46 + length]) == encoded:
            for field, offset, size in [("flags", 8, 2), ("method", 10, 2),
                                        ("compress_size", 20, 4), ("file_size", 24, 4)]:
                if field in fields:
                    data[at + offset: at + offset + size] = fields[field].to_bytes(size, "little")
        at += 4
    return bytes(data)


def small_checkpoint(tmp_path) -> bytes:
    """A checkpoint's bytes, rewritten without zip64 fields so headers are easy to patch."""
    path = tmp_path / "small.ckpt"
    rewrite(path, members_of(saved(tmp_path, {"w": np.arange(1000.0), "v": np.ones(1000)})))
    return path.read_bytes()


def manifest_for(shape, dtype="<f8", root=None) -> bytes:
    return json.dumps({"format": "minires.checkpoint", "version": 1,
                       "root": root or {"type": "ndarray", "array": 0},
                       "arrays": [{"dtype": dtype, "shape": list(shape),
                                   "device": "cpu"}]}).encode()


@pytest.mark.parametrize("method, label", [(zipfile.ZIP_DEFLATED, "deflate"),
                                           (zipfile.ZIP_BZIP2, "bzip2"),
                                           (zipfile.ZIP_LZMA, "lzma")])
def test_a_compressed_member_is_refused_before_it_is_inflated(tmp_path, method, label):
    members = members_of(saved(tmp_path, {"w": np.zeros(2 << 20)}))  # 16 MiB of zeros
    bomb = tmp_path / "bomb.ckpt"
    with zipfile.ZipFile(bomb, "w", compression=method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    assert bomb.stat().st_size < (1 << 20)  # the file is small; inflated it is not
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=rf"bomb.ckpt: member .* is compressed "
                                                  rf"\({label}\)"):
            load(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < (4 << 20), peak


def test_an_unknown_compression_method_is_refused(tmp_path):
    bad = tmp_path / "method.ckpt"
    bad.write_bytes(patch_member(small_checkpoint(tmp_path), "arrays/0.npy", method=99))
    with pytest.raises(CheckpointError, match=r"method.ckpt: member arrays/0.npy is "
                                              r"compressed \(unknown method 99\)"):
        load(bad)


def test_an_encrypted_member_is_refused(tmp_path):
    bad = tmp_path / "locked.ckpt"
    bad.write_bytes(patch_member(small_checkpoint(tmp_path), "arrays/1.npy", flags=1))
    with pytest.raises(CheckpointError, match="locked.ckpt: member arrays/1.npy is encrypted"):
        load(bad)


def test_a_header_claiming_4_tb_is_refused_before_allocating(tmp_path):
    shape = (1 << 20, 1 << 20)  # float32: 4 TiB
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": shape})
    bad = tmp_path / "huge.ckpt"
    rewrite(bad, {"manifest.json": manifest_for(shape, "<f4"),
                  "arrays/0.npy": header.getvalue() + bytes(64)})
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=r"huge.ckpt: arrays/0.npy claims an array "
                                                  r"of shape \(1048576, 1048576\).*"
                                                  r"4398046511104 bytes\) but stores 64 bytes"):
            load(bad)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < (1 << 20), peak


def test_a_deeply_nested_manifest_is_refused_without_recursion(tmp_path):
    depth = 100_000
    root = '{"type": "list", "items": [' * depth + "]}" * depth
    manifest = ('{"format": "minires.checkpoint", "version": 1, "arrays": [], "root": '
                + root + "}")
    bad = tmp_path / "deep.ckpt"
    rewrite(bad, {"manifest.json": manifest.encode()})
    with pytest.raises(CheckpointError, match=r"deep.ckpt: manifest.json nests more than "
                                              r"\d+ levels deep; .* at most "
                                              rf"{serialization.MAX_DEPTH} containers"):
        load(bad)


def test_nesting_up_to_max_depth_round_trips_and_deeper_is_refused_on_save(tmp_path):
    deep = [1]
    for _ in range(serialization.MAX_DEPTH - 1):
        deep = [deep]
    save(deep, tmp_path / "ok")
    assert load(tmp_path / "ok") == deep
    with pytest.raises(ValueError, match=rf"nested {serialization.MAX_DEPTH + 1} containers"):
        save([deep], tmp_path / "too-deep")
    assert not (tmp_path / "too-deep").exists()


def test_duplicate_member_names_are_refused(tmp_path):
    members = members_of(saved(tmp_path, {"w": np.zeros(3)}))
    bad = tmp_path / "twice.ckpt"
    with pytest.warns(UserWarning, match="Duplicate name"):
        with zipfile.ZipFile(bad, "w") as archive:
            archive.writestr("manifest.json", members["manifest.json"])
            archive.writestr("arrays/0.npy", members["arrays/0.npy"])
            buffer = io.BytesIO()
            np.save(buffer, np.ones(3))
            archive.writestr("arrays/0.npy", buffer.getvalue())  # which one is the array?
    with pytest.raises(CheckpointError, match=r"twice.ckpt: .*'arrays/0.npy' twice"):
        load(bad)


def test_member_sizes_that_disagree_are_refused(tmp_path):
    data = small_checkpoint(tmp_path)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        size = archive.getinfo("arrays/0.npy").file_size
    bad = tmp_path / "sizes.ckpt"
    bad.write_bytes(patch_member(data, "arrays/0.npy", file_size=size + 8))
    with pytest.raises(CheckpointError, match=rf"sizes.ckpt: member arrays/0.npy .* sizes "
                                              rf"disagree \({size} bytes stored, {size + 8}"):
        load(bad)
    bad.write_bytes(patch_member(data, "arrays/0.npy", file_size=10**9, compress_size=10**9))
    with pytest.raises(CheckpointError, match=r"claims 1000000000 bytes .* beyond the end"):
        load(bad)


def test_members_claiming_more_bytes_than_the_file_holds_are_refused(tmp_path):
    data = small_checkpoint(tmp_path)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        first, second = archive.getinfo("arrays/0.npy"), archive.getinfo("arrays/1.npy")
    # the first member now also spans the second: both arrays' bytes are claimed twice
    span = second.header_offset + 30 + len("arrays/1.npy") + second.file_size \
        - first.header_offset - 30 - len("arrays/0.npy")
    bad = tmp_path / "overlap.ckpt"
    bad.write_bytes(patch_member(data, "arrays/0.npy", file_size=span, compress_size=span))
    with pytest.raises(CheckpointError, match=rf"overlap.ckpt: its members claim \d+ bytes "
                                              rf"in all but the file has only {len(data)}"):
        load(bad)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["arrays"].__setitem__(0, 5), "manifest entry of arrays/0.npy is not an object"),
    (lambda m: m["arrays"][0].update(shape=[-1000]), "has no valid shape"),
    (lambda m: m["arrays"][0].update(shape="1000"), "has no valid shape"),
    (lambda m: m["arrays"][0].update(dtype=["<f8"]), "has no valid dtype"),
    (lambda m: m["arrays"][0].update(dtype="<f8,<f8"), "never holds"),
    (lambda m: m["arrays"][0].update(device=["cuda"]), "unknown device"),
    (lambda m: m.update(version=True), "version True"),
    (lambda m: m["root"].update(items=[[{"type": "list", "items": []}, {"type": "none"}]]),
     "a dict key is a list"),
    (lambda m: m["root"].update(items=[[{"type": "str", "value": "a"}]]),
     "not a .key, value. pair"),
    (lambda m: m["root"].update(items={"a": 1}), "items are not a list"),
    (lambda m: m["root"]["items"][0].__setitem__(
        1, {"type": "tensor", "array": 0, "requires_grad": "yes"}), "must be true or false"),
    (lambda m: m["root"]["items"][0].__setitem__(1, {"type": "numpy_scalar", "array": 0}),
     r"numpy scalar but its array has shape \(1000,\)"),
    (lambda m: m["root"]["items"][1].__setitem__(1, {"type": "float", "value": "abc"}),
     "malformed manifest node"),
])
def test_wrong_types_in_the_manifest_are_refused(tmp_path, edit, message):
    members = members_of(saved(tmp_path))
    manifest = json.loads(members["manifest.json"])
    edit(manifest)
    bad = tmp_path / "typed.ckpt"
    rewrite(bad, {**members, "manifest.json": json.dumps(manifest).encode()})
    with pytest.raises(CheckpointError, match=f"typed.ckpt: .*{message}"):
        load(bad)


def test_an_integer_too_long_for_json_is_a_checkpoint_error(tmp_path):
    members = members_of(saved(tmp_path, {"n": 3}))
    text = members["manifest.json"].decode().replace('"value": 3', '"value": ' + "9" * 5000)
    bad = tmp_path / "long.ckpt"
    rewrite(bad, {**members, "manifest.json": text.encode()})
    with pytest.raises(CheckpointError, match="long.ckpt: manifest.json is not valid JSON"):
        load(bad)


def test_unexpected_members_and_void_dtypes_are_refused(tmp_path):
    members = members_of(saved(tmp_path))
    bad = tmp_path / "extra.ckpt"
    rewrite(bad, {**members, "run.sh": b"rm -rf ~"})
    with pytest.raises(CheckpointError, match=r"extra.ckpt: .*unexpected members \['run.sh'\]"):
        load(bad)
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(2, dtype="V8"))
    rewrite(bad, {"manifest.json": manifest_for([2], "|V8"), "arrays/0.npy": buffer.getvalue()})
    with pytest.raises(CheckpointError, match=r"extra.ckpt: .* dtype \|V8, which a checkpoint "
                                              "never holds"):
        load(bad)


def test_a_fortran_ordered_array_loads_as_saved(tmp_path):
    array = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    buffer = io.BytesIO()
    np.save(buffer, array)
    path = tmp_path / "f.ckpt"
    rewrite(path, {"manifest.json": manifest_for([3, 4]), "arrays/0.npy": buffer.getvalue()})
    back = load(path)
    np.testing.assert_array_equal(back, array)


# --------------------------------------------------------------------------- stale temporaries


def test_a_killed_save_leaves_a_temporary_that_the_next_save_removes(tmp_path):
    script = (
        "import os, signal, sys, numpy as np\n"
        "from minires import serialization\n"
        "def dying_write(file, array):\n"
        "    file.write(b'half of an array')\n"
        "    file.flush()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "serialization._write_array = dying_write\n"
        "serialization.save({'w': np.zeros(10)}, sys.argv[1])\n"
    )
    target = tmp_path / "model.ckpt"
    save({"version": 1}, target)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).resolve().parent.parent)] + sys.path))
    run = subprocess.run([sys.executable, "-c", script, str(target)], env=env,
                         capture_output=True, timeout=120)
    assert run.returncode == -signal.SIGKILL, run.stderr
    leftovers = [n for n in os.listdir(tmp_path) if n != "model.ckpt"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".model.ckpt.")
    assert load(target) == {"version": 1}  # the previous file is intact
    # a dead writer's temporary is removed once it is a minute old (the grace period)
    old = time.time() - files.DEAD_WRITER_GRACE_S - 1
    os.utime(tmp_path / leftovers[0], (old, old))
    save({"version": 2}, tmp_path / "other.ckpt")
    assert sorted(os.listdir(tmp_path)) == ["model.ckpt", "other.ckpt"]


def test_only_stale_temporaries_of_minires_are_removed(tmp_path):
    now = time.time()
    day = files.ABANDONED_AFTER_S
    live = Path(files.temporary_path(tmp_path / "a.ckpt")).name  # this process: alive
    dead_pid = 2**22 + 12345  # above Linux's pid_max: no such process
    dead = live.replace(f".{os.getpid()}-", f".{dead_pid}-")
    cases = {  # name: (age in seconds, removed?)
        live: (2 * files.DEAD_WRITER_GRACE_S, False),
        dead: (2 * files.DEAD_WRITER_GRACE_S, os.name == "posix"),
        dead.replace(".a.ckpt.", ".b.ckpt."): (1.0, False),  # dead, but too recent
        ".old.ckpt.0123456789ab.tmp": (day + 60, True),  # minires 0.1's mr.save naming
        ".old.ckpt.0123456789ab.tmp.keep": (day + 60, False),
        ".cifar.tar.gz.abc_1234.part": (day + 60, True),  # minires 0.1's downloader
        ".cifar.tar.gz.abc_1234.part2": (day + 60, False),
        "notes.tmp": (day + 60, False),
        ".hidden.tmp": (day + 60, False),
        live.replace(".a.ckpt.", ".c.ckpt."): (day + 60, True),  # abandoned for a day
    }
    for name, (age, _) in cases.items():
        (tmp_path / name).write_bytes(b"x")
        os.utime(tmp_path / name, (now - age, now - age))
    save([1], tmp_path / "a.ckpt")
    expected = sorted([n for n, (_, removed) in cases.items() if not removed] + ["a.ckpt"])
    assert sorted(os.listdir(tmp_path)) == expected


def test_a_manifest_over_the_size_cap_is_refused_on_save_and_on_load(tmp_path, monkeypatch):
    save({"history": list(range(1000))}, tmp_path / "long.ckpt")
    monkeypatch.setattr(serialization, "MAX_MANIFEST_BYTES", 4096)
    with pytest.raises(CheckpointError, match=r"long.ckpt: manifest.json is \d+ bytes; a "
                                              r"checkpoint's manifest is at most 4096 bytes"):
        load(tmp_path / "long.ckpt")
    with pytest.raises(ValueError, match=r"more than the 4096 a checkpoint allows; keep long "
                                         r"runs of numbers in arrays"):
        save({"history": list(range(1000))}, tmp_path / "again.ckpt")
    assert not (tmp_path / "again.ckpt").exists()
