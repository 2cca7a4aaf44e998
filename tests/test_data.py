"""Tests of minires.data: official-format readers, downloads, samples, DataLoader, transforms.

Everything here runs offline on files the tests write themselves (or the samples that
ship with the package). Downloads are simulated by monkeypatching
``urllib.request.urlopen`` to serve bytes from memory.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import minires as mr
from minires import backend
from minires.data import (
    CIFAR10,
    CIFAR10_MEAN,
    CIFAR10_STD,
    MNIST,
    Compose,
    DataLoader,
    DatasetError,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    TensorDataset,
    ToFloat,
    download,
    get_dataset,
    md5sum,
    read_cifar_batch,
    read_idx,
)
from minires.data.download import VERIFIED_FILE

RECORD = 3073
FAKE_RECORDS = 3  # records per fake CIFAR file (the official files hold 10000)


# --------------------------------------------------------------------------- helpers


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def cifar_records(labels, seed=0):
    """Fake CIFAR-10 binary records; returns (bytes, images (N, 3, 32, 32) uint8)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(len(labels), 3, 32, 32), dtype=np.uint8)
    records = b"".join(bytes([label]) + img.tobytes() for label, img in zip(labels, images))
    return records, images


def fake_cifar_files(n=FAKE_RECORDS):
    """{file name: bytes} for all six CIFAR files, each with n records."""
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    return {name: cifar_records([(k + i) % 10 for i in range(n)], seed=k)[0]
            for k, name in enumerate(names)}


