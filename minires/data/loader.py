"""DataLoader: whole batches by fancy indexing, shuffled reproducibly, resumable mid-epoch.

PyTorch's DataLoader calls ``dataset[i]`` once per image in worker processes. minires
datasets hold the whole split as arrays, so a batch is one fancy-indexing operation
(``data[indices]``) on the host, one copy to the device, and vectorised batch
transforms there: no per-image Python in the hot path and no worker processes.

Per batch:

1. ``indices`` = the next ``batch_size`` entries of this epoch's order;
2. ``images = dataset.data[indices]`` (uint8), ``labels = dataset.targets[indices]``;
3. both are moved to ``device`` (uint8 is 4x less to copy than float32);
4. images are scaled to float32 in [0, 1] there (``ToFloat``);
5. the dataset's ``transform``, then the loader's ``transform``, run on that device;
6. yielded as ``(images, labels)`` Tensors: float32 ``(N, C, H, W)`` and int64 ``(N,)``.

Randomness is a function of the position, never of what ran before:

* shuffling: epoch ``e``'s order is a permutation drawn from a generator seeded with
  ``(seed, e)``: reproducible from ``seed``, different every epoch, and rebuilt for any
  epoch on demand;
* augmentation: the transforms of batch ``b`` of epoch ``e`` run inside
  ``backend.random_stream("DataLoader", seed, e, b)``, so their random crops and flips
  (on the CPU or the GPU) depend on nothing but that key.

So ``state_dict()`` is three integers (seed, epoch, batches already yielded), and
``load_state_dict`` resumes exactly mid-epoch: the same images, augmented the same way,
with no generator state to save.

Data-parallel training (``num_replicas`` ranks, this one ``rank``): ``batch_size`` is
the *global* batch. Every rank walks through the same global batches (the same order,
the same keyed augmentation, drawn for the whole global batch) and yields its share of
each, rows ``rank, rank + num_replicas, ...``: disjoint, unpadded, and together exactly
the batch a single process would see. Image ``i`` of global batch ``b`` is therefore
cropped and flipped the same way whatever the number of ranks, and ``len()``,
``state_dict()`` and ``load_state_dict`` count global batches, so a position saved with
any number of ranks resumes with any other. The price: each rank augments the whole
global batch to keep its own rows (a crop and a flip per image: little next to a
forward and backward pass); without random transforms it loads only its own rows.
"""

from __future__ import annotations

import math
import numbers

import numpy

from .. import backend
from ..tensors import Tensor
from .transforms import ToFloat


