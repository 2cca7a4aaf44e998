"""The in-memory data set, and a data set over arrays you have.

A dataset here holds the WHOLE split in memory as two arrays: ``data`` (uint8,
``(N, C, H, W)``) and ``targets`` (int64, ``(N,)``). CIFAR-10 is 150 MB and MNIST 47 MB,
so this costs little and lets the ``DataLoader`` build a batch with one fancy-indexing
operation instead of a Python loop over images.
"""

from __future__ import annotations

import operator
import os

import numpy

from .. import backend
from ..tensors import Tensor
from .download import DatasetError
from .transforms import ToFloat

SAMPLES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "samples")


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


def stack_pieces(pieces):
    """Concatenate ``(images, labels)`` pieces into fresh writable arrays (one copy)."""
    images = numpy.concatenate([p[0] for p in pieces]) if len(pieces) > 1 else pieces[0][0].copy()
    labels = numpy.concatenate([p[1] for p in pieces])
    return images, labels


def missing_sample(path) -> DatasetError:
    return DatasetError(
        f"the sample file {path} that ships with minires is missing: this installation "
        "lacks its package data (minires/data/samples/). Reinstall minires, or from a source "
        "checkout run: python scripts/make_sample.py <folder with the official files>."
    )