@pytest.fixture
def small_cifar(monkeypatch):
    """Make CIFAR10 expect FAKE_RECORDS records per file with the fake files' MD5s."""
    files = fake_cifar_files()
    monkeypatch.setattr(CIFAR10, "records_per_file", FAKE_RECORDS)
    monkeypatch.setattr(CIFAR10, "train_list",
                        [(f"data_batch_{i}.bin", md5(files[f"data_batch_{i}.bin"]))
                         for i in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [("test_batch.bin", md5(files["test_batch.bin"]))])
    return files


def write_files(folder, files):
    os.makedirs(folder, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)


def tar_gz(files, folder="cifar-10-batches-bin"):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def serve(monkeypatch, responses):
    """Make urlopen serve ``responses[url]`` (bytes), or raise it if it is an exception."""
    requested = []

    def urlopen(url, timeout=None):
        requested.append(url)
        response = responses.get(url, urllib.error.URLError("no route to host"))
        if isinstance(response, Exception):
            raise response
        return io.BytesIO(response)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return requested


def idx(array, magic_dtype=0x08):
    header = bytes([0, 0, magic_dtype, array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def fake_mnist(n, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    return images, labels


def publish_md5s(monkeypatch, folder):
    """Make MNIST take the .gz files in ``folder`` for the official ones (their MD5s)."""
    published = {p.name: md5(p.read_bytes()) for p in Path(folder).glob("*.gz")}
    monkeypatch.setattr(MNIST, "resources", {**MNIST.resources, **published})


def leftovers(folder):
    """Every file and folder under ``folder`` (relative paths), except the caches of
    verified hashes (``.minires-verified.json``, tested on their own)."""
    found = []
    for base, dirs, files in os.walk(folder):
        found += [os.path.relpath(os.path.join(base, n), folder) for n in dirs + files
                  if n != VERIFIED_FILE]
    return sorted(found)


# --------------------------------------------------------------------------- CIFAR-10 reader


def test_read_cifar_batch_decodes_labels_and_rgb_planes(tmp_path):
    # Each plane gets its own recognisable pattern, so a wrong plane order or a transposed
    # image would show up.
    y, x = np.mgrid[0:32, 0:32]
    red, green, blue = (y * 32 + x) % 256, (x * 7 + 3) % 256, 255 - y
    record = bytes([7]) + b"".join(p.astype(np.uint8).tobytes() for p in (red, green, blue))
    other, other_images = cifar_records([2, 9])
    path = tmp_path / "batch.bin"
    path.write_bytes(record + other)
    images, labels = read_cifar_batch(path, num_records=3)
    assert images.shape == (3, 3, 32, 32) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and labels.tolist() == [7, 2, 9]
    np.testing.assert_array_equal(images[0, 0], red)
    np.testing.assert_array_equal(images[0, 1], green)
    np.testing.assert_array_equal(images[0, 2], blue)
    assert images[0, 0, 0, 1] == 1 and images[0, 0, 1, 0] == 32  # row-major: (H, W)
    np.testing.assert_array_equal(images[1:], other_images)


def test_read_cifar_batch_gzip_reads_the_same(tmp_path):
    data, images = cifar_records([1, 2, 3, 4])
    (tmp_path / "a.bin").write_bytes(data)
    (tmp_path / "a.bin.gz").write_bytes(gzip.compress(data))
    plain, gz = read_cifar_batch(tmp_path / "a.bin"), read_cifar_batch(tmp_path / "a.bin.gz")
    np.testing.assert_array_equal(plain[0], gz[0])
    np.testing.assert_array_equal(plain[1], gz[1])
    np.testing.assert_array_equal(plain[0], images)


def test_read_cifar_batch_truncated_names_file_and_expected_size(tmp_path):
    data, _ = cifar_records([1, 2, 3])
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(data[:-100])
    with pytest.raises(DatasetError, match=r"data_batch_1\.bin.*9119 bytes.*expected 9219 bytes"):
        read_cifar_batch(path, num_records=3)
    with pytest.raises(DatasetError, match="multiple"):
        read_cifar_batch(path)  # no count given: still not whole records


def test_read_cifar_batch_rejects_bad_labels_and_bad_gzip(tmp_path):
    data, _ = cifar_records([1, 2])
    bad = bytearray(data)
    bad[RECORD] = 42  # second record's label
    (tmp_path / "bad.bin").write_bytes(bytes(bad))
    with pytest.raises(DatasetError, match=r"bad\.bin: record 1 has label byte 42"):
        read_cifar_batch(tmp_path / "bad.bin")
    (tmp_path / "cut.bin.gz").write_bytes(gzip.compress(data)[:-20])
    with pytest.raises(DatasetError, match=r"cut\.bin\.gz.*does not decompress"):
        read_cifar_batch(tmp_path / "cut.bin.gz")


def test_cifar10_loads_official_layout(tmp_path, small_cifar):
    write_files(tmp_path / "cifar-10-batches-bin", small_cifar)
    train = CIFAR10(root=tmp_path)
    test = CIFAR10(root=str(tmp_path), train=False)
    assert len(train) == 5 * FAKE_RECORDS and len(test) == FAKE_RECORDS
    assert train.data.shape == (15, 3, 32, 32) and train.data.dtype == np.uint8
    assert train.targets.dtype == np.int64 and len(train.classes) == 10
    assert train.classes[0] == "airplane" and train.classes[9] == "truck"
    # Files concatenate in order: record 0 of data_batch_2 is item FAKE_RECORDS.
    images, labels = read_cifar_batch(tmp_path / "cifar-10-batches-bin" / "data_batch_2.bin")
    np.testing.assert_array_equal(train.data[FAKE_RECORDS], images[0])
    image, label = train[FAKE_RECORDS]
    assert label == labels[0] and isinstance(label, int)
    np.testing.assert_array_equal(image, images[0])
    assert train.data.flags.writeable  # a copy, not a view of the file's bytes
    # root may also be the folder itself
    assert len(CIFAR10(root=tmp_path / "cifar-10-batches-bin")) == 15


def test_cifar10_root_defaults_to_env(tmp_path, small_cifar, monkeypatch):
    write_files(tmp_path / "cifar-10-batches-bin", small_cifar)
    monkeypatch.setenv("MINIRES_DATA", str(tmp_path))
    assert len(CIFAR10(train=False)) == FAKE_RECORDS


def test_cifar10_truncated_file_error_names_file_size_and_layout(tmp_path, small_cifar):
    files = dict(small_cifar)
    files["data_batch_3.bin"] = files["data_batch_3.bin"][:-1]
    write_files(tmp_path / "cifar-10-batches-bin", files)
    with pytest.raises(DatasetError) as info:
        CIFAR10(root=tmp_path)
    message = str(info.value)
    assert "data_batch_3.bin" in message and f"expected {FAKE_RECORDS * RECORD} bytes" in message
    assert os.path.join(str(tmp_path), "cifar-10-batches-bin") in message


def test_cifar10_missing_without_download_says_where(tmp_path):
    with pytest.raises(DatasetError) as info:
        CIFAR10(root=tmp_path)
    message = str(info.value)
    assert "not found" in message and "download=True" in message
    assert os.path.join(str(tmp_path), "cifar-10-batches-bin") in message
    assert "data_batch_1.bin" in message and "30730000 bytes" in message


def test_dataset_getitem_with_transform_and_index_errors(tmp_path, small_cifar):
    write_files(tmp_path / "cifar-10-batches-bin", small_cifar)
    ds = CIFAR10(root=tmp_path, train=False, transform=Normalize((0.5,), (0.5,)))
    image, label = ds[-1]
    assert image.shape == (3, 32, 32) and image.dtype == np.float32
    np.testing.assert_allclose(image, (ds.data[-1] / 255.0 - 0.5) / 0.5, atol=1e-6)
    with pytest.raises(IndexError):
        ds[FAKE_RECORDS]
    with pytest.raises(TypeError, match="DataLoader"):
        ds[0:2]


# --------------------------------------------------------------------------- downloads


def test_cifar10_download_extracts_and_loads(tmp_path, small_cifar, monkeypatch):
    archive = tar_gz({**small_cifar, "batches.meta.txt": b"airplane\n"})
    monkeypatch.setattr(CIFAR10, "archive_md5", md5(archive))
    requested = serve(monkeypatch, {CIFAR10.url: archive})
    ds = CIFAR10(root=tmp_path / "data", download=True)
    assert len(ds) == 15 and requested == [CIFAR10.url]
    assert leftovers(tmp_path / "data") == sorted(
        ["cifar-10-batches-bin", "cifar-10-binary.tar.gz", "cifar-10-batches-bin/batches.meta.txt"]
        + [f"cifar-10-batches-bin/{n}" for n in small_cifar]
    )
    CIFAR10(root=tmp_path / "data", train=False, download=True)  # already there: no fetch
    assert requested == [CIFAR10.url]


def test_download_bad_md5_raises_and_leaves_nothing(tmp_path, small_cifar, monkeypatch):
    serve(monkeypatch, {CIFAR10.url: b"<html>not the archive</html>"})
    with pytest.raises(DatasetError) as info:
        CIFAR10(root=tmp_path, download=True)
    message = str(info.value)
    assert CIFAR10.url in message and "MD5" in message and CIFAR10.archive_md5 in message
    assert "cifar-10-batches-bin" in message  # where to put the files
    assert leftovers(tmp_path) == []


def test_download_offline_names_where_to_put_files(tmp_path, monkeypatch):
    serve(monkeypatch, {})  # every URL raises URLError
    with pytest.raises(DatasetError) as info:
        CIFAR10(root=tmp_path, download=True)
    message = str(info.value)
    assert "offline" in message and "no route to host" in message
    assert os.path.join(str(tmp_path), "cifar-10-batches-bin") in message
    assert "data_batch_1.bin" in message
    assert leftovers(tmp_path) == []


def test_download_interrupted_midstream_leaves_nothing(tmp_path, monkeypatch):
    class Dropping(io.BytesIO):
        def read(self, size=-1):
            if self.tell() >= 1000:
                raise ConnectionResetError("connection reset by peer")
            return super().read(min(size, 500))

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: Dropping(bytes(5000)))
    with pytest.raises(DatasetError, match=r"connection reset.*nothing was written"):
        CIFAR10(root=tmp_path, download=True)
    assert leftovers(tmp_path) == []


def test_archive_placed_by_hand_is_used_offline(tmp_path, small_cifar, monkeypatch):
    archive = tar_gz(small_cifar)
    monkeypatch.setattr(CIFAR10, "archive_md5", md5(archive))
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(archive)
    requested = serve(monkeypatch, {})  # offline
    assert len(CIFAR10(root=tmp_path, train=False, download=True)) == FAKE_RECORDS
    assert requested == []


def test_failed_extraction_leaves_no_partial_folder(tmp_path, small_cifar, monkeypatch):
    files = dict(small_cifar)
    files["test_batch.bin"] = files["test_batch.bin"][:RECORD]  # a short member
    archive = tar_gz(files)
    monkeypatch.setattr(CIFAR10, "archive_md5", md5(archive))
    serve(monkeypatch, {CIFAR10.url: archive})
    with pytest.raises(DatasetError, match=rf"test_batch\.bin.*expected {FAKE_RECORDS * RECORD}"):
        CIFAR10(root=tmp_path, download=True)
    # The verified archive stays (so a retry need not download it again), but no
    # cifar-10-batches-bin folder and no temporary extraction folder.
    assert leftovers(tmp_path) == ["cifar-10-binary.tar.gz"]


def test_extraction_rejects_corrupt_member_md5(tmp_path, small_cifar, monkeypatch):
    files = dict(small_cifar)
    files["data_batch_5.bin"] = bytes(len(files["data_batch_5.bin"]))  # right size, wrong bytes
    archive = tar_gz(files)
    monkeypatch.setattr(CIFAR10, "archive_md5", md5(archive))
    serve(monkeypatch, {CIFAR10.url: archive})
    with pytest.raises(DatasetError, match=r"data_batch_5\.bin has MD5 .*expected the official"):
        CIFAR10(root=tmp_path, download=True)
    assert leftovers(tmp_path) == ["cifar-10-binary.tar.gz"]


def test_mnist_download_falls_back_to_next_mirror(tmp_path, monkeypatch):
    images, labels = fake_mnist(4)
    blobs = {"train-images-idx3-ubyte.gz": gzip.compress(idx(images)),
             "train-labels-idx1-ubyte.gz": gzip.compress(idx(labels))}
    monkeypatch.setattr(MNIST, "resources", {**MNIST.resources,
                                             **{k: md5(v) for k, v in blobs.items()}})
    monkeypatch.setattr(MNIST, "split_sizes", {"train": 4, "test": 10000})
    requested = serve(monkeypatch, {MNIST.mirrors[1] + k: v for k, v in blobs.items()})
    ds = MNIST(root=tmp_path, download=True)
    np.testing.assert_array_equal(ds.data[:, 0], images)
    assert len(requested) == 4  # each file: first mirror failed, second served it
    assert leftovers(tmp_path) == ["mnist", "mnist/train-images-idx3-ubyte.gz",
                                   "mnist/train-labels-idx1-ubyte.gz"]


def test_mnist_download_bad_md5_everywhere(tmp_path, monkeypatch):
    serve(monkeypatch, {m + "t10k-images-idx3-ubyte.gz": b"junk" for m in MNIST.mirrors})
    with pytest.raises(DatasetError) as info:
        MNIST(root=tmp_path, train=False, download=True)
    message = str(info.value)
    assert "t10k-images-idx3-ubyte.gz" in message and MNIST.resources[
        "t10k-images-idx3-ubyte.gz"] in message
    assert os.path.join(str(tmp_path), "mnist") in message
    assert [f for f in leftovers(tmp_path) if not os.path.isdir(tmp_path / f)] == []


# --------------------------------------------------------------------------- files on disk


def count_hashing(monkeypatch):
    """Record every file the verifier hashes (by base name)."""
    hashed = []
    real = download.file_digest

    def counting(path, algorithm="md5"):
        hashed.append(os.path.basename(path))
        return real(path, algorithm)

    monkeypatch.setattr(download, "file_digest", counting)
    monkeypatch.setattr(download, "_verified_in_memory", {})
    return hashed


def test_six_zero_files_of_the_right_sizes_are_not_cifar10(tmp_path, small_cifar):
    write_files(tmp_path / "cifar-10-batches-bin",
                {name: bytes(len(data)) for name, data in small_cifar.items()})
    with pytest.raises(DatasetError) as info:
        CIFAR10(root=tmp_path)
    message = str(info.value)
    expected_md5 = dict(CIFAR10.train_list)["data_batch_1.bin"]
    assert "data_batch_1.bin has MD5 " in message
    assert f"expected the official {expected_md5}" in message
    assert os.path.join(str(tmp_path), "cifar-10-batches-bin", "") in message  # where they go
    with pytest.raises(DatasetError, match=r"test_batch\.bin has MD5"):
        CIFAR10(root=tmp_path, train=False, download=True)  # no download over a bad folder


def test_files_on_disk_are_hashed_once_until_they_change(tmp_path, small_cifar, monkeypatch):
    folder = tmp_path / "cifar-10-batches-bin"
    write_files(folder, small_cifar)
    hashed = count_hashing(monkeypatch)
    CIFAR10(root=tmp_path)
    assert sorted(hashed) == [f"data_batch_{i}.bin" for i in range(1, 6)]
    CIFAR10(root=tmp_path)  # same process: remembered
    monkeypatch.setattr(download, "_verified_in_memory", {})
    CIFAR10(root=tmp_path)  # a new process: read from the folder's cache file
    assert len(hashed) == 5
    cache = json.loads((folder / VERIFIED_FILE).read_text())["files"]
    assert cache["data_batch_3.bin"]["md5"] == md5(small_cifar["data_batch_3.bin"])
    # the same size with other bytes: a new mtime, so it is hashed again, and refused
    stat = os.stat(folder / "data_batch_3.bin")
    (folder / "data_batch_3.bin").write_bytes(small_cifar["data_batch_4.bin"])
    os.utime(folder / "data_batch_3.bin", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(DatasetError, match=r"data_batch_3\.bin has MD5"):
        CIFAR10(root=tmp_path)
    assert hashed[5:] == ["data_batch_3.bin"]


def test_a_damaged_cache_is_ignored_and_a_read_only_folder_still_verifies(
        tmp_path, small_cifar, monkeypatch):
    folder = tmp_path / "cifar-10-batches-bin"
    write_files(folder, small_cifar)
    (folder / VERIFIED_FILE).write_text('{"files": {"test_batch.bin": [1, 2')  # truncated
    hashed = count_hashing(monkeypatch)
    assert len(CIFAR10(root=tmp_path, train=False)) == FAKE_RECORDS
    assert hashed == ["test_batch.bin"]
    assert "test_batch.bin" in json.loads((folder / VERIFIED_FILE).read_text())["files"]

    def read_only(path, write):
        raise PermissionError(f"read-only file system: {path}")

    (folder / VERIFIED_FILE).unlink()
    monkeypatch.setattr(download, "atomic_write", read_only)
    monkeypatch.setattr(download, "_verified_in_memory", {})
    assert len(CIFAR10(root=tmp_path, train=False)) == FAKE_RECORDS  # verified, not cached
    assert len(CIFAR10(root=tmp_path, train=False)) == FAKE_RECORDS  # remembered in memory
    assert hashed == ["test_batch.bin"] * 2 and not (folder / VERIFIED_FILE).exists()


def test_mnist_gz_files_on_disk_are_md5_checked(tmp_path):
    images, labels = fake_mnist(3)
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx(images)))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx(labels)))
    with pytest.raises(DatasetError) as info:
        MNIST(root=tmp_path, train=False)
    message = str(info.value)
    assert "t10k-images-idx3-ubyte.gz has MD5" in message
    assert MNIST.resources["t10k-images-idx3-ubyte.gz"] in message
    assert os.path.join(str(tmp_path), "mnist", "") in message


