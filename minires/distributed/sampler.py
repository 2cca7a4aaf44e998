"""DistributedSampler: each rank its own disjoint share of every epoch, as in PyTorch.

Epoch ``e``'s *global order* is a permutation of the dataset drawn from a generator
seeded with ``(seed, e)`` (or ``0..n-1`` without shuffling): every rank computes the
same one, with no communication. It is then made a multiple of the number of ranks
``R``, one of two ways, stated by ``drop_last``:

* ``drop_last=False`` (PyTorch's default): repeat its first samples at the end, so a few
  samples are seen twice in this epoch and every sample at least once;
* ``drop_last=True``: cut the last ``n % R`` samples, so none is seen twice and a few
  (different ones each epoch) not at all.

Rank ``r`` takes positions ``r, r + R, r + 2R, ...``: the shards are disjoint, and
together they are the whole (padded or cut) order. Because the shards interleave, the
first ``k`` samples of every rank are, all together, exactly the first ``k * R`` of the
global order. So a training run that has finished ``s`` steps of global batch ``B`` has
used the first ``s * B`` positions, whatever ``R`` was: that single number, the
``position``, is all a resume needs, even with a different number of ranks.

The DataLoader takes a sampler as ``DataLoader(dataset, batch_size, sampler=sampler)``
and asks it for ``sampler.order(epoch)``, this rank's indices of that epoch in the
order they are served, and ``len(sampler)``. Iterating the sampler itself (PyTorch's
way, with ``set_epoch``) gives the same indices.
"""

from __future__ import annotations

import math
import numbers

import numpy

from . import group as _group


def _count(n, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValueError(f"DistributedSampler: {name} must be a non-negative integer, got {n!r}")
    return int(n)


class DistributedSampler:
    """This rank's share of ``dataset`` (anything with ``len()``, or the length itself).

    ``num_replicas`` and ``rank`` default to the process group's world size and rank;
    ``seed`` must be the same on every rank (PyTorch's default is 0, and so is ours).
    When the group has several ranks, the settings are compared across ranks at
    construction (a collective: construct the sampler on every rank), so a rank with a
    different seed or dataset size fails at once instead of training on overlapping data.
    """

    def __init__(self, dataset, num_replicas: int | None = None, rank: int | None = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False):
        n = dataset if isinstance(dataset, numbers.Integral) else len(dataset)
        self.num_samples_total = _count(n, "the dataset size")
        world = None
        if num_replicas is None or rank is None:
            world = _group.default_group()
        self.num_replicas = _count(world.size if num_replicas is None else num_replicas,
                                   "num_replicas")
        self.rank = _count(world.rank if rank is None else rank, "rank")
        if self.num_replicas < 1 or self.rank >= self.num_replicas:
            raise ValueError(f"DistributedSampler: rank {self.rank} is not in a world of "
                             f"{self.num_replicas} replicas (expected 0 <= rank < num_replicas)")
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.seed = _count(seed, "seed")
        if drop_last and self.num_samples_total < self.num_replicas:
            raise ValueError(f"DistributedSampler: {self.num_samples_total} samples cannot "
                             f"give each of {self.num_replicas} ranks one with drop_last=True")
        self.epoch = 0
        self.position = 0  # samples of this epoch's global order already served, all ranks
        if world is not None and world.size > 1:
            _group.check_same_on_all_ranks(
                {"dataset size": self.num_samples_total, "num_replicas": self.num_replicas,
                 "shuffle": self.shuffle, "seed": self.seed, "drop_last": self.drop_last},
                "DistributedSampler settings")

    # ----------------------------------------------------------------- sizes
    @property
    def total_size(self) -> int:
        """The length of the padded (or cut) global order: a multiple of num_replicas."""
        R = self.num_replicas
        if self.drop_last:
            return self.num_samples_total // R * R
        return math.ceil(self.num_samples_total / R) * R

    def __len__(self) -> int:
        """Samples per rank per epoch (PyTorch's ``num_samples``)."""
        return self.total_size // self.num_replicas

    @property
    def num_samples(self) -> int:
        """Samples per rank per epoch, PyTorch's name for ``len(sampler)``."""
        return len(self)

    # ----------------------------------------------------------------- orders
    def global_order(self, epoch: int) -> numpy.ndarray:
        """Epoch ``epoch``'s order of all ranks together, padded or cut to total_size."""
        n = self.num_samples_total
        if self.shuffle:
            # (seed, epoch) seeds the generator: any epoch can be rebuilt on resume
            order = numpy.random.default_rng([self.seed, int(epoch)]).permutation(n)
        else:
            order = numpy.arange(n)
        size = self.total_size
        if size <= n:
            return order[:size]
        repeats = math.ceil((size - n) / n)  # more than one pass only if n < num_replicas
        return numpy.concatenate([order] * (repeats + 1))[:size]

    def order(self, epoch: int, position: int = 0) -> numpy.ndarray:
        """This rank's indices of ``epoch`` in the order they are served, starting after
        the first ``position`` samples of the global order (those all ranks together
        already used: 0 for a whole epoch)."""
        position = _count(position, "position")
        remaining = self.global_order(epoch)[position:]
        # After a resume with another number of ranks (or another global batch) the rest
        # may not split evenly; pad or cut it like a whole epoch, so that every rank
        # runs the same number of steps (a rank with one step more would wait forever)
        R, extra = self.num_replicas, len(remaining) % self.num_replicas
        if extra and self.drop_last:
            remaining = remaining[:len(remaining) - extra]
        elif extra:
            remaining = numpy.concatenate([remaining, numpy.resize(remaining, R - extra)])
        return remaining[self.rank::R]

    # ----------------------------------------------------------------- PyTorch's protocol
    def set_epoch(self, epoch: int) -> None:
        """The epoch the next iteration serves (call it before each epoch, as in PyTorch:
        without it every epoch has the same order). Starts that epoch from its beginning."""
        self.epoch = _count(epoch, "epoch")
        self.position = 0

    def __iter__(self):
        start = self.position
        for k, index in enumerate(self.order(self.epoch, start)):
            # every rank has served k + 1 samples: (k + 1) * R global positions are used
            self.position = min(start + (k + 1) * self.num_replicas, self.total_size)
            yield int(index)

    # ----------------------------------------------------------------- resume
    def state_dict(self) -> dict:
        """``{'seed', 'epoch', 'position'}``: plain ints. ``position`` counts global
        samples, so the state resumes with any number of ranks."""
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        """Continue epoch ``state['epoch']`` after its first ``state['position']`` samples.

        A position past this sampler's ``total_size`` (possible when the state was saved
        with more ranks, whose padding made the epoch longer) means the epoch is over."""
        self.seed = _count(state["seed"], "seed")
        self.epoch = _count(state["epoch"], "epoch")
        self.position = min(_count(state["position"], "position"), self.total_size)

    def __repr__(self) -> str:
        return (f"DistributedSampler({self.num_samples_total} samples, num_replicas="
                f"{self.num_replicas}, rank={self.rank}, shuffle={self.shuffle}, "
                f"seed={self.seed}, drop_last={self.drop_last})")