class DataLoader:
    """Iterate over ``dataset`` in batches of ``(images, labels)`` Tensors on ``device``.

    ``len(loader)`` is the number of batches per epoch. Each ``iter(loader)`` (each
    ``for`` loop) runs the next epoch; ``loader.epoch`` is the epoch the next loop runs.
    ``seed=None`` draws a seed from minires' generator, so ``mr.manual_seed`` fixes it.
    A ``sampler`` (``sampler.order(epoch)`` and ``len(sampler)``) replaces the loader's
    own order, e.g. a ``minires.distributed.DistributedSampler``.

    ``num_replicas`` and ``rank`` split every global batch of ``batch_size`` among the
    ranks of a data-parallel run (see the module's docstring); ``global_batch_size(b)``
    is the size of global batch ``b`` before the split.

    Datasets with ``.data``/``.targets`` arrays are batched by fancy indexing; any other
    dataset (``__len__`` and ``__getitem__`` returning ``(image, label)``) works too, one
    item at a time (slow, and its own ``__getitem__`` applies its transform).
    """

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = False,
                 drop_last: bool = False, seed: int | None = None, transform=None,
                 device=None, sampler=None, num_replicas: int = 1, rank: int = 0):
        if (isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral)
                or batch_size < 1):
            raise ValueError(
                f"DataLoader: batch_size must be a positive integer, got {batch_size!r}"
            )
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler and shuffle=True exclude each other; the "
                             "sampler decides the order")
        self.num_replicas, self.rank = _replicas(num_replicas, rank, sampler, batch_size)
        self.sampler = sampler  # e.g. a DistributedSampler: it gives each epoch's order
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.transform = transform
        self.device = backend.normalize_device(device if device is not None else "cpu")
        if seed is None:
            seed = int(backend.generator(numpy).integers(0, 2**63 - 1))
        if int(seed) < 0:
            raise ValueError(f"DataLoader: seed must be a non-negative integer, got {seed}")
        self.seed = int(seed)
        self.epoch = 0  # the epoch the next iter() runs
        self._start_batch = 0  # where that epoch starts (nonzero only after load_state_dict)
        self._current = None  # [epoch, batches yielded] of the epoch being iterated
        if self.num_replicas > 1 and len(self):
            smallest = self.global_batch_size(len(self) - 1)
            if smallest < self.num_replicas:
                raise ValueError(
                    f"DataLoader: a global batch of {smallest} image(s) (the last of each "
                    f"epoch: {self._samples()} images in batches of {self.batch_size}) "
                    f"cannot give each of {self.num_replicas} ranks an image; choose "
                    "another batch_size, or drop_last=True")

    def _samples(self) -> int:
        return len(self.sampler if self.sampler is not None else self.dataset)

    def __len__(self) -> int:
        n = self._samples()
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def global_batch_size(self, index: int) -> int:
        """The number of images in batch ``index`` of every epoch, all ranks together
        (``batch_size``, except a last, smaller batch when ``drop_last`` is False)."""
        return max(0, min(self.batch_size, self._samples() - int(index) * self.batch_size))

    def rank_batch_size(self, index: int) -> int:
        """This rank's share of batch ``index``: the rows ``rank, rank + num_replicas, ...``."""
        return len(range(self.rank, self.global_batch_size(index), self.num_replicas))

    # ----------------------------------------------------------------- order
    def order(self, epoch: int) -> numpy.ndarray:
        """The sample indices of ``epoch`` in the order they are served."""
        if self.sampler is not None:
            return numpy.asarray(self.sampler.order(epoch))
        n = len(self.dataset)
        if not self.shuffle:
            return numpy.arange(n)
        # Seeding with (seed, epoch) makes every epoch's permutation independent of how
        # many numbers earlier epochs drew, so any epoch can be rebuilt on resume.
        return numpy.random.default_rng([self.seed, int(epoch)]).permutation(n)

    def __iter__(self):
        epoch, start = self.epoch, self._start_batch
        self.epoch, self._start_batch = epoch + 1, 0
        self._current = [epoch, start]  # set now, not at the first next(), for state_dict()
        return self._epoch(self._current)

    def _epoch(self, current: list):
        epoch, start = current
        order = self.order(epoch)
        own = slice(self.rank, None, self.num_replicas)  # this rank's rows of each batch
        whole = self.num_replicas == 1 or self._draws_random_numbers()
        for b in range(start, len(self)):
            indices = order[b * self.batch_size: (b + 1) * self.batch_size]
            with backend.random_stream("DataLoader", self.seed, epoch, b):
                # the random draws are those of the whole global batch, on every rank
                batch = self._batch(indices if whole else indices[own])
            if whole and self.num_replicas > 1:
                batch = tuple(Tensor(_rows(t.data, own)) for t in batch)
            current[1] = b + 1  # counted before the yield: state_dict() in the loop body
            yield batch  # then resumes after this batch
        if self._current is current:
            self._current = None  # finished: state_dict() now points at the next epoch

    def _draws_random_numbers(self) -> bool:
        """Whether building a batch may draw random numbers: any transform may, and so
        may a generic dataset's ``__getitem__``. Only a ``.data`` array dataset without
        transforms certainly does not."""
        arrays = isinstance(getattr(self.dataset, "data", None), numpy.ndarray) and \
            isinstance(getattr(self.dataset, "targets", None), numpy.ndarray)
        return not arrays or self.transform is not None or \
            getattr(self.dataset, "transform", None) is not None

    def _batch(self, indices):
        data = getattr(self.dataset, "data", None)
        targets = getattr(self.dataset, "targets", None)
        if isinstance(data, numpy.ndarray) and isinstance(targets, numpy.ndarray):
            images, labels = data[indices], targets[indices]  # (B, C, H, W), (B,): copies
            dataset_transform = getattr(self.dataset, "transform", None)
        else:  # a generic dataset: its __getitem__ already applied its transform
            items = [self.dataset[int(i)] for i in indices]
            images = numpy.stack([backend.to_numpy(x.data if isinstance(x, Tensor) else x)
                                  for x, _ in items])
            labels = numpy.asarray([int(y) for _, y in items])
            dataset_transform = None
        images = ToFloat()(backend.to_device(images, self.device))
        labels = backend.to_device(labels.astype(numpy.int64, copy=False), self.device)
        if dataset_transform is not None:
            images = dataset_transform(images)
        if self.transform is not None:
            images = self.transform(images)
        return Tensor(images), Tensor(labels)

    # ----------------------------------------------------------------- resume
    def state_dict(self) -> dict:
        """Where the loader is, as plain ints (JSON-able): resumes with ``load_state_dict``.

        Inside a ``for`` loop it is the running epoch and the number of batches already
        yielded; between loops, the next epoch and 0.
        """
        if self._current is not None:
            epoch, batch = self._current
        else:
            epoch, batch = self.epoch, self._start_batch
        return {"seed": self.seed, "epoch": int(epoch), "batch": int(batch)}

    def load_state_dict(self, state: dict) -> None:
        """The next ``iter()`` runs epoch ``state['epoch']`` from batch ``state['batch']``."""
        batch = int(state["batch"])
        if not 0 <= batch <= len(self):
            raise ValueError(
                f"DataLoader.load_state_dict: batch {batch} is outside 0..{len(self)} "
                f"(the number of batches of this loader)"
            )
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        self._start_batch = batch
        self._current = None

    def __repr__(self) -> str:
        split = (f", num_replicas={self.num_replicas}, rank={self.rank}"
                 if self.num_replicas > 1 else "")
        return (f"DataLoader({self.dataset!r}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}, device={self.device!r}"
                f"{split})")


def _rows(array, rows: slice):
    return backend.array_module(array).ascontiguousarray(array[rows])


def _replicas(num_replicas, rank, sampler, batch_size: int) -> tuple:
    for name, value in (("num_replicas", num_replicas), ("rank", rank)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"DataLoader: {name} must be an integer, got {value!r}")
    if num_replicas < 1 or not 0 <= rank < num_replicas:
        raise ValueError(f"DataLoader: rank {rank} is not in a world of {num_replicas} "
                         "replicas (expected num_replicas >= 1 and 0 <= rank < num_replicas)")
    if num_replicas > 1 and sampler is not None:
        raise ValueError("DataLoader: num_replicas and a sampler exclude each other: either "
                         "split each global batch here, or let a DistributedSampler give each "
                         "rank its own samples")
    if num_replicas > batch_size:
        raise ValueError(f"DataLoader: a global batch_size of {batch_size} cannot give each "
                         f"of {num_replicas} ranks an image")
    return int(num_replicas), int(rank)