# --------------------------------------------------------------------------- MNIST reader


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_reads_plain_and_gzip_idx(tmp_path, monkeypatch, compress):
    images, labels = fake_mnist(5)
    monkeypatch.setattr(MNIST, "split_sizes", {"train": 60000, "test": 5})
    folder = tmp_path / "mnist"
    folder.mkdir()
    suffix = ".gz" if compress else ""
    pack = gzip.compress if compress else (lambda b: b)
    (folder / f"t10k-images-idx3-ubyte{suffix}").write_bytes(pack(idx(images)))
    (folder / f"t10k-labels-idx1-ubyte{suffix}").write_bytes(pack(idx(labels)))
    publish_md5s(monkeypatch, folder)
    ds = MNIST(root=tmp_path, train=False)
    assert ds.data.shape == (5, 1, 28, 28) and ds.data.dtype == np.uint8
    np.testing.assert_array_equal(ds.data[:, 0], images)
    assert ds.targets.dtype == np.int64 and ds.targets.tolist() == labels.tolist()
    assert len(ds.classes) == 10


def test_mnist_torchvision_layout_and_root_itself(tmp_path, monkeypatch):
    images, labels = fake_mnist(2)
    monkeypatch.setattr(MNIST, "split_sizes", {"train": 2, "test": 10000})
    for folder in (tmp_path / "a" / "MNIST" / "raw", tmp_path / "b"):
        folder.mkdir(parents=True)
        (folder / "train-images-idx3-ubyte").write_bytes(idx(images))
        (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx(labels)))
    publish_md5s(monkeypatch, tmp_path / "b")
    assert len(MNIST(root=tmp_path / "a")) == 2 and len(MNIST(root=tmp_path / "b")) == 2


