"""CIFAR-10 and MNIST read from their official files, and a dataset over arrays you have.

A dataset here holds the WHOLE split in memory as two arrays: ``data`` (uint8,
``(N, C, H, W)``) and ``targets`` (int64, ``(N,)``). CIFAR-10 is 150 MB and MNIST 47 MB,
so this costs little and lets the ``DataLoader`` build a batch with one fancy-indexing
operation instead of a Python loop over images.

The readers parse the official formats byte by byte with NumPy (never pickle, which can
run arbitrary code) and check every size they can, so a truncated or wrong file fails
at once with a message naming the file, what was expected, and where files should go.
The small samples shipped in ``minires/data/samples/`` are stored in the same formats
and read by the same functions.

Files found on disk are checked against their published MD5s before they are used, not
only after a download (six files of zeros of the right sizes are not CIFAR-10). Each file
is hashed once: the digest is remembered by the file's size and modification time
(``download.verify_file``), so later loads cost a ``stat``.
"""

from __future__ import annotations

import gzip
import operator
import os
import zlib

import numpy

from .. import backend
from ..tensors import Tensor
from .download import DatasetError, download_url, extract_tar_folder, verify_file
from .transforms import ToFloat

SAMPLES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "samples")

CIFAR10_RECORD_SIZE = 1 + 3 * 32 * 32  # 3073: one label byte, then the R, G, B planes
IDX_IMAGES_MAGIC = 0x00000803  # idx: two zero bytes, dtype 0x08 (uint8), 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # idx: two zero bytes, dtype 0x08 (uint8), 1 dimension


def default_root() -> str:
    """Where datasets live unless ``root`` is given: ``$MINIRES_DATA`` or ``~/.cache/minires``."""
    return os.path.expanduser(
        os.environ.get("MINIRES_DATA") or os.path.join("~", ".cache", "minires")
    )


# --------------------------------------------------------------------------- readers


