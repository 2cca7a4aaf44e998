"""MNIST (LeCun et al., 1998) from its official idx files, or from the sample that ships
with minires."""

from __future__ import annotations

import os

import numpy

from .dataset import SAMPLES_DIR, Dataset, missing_sample
from .download import DatasetError, download_url, verify_file
from .readers import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, default_root, read_idx


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
                    raise missing_sample(path)
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