def test_idx_bad_magic_swapped_files(tmp_path, monkeypatch):
    images, labels = fake_mnist(2)
    monkeypatch.setattr(MNIST, "split_sizes", {"train": 2, "test": 10000})
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx(labels))  # swapped
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx(images))
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte has magic number "
                                           r"0x00000801; expected 0x00000803"):
        MNIST(root=tmp_path)
    (tmp_path / "x").write_bytes(idx(labels.astype(np.uint8), magic_dtype=0x0D))
    with pytest.raises(DatasetError, match="unsigned-byte"):
        read_idx(tmp_path / "x")


def test_idx_truncated_and_wrong_count(tmp_path, monkeypatch):
    images, labels = fake_mnist(3)
    (tmp_path / "t").write_bytes(idx(images)[:-1])
    with pytest.raises(DatasetError, match=r"is 2367 bytes.*\(3, 28, 28\).*expected 2368"):
        read_idx(tmp_path / "t", 0x803)
    (tmp_path / "t").write_bytes(idx(images) + b"\0")  # trailing bytes are wrong too
    with pytest.raises(DatasetError, match=r"is 2369 bytes.*expected 2368"):
        read_idx(tmp_path / "t", 0x803)
    monkeypatch.setattr(MNIST, "split_sizes", {"train": 4, "test": 10000})
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx(images))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx(labels))
    with pytest.raises(DatasetError, match=r"\(3, 28, 28\); expected \(4, 28, 28\)"):
        MNIST(root=tmp_path)


