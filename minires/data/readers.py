"""The readers of the official CIFAR-10 and MNIST files, and where data sets live.

The readers parse the official formats byte by byte with NumPy (never pickle, which can
run arbitrary code) and check every size they can, so a truncated or wrong file fails
at once with a message naming the file, what was expected, and where files should go.
The small samples shipped in ``minires/data/samples/`` are stored in the same formats
and read by the same functions.
"""

from __future__ import annotations

import gzip
import os
import zlib

import numpy

from .download import DatasetError

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