def _read_bytes(path, where: str = "") -> bytes:
    """The whole file, decompressed if it is gzip (detected by its magic bytes, not its name)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as error:
        raise DatasetError(f"cannot read {path} ({error}).{where}") from error
    # 1f 8b is gzip's magic. No CIFAR-10 record starts with 0x1f (labels are 0-9) and no
    # idx file does (they start with two zero bytes), so sniffing is unambiguous.
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as error:
            raise DatasetError(
                f"{path} is a gzip file that does not decompress ({error}): it is truncated "
                f"or corrupt. Delete it and fetch it again.{where}"
            ) from error
    return raw


def read_cifar_batch(path, num_records: int | None = None, where: str = ""):
    """Read one file of the CIFAR-10 binary version (plain or gzip-compressed).

    Each record is 3073 bytes: the label (0-9), then 1024 red, 1024 green and 1024 blue
    bytes, each plane a 32x32 image in row-major order. ``num_records``, when given, is
    the exact number of records the file must hold (10000 for an official file).

    Returns ``(images, labels)``: uint8 ``(N, 3, 32, 32)`` (a read-only view of the file's
    bytes) and int64 ``(N,)``.
    """
    raw = _read_bytes(path, where)
    size = len(raw)
    if num_records is not None and size != num_records * CIFAR10_RECORD_SIZE:
        raise DatasetError(
            f"CIFAR-10 file {path} is {size} bytes (decompressed); expected "
            f"{num_records * CIFAR10_RECORD_SIZE} bytes ({num_records} records of "
            f"{CIFAR10_RECORD_SIZE} bytes: 1 label byte + 3072 pixel bytes). The file is "
            f"truncated or is not the official CIFAR-10 binary version.{where}"
        )
    if size == 0 or size % CIFAR10_RECORD_SIZE:
        raise DatasetError(
            f"CIFAR-10 file {path} is {size} bytes, not a positive multiple of the "
            f"{CIFAR10_RECORD_SIZE}-byte record: truncated or not the binary version.{where}"
        )
    records = numpy.frombuffer(raw, dtype=numpy.uint8).reshape(-1, CIFAR10_RECORD_SIZE)
    labels = records[:, 0].astype(numpy.int64)
    bad = numpy.flatnonzero(labels > 9)
    if bad.size:
        raise DatasetError(
            f"CIFAR-10 file {path}: record {bad[0]} has label byte {labels[bad[0]]}, not a "
            f"class index 0-9. This is not the CIFAR-10 binary version (the Python "
            f"'pickle' version is not supported: it can run code when loaded).{where}"
        )
    # The planes come one after another, so the pixel bytes are already (C, H, W).
    images = records[:, 1:].reshape(-1, 3, 32, 32)  # (N, C, H, W)
    return images, labels


def read_idx(path, expected_magic: int | None = None, where: str = ""):
    """Read an idx file of unsigned bytes (the MNIST format), plain or gzip-compressed.

    Header: magic number (two zero bytes, the dtype code 0x08, the number of dimensions),
    then each dimension as a big-endian int32, then the data row-major. The file size
    must match the header exactly. Returns a read-only uint8 array of the header's shape.
    """
    raw = _read_bytes(path, where)
    if len(raw) < 4:
        raise DatasetError(f"idx file {path} is {len(raw)} bytes: too short for a header.{where}")
    magic = int.from_bytes(raw[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        kind = {IDX_IMAGES_MAGIC: "images (idx3, uint8)", IDX_LABELS_MAGIC: "labels (idx1, uint8)"}
        raise DatasetError(
            f"idx file {path} has magic number 0x{magic:08x}; expected 0x{expected_magic:08x} "
            f"for {kind.get(expected_magic, 'this file')}. It is not the right MNIST file "
            f"(images and labels swapped?) or not an idx file.{where}"
        )
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError(
            f"idx file {path} has magic number 0x{magic:08x}; only unsigned-byte idx files "
            f"(0x000008NN) are supported.{where}"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(
            f"idx file {path} is {len(raw)} bytes: too short for its {ndim}-dimension "
            f"header ({header} bytes).{where}"
        )
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(numpy.prod(shape, dtype=numpy.int64))
    if len(raw) != expected:
        raise DatasetError(
            f"idx file {path} is {len(raw)} bytes (decompressed); its header says shape "
            f"{shape}, so expected {expected} bytes. The file is truncated or corrupt.{where}"
        )
    return numpy.frombuffer(raw, dtype=numpy.uint8, offset=header).reshape(shape)


# --------------------------------------------------------------------------- datasets


class Dataset:
    """A whole split in memory: ``data`` ``(N, C, H, W)``, ``targets`` int64 ``(N,)``.

    ``dataset[i]`` returns ``(image, label)``: the uint8 ``(C, H, W)`` array and an int.
    With a ``transform``, the image is first scaled to float32 in [0, 1] and the
    transform (which works on batches ``(N, C, H, W)``) runs on a batch of one, so the
    same transform serves ``dataset[i]`` and the ``DataLoader``.
    """

    data: numpy.ndarray
    targets: numpy.ndarray
    classes: list = []
    transform = None

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index):
        try:
            i = operator.index(index)
        except TypeError:
            raise TypeError(
                f"{type(self).__name__}[...] takes one integer index, got {index!r}; use "
                "DataLoader (or .data[indices]) for batches"
            ) from None
        if not -len(self) <= i < len(self):
            raise IndexError(f"{type(self).__name__} index {i} out of range for {len(self)} items")
        i %= len(self)
        label = int(self.targets[i])
        if self.transform is None:
            return self.data[i], label
        return self.transform(ToFloat()(self.data[i: i + 1]))[0], label

    def __repr__(self) -> str:
        shape = "x".join(str(d) for d in self.data.shape[1:])
        return f"{type(self).__name__}({len(self)} images of {shape}, {len(self.classes)} classes)"


class TensorDataset(Dataset):
    """A dataset over arrays you already have: images ``(N, C, H, W)`` and labels ``(N,)``.

    Unlike PyTorch's ``TensorDataset(*tensors)`` it takes exactly images and labels, which
    is what the ``DataLoader`` batches. Arrays (or Tensors) are kept on the host; the
    loader moves each batch to its device.
    """

    def __init__(self, data, targets, transform=None, classes=None):
        data = backend.to_numpy(data.data if isinstance(data, Tensor) else data)
        targets = backend.to_numpy(targets.data if isinstance(targets, Tensor) else targets)
        if data.ndim != 4 or targets.ndim != 1 or len(data) != len(targets):
            raise ValueError(
                f"TensorDataset: expected images (N, C, H, W) and labels (N,), got shapes "
                f"{data.shape} and {targets.shape}"
            )
        self.data = data
        self.targets = targets.astype(numpy.int64, copy=False)
        self.transform = transform
        n_classes = int(self.targets.max()) + 1 if len(self.targets) else 0
        self.classes = list(classes) if classes is not None else [str(c) for c in range(n_classes)]


def _stack(pieces):
    """Concatenate ``(images, labels)`` pieces into fresh writable arrays (one copy)."""
    images = numpy.concatenate([p[0] for p in pieces]) if len(pieces) > 1 else pieces[0][0].copy()
    labels = numpy.concatenate([p[1] for p in pieces])
    return images, labels


def _missing_sample(path) -> DatasetError:
    return DatasetError(
        f"the sample file {path} that ships with minires is missing: this installation "
        "lacks its package data (minires/data/samples/). Reinstall minires, or from a source "
        "checkout run: python scripts/make_sample.py <folder with the official files>."
    )


class CIFAR10(Dataset):
    """CIFAR-10 from the official binary version: 50000 train / 10000 test RGB 32x32 images.

    Looks for ``root/cifar-10-batches-bin/`` (or ``root`` itself when it holds the files),
    where the official ``cifar-10-binary.tar.gz`` extracts to. ``root`` defaults to
    ``$MINIRES_DATA`` or ``~/.cache/minires``. ``download=True`` fetches the archive,
    checks its MD5 and the MD5 of every extracted file. Files found on disk are checked
    too: sizes on every load, MD5s once per file (remembered by size and mtime).
    ``sample=True`` reads the small real sample shipped with minires
    (the first 2000 train / 1000 test records of the official files) and needs no
    network and no ``root``.
    """

    base_folder = "cifar-10-batches-bin"
    url = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
    archive = "cifar-10-binary.tar.gz"
    archive_md5 = "c32a1d4ab5d03f1284b67883e8d87530"
    # The MD5s published for the files the archive extracts to.
    train_list = [
        ("data_batch_1.bin", "5dd7e06a14cb22eb9f671a540d1b7c25"),
        ("data_batch_2.bin", "5ea93a67294ea407fff1d09f752e9692"),
        ("data_batch_3.bin", "942cd6a4bcdd0dd3c604fbe906cb4421"),
        ("data_batch_4.bin", "ae636b3ba5c66a11e91e8cb52e771fcb"),
        ("data_batch_5.bin", "53f37980c15c3d472c316c40844f3f0d"),
    ]
    test_list = [("test_batch.bin", "803d5f7f4d78ea53de84dbe85f74fb6d")]
    records_per_file = 10000
    sample_folder = "cifar10"
    sample_train = [("data_batch_1.bin.gz", 2000)]  # (file, records)
    sample_test = [("test_batch.bin.gz", 1000)]
    classes = ["airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck"]

    def __init__(self, root=None, train=True, download=False, transform=None, sample=False):
        self.train = bool(train)
        self.transform = transform
        self.sample = bool(sample)
        if self.sample:
            self.root = os.path.join(SAMPLES_DIR, self.sample_folder)
            where = ""
            files = [(os.path.join(self.root, name), count)
                     for name, count in (self.sample_train if self.train else self.sample_test)]
            for path, _ in files:
                if not os.path.isfile(path):
                    raise _missing_sample(path)
        else:
            self.root = os.path.expanduser(os.fspath(root)) if root is not None else default_root()
            where = self._where()
            folder = self._find_folder()
            if folder is None and download:
                self.download()
                folder = self._find_folder()
            if folder is None:
                names = ", ".join(name for name, _ in self._split_list())
                raise DatasetError(
                    f"CIFAR-10 ({'train' if self.train else 'test'}) not found: no folder "
                    f"holding {names} in {os.path.join(self.root, self.base_folder)} or "
                    f"{self.root}. Pass download=True to fetch it.{where}"
                )
            self._verify_split(folder)
            files = [(os.path.join(folder, name), self.records_per_file)
                     for name, _ in self._split_list()]
        self.files = [path for path, _ in files]
        self.data, self.targets = _stack(
            [read_cifar_batch(path, count, where) for path, count in files]
        )

    # ----------------------------------------------------------------- locating
    def _split_list(self):
        return self.train_list if self.train else self.test_list

    def _file_size(self) -> int:
        return self.records_per_file * CIFAR10_RECORD_SIZE

    def _find_folder(self):
        """The first candidate folder holding every file of this split, else None."""
        for folder in (os.path.join(self.root, self.base_folder), self.root):
            if all(os.path.isfile(os.path.join(folder, n)) for n, _ in self._split_list()):
                return folder
        return None

    def _where(self) -> str:
        names = ", ".join(name for name, _ in self.train_list + self.test_list)
        return (
            f"\nExpected layout: {os.path.join(self.root, self.base_folder, '')} holding "
            f"{names} ({self._file_size()} bytes each), which is what the official "
            f"{self.archive} ({self.url}, MD5 {self.archive_md5}) extracts to: extract it "
            f"into {self.root}. Or pass download=True, or use sample=True for the small "
            "sample that ships with minires."
        )

    # ----------------------------------------------------------------- verification
    def _verify(self, folder, files=None) -> None:
        """Every file of ``files`` (default: all six) in ``folder``: right size, right MD5."""
        for name, md5 in files if files is not None else self.train_list + self.test_list:
            path = os.path.join(folder, name)
            if not os.path.isfile(path):
                raise DatasetError(f"CIFAR-10 file {name} is missing from {folder}.{self._where()}")
            size = os.path.getsize(path)
            if size != self._file_size():
                raise DatasetError(
                    f"CIFAR-10 file {path} is {size} bytes; expected {self._file_size()} bytes "
                    f"({self.records_per_file} records of {CIFAR10_RECORD_SIZE} bytes): "
                    f"truncated or corrupt.{self._where()}"
                )
            verify_file(path, md5=md5, what="CIFAR-10 file", where=self._where())

    def _verify_split(self, folder) -> None:
        self._verify(folder, self._split_list())

    # ----------------------------------------------------------------- download
    def download(self) -> None:
        """Fetch and extract the official archive into ``root`` unless the files are there.

        Atomic: the archive is renamed into place only with the right MD5, and the
        folder only once every file has the right size and MD5.
        """
        folder = os.path.join(self.root, self.base_folder)
        try:
            self._verify(folder)
            return  # already complete and verified
        except DatasetError:
            pass
        os.makedirs(self.root, exist_ok=True)
        archive = os.path.join(self.root, self.archive)
        try:
            verify_file(archive, md5=self.archive_md5, what="CIFAR-10 archive")
        except (OSError, DatasetError):  # absent, or not the official bytes: fetch it
            download_url(self.url, archive, self.archive_md5, where=self._where())
        extract_tar_folder(archive, self.root, self.base_folder, verify=self._verify,
                           where=self._where())

    def __repr__(self) -> str:
        split = "train" if self.train else "test"
        kind = "sample" if self.sample else f"root={self.root!r}"
        return f"CIFAR10({split}, {len(self)} images, {kind})"


class MNIST(Dataset):
    """MNIST from the official idx files: 60000 train / 10000 test grey 28x28 digits.

    Looks for ``train-images-idx3-ubyte`` / ``train-labels-idx1-ubyte`` (train) or the
    ``t10k-`` pair (test), each plain or ``.gz``, in ``root/mnist/``, ``root/MNIST/raw/``
    (torchvision's layout) or ``root`` itself. ``data`` is uint8 ``(N, 1, 28, 28)``.
    ``download=True`` fetches the two ``.gz`` files of the split from a mirror and checks
    their published MD5s. ``.gz`` files found on disk are MD5-checked too (once per file,
    remembered by size and mtime), and preferred over plain files when both are there:
    the MD5s are published for the ``.gz`` files only, so plain idx files are checked by
    their headers and sizes alone. ``sample=True`` reads the shipped sample (the first
    2000 train / 1000 test images of the official files).
    """

    base_folder = "mnist"
    mirrors = [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ]
    # MD5s of the official .gz files (as published with torchvision's MNIST).
    resources = {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }
    split_files = {
        "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    }
    split_sizes = {"train": 60000, "test": 10000}
    sample_folder = "mnist"
    sample_sizes = {"train": 2000, "test": 1000}
    classes = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four",
               "5 - five", "6 - six", "7 - seven", "8 - eight", "9 - nine"]

    def __init__(self, root=None, train=True, download=False, transform=None, sample=False):
        self.train = bool(train)
        self.transform = transform
        self.sample = bool(sample)
        split = "train" if self.train else "test"
        if self.sample:
            self.root = os.path.join(SAMPLES_DIR, self.sample_folder)
            where, count = "", self.sample_sizes[split]
            paths = [os.path.join(self.root, name + ".gz") for name in self.split_files[split]]
            for path in paths:
                if not os.path.isfile(path):
                    raise _missing_sample(path)
        else:
            self.root = os.path.expanduser(os.fspath(root)) if root is not None else default_root()
            where, count = self._where(), self.split_sizes[split]
            paths = self._find_files()
            if paths is None and download:
                self.download()
                paths = self._find_files()
            if paths is None:
                raise DatasetError(
                    f"MNIST ({split}) not found: no {' and '.join(self.split_files[split])} "
                    f"(plain or .gz) in {os.path.join(self.root, self.base_folder)}, "
                    f"{os.path.join(self.root, 'MNIST', 'raw')} or {self.root}. "
                    f"Pass download=True to fetch it.{where}"
                )
            for path in paths:
                if path.endswith(".gz"):
                    verify_file(path, md5=self.resources[os.path.basename(path)],
                                what="MNIST file", where=where)
        self.files = list(paths)
        images = read_idx(paths[0], IDX_IMAGES_MAGIC, where)
        labels = read_idx(paths[1], IDX_LABELS_MAGIC, where)
        if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != count:
            raise DatasetError(
                f"MNIST file {paths[0]} holds images of shape {images.shape}; expected "
                f"({count}, 28, 28) for the {'sample ' if self.sample else ''}{split} split."
                f"{where}"
            )
        if labels.shape != (count,):
            raise DatasetError(
                f"MNIST file {paths[1]} holds {labels.shape} labels; expected ({count},) "
                f"to match {paths[0]}.{where}"
            )
        if labels.max(initial=0) > 9:
            raise DatasetError(f"MNIST file {paths[1]} has a label {labels.max()} > 9.{where}")
        self.data = images[:, None].copy()  # (N, 1, 28, 28): one grey channel
        self.targets = labels.astype(numpy.int64)

    def _find_files(self):
        split = "train" if self.train else "test"
        candidates = (os.path.join(self.root, self.base_folder),
                      os.path.join(self.root, "MNIST", "raw"), self.root)
        for folder in candidates:
            found = []
            for name in self.split_files[split]:
                # .gz first: its MD5 is published, so it can be verified
                for path in (os.path.join(folder, name + ".gz"), os.path.join(folder, name)):
                    if os.path.isfile(path):
                        found.append(path)
                        break
            if len(found) == 2:
                return found
        return None

    def _where(self) -> str:
        names = ", ".join(self.resources)
        return (
            f"\nExpected layout: {os.path.join(self.root, self.base_folder, '')} holding "
            f"{names} (the official idx files, gzip-compressed or not), from "
            f"{self.mirrors[0]}. Or pass download=True, or use sample=True for the small "
            "sample that ships with minires."
        )

    def download(self) -> None:
        """Fetch this split's two official ``.gz`` files into ``root/mnist/`` (MD5-checked)."""
        folder = os.path.join(self.root, self.base_folder)
        split = "train" if self.train else "test"
        for base in self.split_files[split]:
            name = base + ".gz"
            md5 = self.resources[name]
            path = os.path.join(folder, name)
            try:
                verify_file(path, md5=md5, what="MNIST file")
                continue  # already there, with the official bytes
            except (OSError, DatasetError):
                pass
            errors = []
            for mirror in self.mirrors:  # the first mirror that serves the right bytes wins
                try:
                    download_url(mirror + name, path, md5)
                    break
                except DatasetError as error:
                    errors.append(f"  {error}")
            else:
                raise DatasetError(
                    f"could not download MNIST file {name} (MD5 {md5}) from any mirror:\n"
                    + "\n".join(errors) + self._where()
                )

    def __repr__(self) -> str:
        split = "train" if self.train else "test"
        kind = "sample" if self.sample else f"root={self.root!r}"
        return f"MNIST({split}, {len(self)} images, {kind})"


_DATASETS = {
    "cifar10": (CIFAR10, False),
    "cifar10-sample": (CIFAR10, True),
    "mnist": (MNIST, False),
    "mnist-sample": (MNIST, True),
    "imagefolder": (None, False),  # your own images: 'imagefolder:PATH' or root=PATH
}


def get_dataset(name: str, train: bool = True, root=None, download: bool = False,
                transform=None, size=None) -> Dataset:
    """A dataset by name: 'cifar10', 'cifar10-sample', 'mnist', 'mnist-sample' or
    'imagefolder:PATH'.

    The '-sample' names read the small real samples that ship with minires (offline).
    'imagefolder:PATH' (or 'imagefolder' with ``root=PATH``) reads your own images from
    ``PATH/train/<class>/...`` and ``PATH/val/<class>/...`` (or ``PATH/test``), resized
    at load to ``size`` when given (see ``ImageFolder``).
    """
    key = name.lower().replace("_", "-").replace("cifar-10", "cifar10")
    path = None
    if key.startswith(("imagefolder:", "image-folder:")):
        key, path = "imagefolder", name.split(":", 1)[1]
    key = key.replace("image-folder", "imagefolder")
    if key not in _DATASETS:
        names = [k if k != "imagefolder" else "imagefolder:PATH" for k in _DATASETS]
        raise ValueError(f"unknown dataset {name!r}: expected one of {', '.join(names)}")
    if key == "imagefolder":
        from .image_folder import image_folder_split

        path = path or root
        if not path:
            raise ValueError("get_dataset('imagefolder'): say where the images are: "
                             "'imagefolder:PATH' or root=PATH")
        return image_folder_split(path, train=train, transform=transform, size=size)
    if size is not None:
        raise ValueError(f"get_dataset: size= resizes image folders at load; {name!r} has "
                         "one image size already")
    cls, sample = _DATASETS[key]
    if sample:
        return cls(train=train, transform=transform, sample=True)
    return cls(root=root, train=train, download=download, transform=transform)