def test_mnist_missing_says_where(tmp_path):
    with pytest.raises(DatasetError) as info:
        MNIST(root=tmp_path)
    assert os.path.join(str(tmp_path), "mnist") in str(info.value)
    assert "train-images-idx3-ubyte.gz" in str(info.value)


# --------------------------------------------------------------------------- samples


def test_cifar10_sample_is_real_cifar():
    train, test = CIFAR10(sample=True), CIFAR10(sample=True, train=False)
    assert (len(train), len(test)) == (2000, 1000)
    assert train.data.shape == (2000, 3, 32, 32) and train.data.dtype == np.uint8
    assert set(train.targets.tolist()) == set(range(10)) == set(test.targets.tolist())
    # The first records of data_batch_1 / test_batch are a frog, a truck / a cat, a ship.
    assert train.targets[:2].tolist() == [6, 9] and test.targets[:2].tolist() == [3, 8]
    # Real photos have red > green > blue on average: checks the plane order on real data.
    mean = (train.data / 255.0).mean(axis=(0, 2, 3))
    np.testing.assert_allclose(mean, CIFAR10_MEAN, atol=0.01)
    assert mean[0] > mean[1] > mean[2]


def test_sample_files_are_the_recorded_prefixes():
    # MD5 of the uncompressed sample files, as listed in samples/README.md: a rebuilt
    # sample with other records, or a corrupted one, fails here.
    expected = {
        "cifar10/data_batch_1.bin.gz": "d4fe023942b61c24694d631485866cee",
        "cifar10/test_batch.bin.gz": "371f65da31ad652f5e24b3699a3e6515",
        "mnist/train-images-idx3-ubyte.gz": "294fd329ff7cac24b682d047b71117e9",
        "mnist/t10k-labels-idx1-ubyte.gz": "556860b2f10365a8f7444c1e79c7e9af",
    }
    samples = os.path.join(os.path.dirname(mr.data.__file__), "samples")
    for name, digest in expected.items():
        with gzip.open(os.path.join(samples, name)) as f:
            assert md5(f.read()) == digest, name


