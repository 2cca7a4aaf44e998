"""CIFAR-10 (Krizhevsky, 2009) from its official binary files, checked against their
published MD5s, or from the sample that ships with minires.

Files found on disk are checked against their published MD5s before they are used, not
only after a download (six files of zeros of the right sizes are not CIFAR-10). Each file
is hashed once: the digest is remembered by the file's size and modification time
(``download.verify_file``), so later loads cost a ``stat``.
"""

from __future__ import annotations

import os

from .dataset import SAMPLES_DIR, Dataset, missing_sample, stack_pieces
from .download import DatasetError, download_url, extract_tar_folder, verify_file
from .readers import CIFAR10_RECORD_SIZE, default_root, read_cifar_batch


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
                    raise missing_sample(path)
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
        self.data, self.targets = stack_pieces(
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