def test_mnist_sample_and_get_dataset():
    train, test = get_dataset("mnist-sample"), get_dataset("mnist-sample", train=False)
    assert (len(train), len(test)) == (2000, 1000)
    assert train.data.shape == (2000, 1, 28, 28)
    assert set(train.targets.tolist()) == set(range(10)) and len(train.classes) == 10
    assert train.targets[:3].tolist() == [5, 0, 4] and test.targets[:3].tolist() == [7, 2, 1]
    assert isinstance(get_dataset("CIFAR10-sample", train=False), CIFAR10)
    with pytest.raises(ValueError, match="unknown dataset 'svhn'"):
        get_dataset("svhn")


def test_get_dataset_full_uses_root(tmp_path, small_cifar):
    write_files(tmp_path / "cifar-10-batches-bin", small_cifar)
    ds = get_dataset("cifar10", train=False, root=tmp_path)
    assert isinstance(ds, CIFAR10) and len(ds) == FAKE_RECORDS and not ds.sample


# --------------------------------------------------------------------------- DataLoader


def tiny_dataset(n=10):
    data = np.arange(n * 3 * 2 * 2, dtype=np.uint8).reshape(n, 3, 2, 2)
    return TensorDataset(data, np.arange(n) % 10)


def epoch_labels(loader):
    return [labels.numpy().tolist() for _, labels in loader]


def test_loader_batches_shapes_count_and_scaling():
    ds = tiny_dataset(10)
    loader = DataLoader(ds, batch_size=4)
    assert len(loader) == 3
    batches = list(loader)
    assert [b[0].shape for b in batches] == [(4, 3, 2, 2), (4, 3, 2, 2), (2, 3, 2, 2)]
    images, labels = batches[0]
    assert isinstance(images, mr.Tensor) and images.dtype == np.float32
    assert labels.dtype == np.int64 and labels.numpy().tolist() == [0, 1, 2, 3]
    np.testing.assert_array_equal(images.numpy(), ds.data[:4].astype(np.float32) / 255)
    assert images.device == "cpu" and not images.requires_grad
    assert sum(len(b[1]) for b in batches) == 10


def test_loader_drop_last():
    loader = DataLoader(tiny_dataset(10), batch_size=4, drop_last=True)
    assert len(loader) == 2 and [len(y) for _, y in loader] == [4, 4]
    assert len(DataLoader(tiny_dataset(8), batch_size=4, drop_last=True)) == 2
    assert len(DataLoader(tiny_dataset(3), batch_size=4, drop_last=True)) == 0
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(tiny_dataset(3), batch_size=0)


def test_loader_shuffle_reproducible_and_new_each_epoch():
    ds = TensorDataset(np.zeros((50, 1, 1, 1), np.uint8), np.arange(50))
    a = DataLoader(ds, batch_size=8, shuffle=True, seed=3)
    b = DataLoader(ds, batch_size=8, shuffle=True, seed=3)
    a0, a1 = epoch_labels(a), epoch_labels(a)
    assert a0 == epoch_labels(b) and a1 == epoch_labels(b)  # same seed, same epochs
    assert a0 != a1  # a new order every epoch
    assert sorted(sum(a0, [])) == list(range(50)) == sorted(sum(a1, []))  # each item once
    assert a0 != list(map(list, np.array_split(np.arange(50), 7)))  # actually shuffled
    assert epoch_labels(DataLoader(ds, batch_size=8, shuffle=True, seed=4)) != a0
    mr.manual_seed(0)
    c = epoch_labels(DataLoader(ds, batch_size=8, shuffle=True))
    mr.manual_seed(0)
    assert epoch_labels(DataLoader(ds, batch_size=8, shuffle=True)) == c  # seed=None


def test_loader_state_dict_resumes_mid_epoch():
    ds = TensorDataset(np.zeros((30, 1, 1, 1), np.uint8), np.arange(30))
    reference = DataLoader(ds, batch_size=4, shuffle=True, seed=11)
    expected = epoch_labels(reference) + epoch_labels(reference)  # epochs 0 and 1

    loader = DataLoader(ds, batch_size=4, shuffle=True, seed=11)
    seen = epoch_labels(loader)  # epoch 0
    for _, labels in loader:  # epoch 1: stop after 3 batches, as if the run were killed
        seen.append(labels.numpy().tolist())
        if len(seen) == len(loader) + 3:
            state = json.loads(json.dumps(loader.state_dict()))  # plain JSON values
            break
    assert state == {"seed": 11, "epoch": 1, "batch": 3}

    resumed = DataLoader(ds, batch_size=4, shuffle=True, seed=999)  # seed comes from state
    resumed.load_state_dict(state)
    seen += epoch_labels(resumed)
    assert seen == expected
    assert resumed.state_dict() == {"seed": 11, "epoch": 2, "batch": 0}
    with pytest.raises(ValueError, match="batch 99"):
        resumed.load_state_dict({"seed": 1, "epoch": 0, "batch": 99})


def test_loader_applies_dataset_then_loader_transform():
    calls = []

    def record(tag):
        def transform(x):
            calls.append((tag, x.dtype, x.shape))
            return x + 1
        return transform

    ds = tiny_dataset(4)
    ds.transform = record("dataset")
    images, _ = next(iter(DataLoader(ds, batch_size=4, transform=record("loader"))))
    assert calls == [("dataset", np.float32, (4, 3, 2, 2)), ("loader", np.float32, (4, 3, 2, 2))]
    np.testing.assert_allclose(images.numpy(), ds.data / 255.0 + 2, rtol=1e-6)


def test_loader_generic_dataset_item_by_item():
    class Squares:
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return np.full((1, 2, 2), i * i, np.uint8), i

    images, labels = list(DataLoader(Squares(), batch_size=3))[1]
    assert labels.numpy().tolist() == [3, 4]
    np.testing.assert_allclose(images.numpy()[:, 0, 0, 0], np.array([9, 16]) / 255.0, rtol=1e-6)


# --------------------------------------------------------------------------- transforms

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def on(device, array):
    if device == "cuda" and not mr.cuda.is_available():
        pytest.skip("no CUDA GPU")
    return backend.to_device(array, device)


@pytest.mark.parametrize("device", DEVICES)
def test_random_crop_keeps_shape_pads_with_zeros_and_crops_windows(device):
    mr.manual_seed(1)
    x = np.random.default_rng(0).uniform(0.5, 1.0, size=(64, 3, 8, 8)).astype(np.float32)
    out = RandomCrop(8, padding=2)(on(device, x))
    assert backend.device_of(out) == device
    out = backend.to_numpy(out)
    assert out.shape == x.shape and out.dtype == np.float32
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    offsets = set()
    for n in range(len(x)):  # each output is exactly one window of its own padded image
        hits = [(i, j) for i in range(5) for j in range(5)
                if np.array_equal(out[n], padded[n, :, i: i + 8, j: j + 8])]
        assert len(hits) == 1, n
        offsets.add(hits[0])
    assert len(offsets) > 5  # offsets differ between images
    assert (out == 0).any() and ((out == 0) | (out >= 0.5)).all()  # zeros come from padding
    assert RandomCrop((4, 6), padding=0)(x).shape == (64, 3, 4, 6)
    with pytest.raises(ValueError, match=r"RandomCrop: crop size \(16, 16\)"):
        RandomCrop(16, padding=2)(x)
    with pytest.raises(ValueError, match=r"RandomCrop: expected a batch .* shape \(3, 8, 8\)"):
        RandomCrop(8)(x[0])


@pytest.mark.parametrize("device", DEVICES)
def test_random_flip_flips_exactly_the_chosen_images(device):
    x = np.random.default_rng(0).random((40, 2, 3, 5)).astype(np.float32)
    xp = backend.array_module(on(device, x))
    mr.manual_seed(7)
    chosen = backend.to_numpy(backend.generator(xp).random(40) < 0.3)  # the same draw
    mr.manual_seed(7)
    out = backend.to_numpy(RandomHorizontalFlip(0.3)(on(device, x)))
    assert 0 < chosen.sum() < 40
    np.testing.assert_array_equal(out[chosen], x[chosen][..., ::-1])
    np.testing.assert_array_equal(out[~chosen], x[~chosen])
    np.testing.assert_array_equal(RandomHorizontalFlip(1.0)(x), x[..., ::-1])
    np.testing.assert_array_equal(RandomHorizontalFlip(0.0)(x), x)


@pytest.mark.parametrize("device", DEVICES)
def test_normalize_and_to_float_match_formula(device):
    raw = np.random.default_rng(0).integers(0, 256, size=(4, 3, 5, 5), dtype=np.uint8)
    x = ToFloat()(on(device, raw))
    assert x.dtype == np.float32 and float(x.max()) <= 1.0
    out = backend.to_numpy(Normalize(CIFAR10_MEAN, CIFAR10_STD)(x))
    mean = np.array(CIFAR10_MEAN).reshape(1, 3, 1, 1)
    std = np.array(CIFAR10_STD).reshape(1, 3, 1, 1)
    np.testing.assert_allclose(out, (raw / 255.0 - mean) / std, rtol=1e-5, atol=1e-5)
    assert ToFloat()(np.array([[[[255]]]], np.uint8)).item() == 1.0
    with pytest.raises(ValueError, match=r"Normalize: 3 channel means for images with 1"):
        Normalize(CIFAR10_MEAN, CIFAR10_STD)(np.zeros((2, 1, 4, 4), np.float32))
    with pytest.raises(TypeError, match="ToFloat"):
        Normalize((0.5,), (0.5,))(raw)


def test_compose_in_loader_is_reproducible():
    ds = TensorDataset(np.random.default_rng(0).integers(0, 256, (16, 3, 8, 8), dtype=np.uint8),
                       np.zeros(16))
    augment = Compose([RandomCrop(8, padding=2), RandomHorizontalFlip(),
                       Normalize(CIFAR10_MEAN, CIFAR10_STD)])
    runs = []
    for _ in range(2):
        mr.manual_seed(5)
        runs.append([x.numpy() for x, _ in DataLoader(ds, batch_size=8, transform=augment)])
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][0].shape == (8, 3, 8, 8)


def test_loader_augments_each_batch_by_its_position_alone():
    """Batch b of epoch e is cropped and flipped the same way straight through or after
    load_state_dict, whatever the global generators did meanwhile: resuming needs no
    generator state."""
    ds = TensorDataset(np.random.default_rng(1).integers(0, 256, (24, 3, 8, 8),
                                                         dtype=np.uint8), np.zeros(24))
    augment = Compose([RandomCrop(8, padding=2), RandomHorizontalFlip()])
    mr.manual_seed(0)
    straight = DataLoader(ds, batch_size=8, shuffle=True, seed=3, transform=augment)
    expected = [x.numpy() for _ in range(2) for x, _ in straight]  # epochs 0 and 1
    mr.manual_seed(123)
    mr.randn(50)
    resumed = DataLoader(ds, batch_size=8, shuffle=True, seed=3, transform=augment)
    resumed.load_state_dict({"seed": 3, "epoch": 1, "batch": 2})
    (last, _), = list(resumed)
    last = last.numpy()
    np.testing.assert_array_equal(last, expected[5])  # epoch 1, batch 2
    raw = DataLoader(ds, batch_size=8, shuffle=True, seed=3)
    raw.load_state_dict({"seed": 3, "epoch": 1, "batch": 2})
    assert not np.array_equal(last, next(iter(raw))[0].numpy())  # it was augmented


@pytest.mark.cuda
def test_loader_moves_batches_to_cuda():
    if not mr.cuda.is_available():
        pytest.skip("no CUDA GPU")
    images, labels = next(iter(DataLoader(tiny_dataset(4), batch_size=4, device="cuda",
                                          transform=RandomCrop(2, padding=1))))
    assert images.device == "cuda" and labels.device == "cuda" and images.shape == (4, 3, 2, 2)


# --------------------------------------------------------------------------- full data


@pytest.mark.slow
def test_full_cifar10_from_minires_data_matches_official_md5s():
    """Needs the real files under $MINIRES_DATA (pytest -m slow); skipped otherwise."""
    root = os.environ.get("MINIRES_DATA")
    folder = os.path.join(root or "", "cifar-10-batches-bin")
    if not root or not os.path.isdir(folder):
        pytest.skip("set MINIRES_DATA to a folder holding cifar-10-batches-bin/")
    train, test = CIFAR10(root=root), CIFAR10(root=root, train=False)
    assert (len(train), len(test)) == (50000, 10000)
    assert np.bincount(train.targets).tolist() == [5000] * 10
    assert np.bincount(test.targets).tolist() == [1000] * 10
    for name, digest in CIFAR10.train_list + CIFAR10.test_list:
        assert md5sum(os.path.join(os.path.dirname(train.files[0]), name)) == digest
    sample = CIFAR10(sample=True)  # the shipped sample is the first 2000 records
    np.testing.assert_array_equal(sample.data, train.data[:2000])
    np.testing.assert_array_equal(sample.targets, train.targets[:2000])
