"""What a training run on several ranks adds to the loop: who writes, and where ranks agree.

``mpiexec -n R minires train ...`` (or ``minires train --nproc R ...``) starts R copies
of the same run. Each rank trains a ``DistributedDataParallel`` copy of the model on its
share of every global batch (``DataLoader(num_replicas=R, rank=r)``), and the loop stays
the loop of one process, except at the few places where the ranks must act together.
Each is one small collective at a point where the loop waits anyway:

* **Who writes.** Rank 0 alone prints, shows progress and writes the checkpoint, the
  metrics and the plot (``World.writes``).
* **Stopping.** After every step the ranks all-reduce one integer, "did a signal reach
  any of us?" (``World.any``), so a SIGINT or SIGTERM that reaches one rank stops every
  rank after the same step. It is 4 bytes on the host: the ranks already meet in the
  step's gradient all-reduce, so it adds one MPI latency per step (at most the first
  row of ``python benchmarks/bench_distributed.py --sweep-only``: small next to a step)
  and never waits for a GPU.
* **Sums and NaN.** Where the loop reads its running loss and accuracy back from the
  device anyway (every ``log_every`` steps and at the end of an epoch), one all-gather
  of three numbers per rank combines them (``World.read_sums``): the logged and saved
  train_loss and train_acc are those of all ranks' images, and a non-finite loss on any
  rank stops every rank at the same step with the same ``NonFiniteError``.
* **Evaluation** is sharded by whole batches: rank r evaluates batches r, r + R, ... of
  the test loader (disjoint and unpadded), and one all-reduce of a table of per-batch
  sums gives every rank the numbers of one process, bit for bit (the same batches,
  summed in the same order).
* **Setup errors.** A mistake that only one rank finds before training (a data file
  missing on one machine) must not leave the others waiting in their first collective.
  So the first collective of a run is an all-gather of "did your setup fail, and
  how?" (``World.agree``); if any rank's did, every rank raises that rank's error. After
  that, an error on one rank ends every rank through ``MPI_Abort``
  (``minires.distributed.faults``).

Exactness across world sizes: a run on R ranks with global batch B takes the steps of
one process with batch B (equal up to rounding; SyncBatchNorm where the model has
BatchNorm, ``--sync-bn``): the same global batches, the same augmentation per image
(the loader draws it for the whole global batch), the loss of an unevenly split last
batch weighted by each rank's share (``loss_weight``). A step's own random numbers
(dropout: none of the shipped models draws any) come from the stream of (seed, epoch,
step), extended by (rank, world size) with several ranks, so that two ranks never draw
the same masks: those, and only those, depend on the number of ranks.
"""

from __future__ import annotations

import contextlib
import os

import numpy

from .. import distributed as dist
from ..data import DatasetError
from ..nn.norm import _BatchNorm
from ..serialization import CheckpointError
from .errors import ConfigError, NonFiniteError, TrainingInterrupted

# the errors that mean a mistake in the command, its settings or its files (exit status 2)
USER_ERRORS = (ConfigError, CheckpointError, DatasetError, OSError, ValueError)


class RankError(ConfigError):
    """A mistake found on another rank during the setup of a run (exit status 2)."""


class World:
    """The ranks of a training run, as the loop sees them. A world of one process (no
    group, or a group of one) communicates nothing."""

    def __init__(self, group=None):
        self.group = group if group is not None and group.size > 1 else None
        self.rank = self.group.rank if self.group else 0
        self.size = self.group.size if self.group else 1
        self._agreed = self.group is None  # a world of one has nothing to agree on

    @classmethod
    def join(cls) -> World:
        """This process's world: joins the process group if an MPI launcher started
        several processes and none is joined yet (which also installs the hook that
        ends every rank when one raises)."""
        if not dist.is_initialized() and (dist.launcher_world_size() or 1) > 1:
            try:
                dist.init_process_group()
            except RuntimeError as error:  # no mpi4py under mpiexec: say what to install
                raise ConfigError(one_line(error)) from None
        return cls(dist.default_group() if dist.is_initialized() else None)

    @classmethod
    def of(cls, model, process_group=None) -> World:
        """The ranks ``model`` trains on: ``process_group``, else those of a
        ``DistributedDataParallel`` model, else one."""
        if process_group is None and isinstance(model, dist.DistributedDataParallel):
            process_group = model.process_group
        return cls(process_group)

    @property
    def writes(self) -> bool:
        """Whether this rank prints and writes files: rank 0."""
        return self.rank == 0

    def __repr__(self) -> str:
        return f"World(rank={self.rank}, size={self.size})"

    # ----------------------------------------------------------------- agreement
    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any (one all-reduce of an int32)."""
        if self.group is None:
            return bool(flag)
        value = numpy.array([1 if flag else 0], numpy.int32)
        return bool(self.group.all_reduce(value, "max")[0])

    def first(self, value):
        """The first rank's ``value`` that is not None (a JSON-able value), on every rank,
        as ``(rank, value)``; ``(None, None)`` if every rank's is None."""
        if self.group is None:
            return (0, value) if value is not None else (None, None)
        for rank, other in enumerate(self.group.all_gather_object(value)):
            if other is not None:
                return rank, other
        return None, None

    def agree(self, error: BaseException | None = None) -> None:
        """The first collective of a run: every rank says whether its setup failed
        (``error``, which the caller then raises). If any rank's did, every other rank
        raises a ``RankError`` (or, for an error that is not a user's mistake, a
        RuntimeError) with the first failed rank's message. Does nothing once agreed."""
        if self._agreed:
            return
        self._agreed = True
        report = None
        if error is not None:
            report = {"type": type(error).__name__, "message": one_line(error),
                      "user": isinstance(error, USER_ERRORS)}
        rank, failed = self.first(report)
        if failed is None:
            return
        if error is not None:
            error.on_every_rank = True  # the caller raises it: so do all the others
            return
        message = f"rank {rank}: {failed['message']}"
        agreed = RankError(message) if failed["user"] else RuntimeError(
            f"rank {rank} failed during setup: {failed['type']}: {failed['message']}")
        agreed.on_every_rank = True
        raise agreed

    # ----------------------------------------------------------------- the loop's sums
    def gather_sums(self, run) -> list:
        """Every rank's ``(loss_sum, correct, first_bad)``, in rank order: one host read
        (``run.read_sums``) and one all-gather of three float64 numbers per rank."""
        local = run.read_sums()
        if self.group is None:
            return [local]
        table = self.group.all_gather(numpy.array(local, numpy.float64))  # (R, 3)
        return [(float(a), float(b), int(c)) for a, b, c in table]

    def read_sums(self, run) -> tuple:
        """``run.read_sums()`` over all ranks: the summed loss and correct answers, and
        the first step of the epoch at which any rank's loss was not finite (0: none)."""
        parts = self.gather_sums(run)
        if len(parts) == 1:
            return parts[0]
        bad = [b for _, _, b in parts if b]
        return sum(p[0] for p in parts), sum(p[1] for p in parts), min(bad, default=0)

    def combined(self, run):
        """The ``RunState`` to save: ``run`` itself in a world of one, else a copy that
        holds every rank's sums (a collective: every rank calls it)."""
        if self.group is None:
            return run
        return run.combined(self.gather_sums(run))

    # ----------------------------------------------------------------- the loop's steps
    def step_key(self) -> tuple:
        """What extends the key of a step's random stream: nothing in a world of one
        (so a run of one process keys its steps as before), (rank, world size) else."""
        return () if self.group is None else (self.rank, self.size)

    def images(self, loader, index: int, n: int) -> int:
        """The images of step ``index`` on all ranks together (``n`` on this one)."""
        if self.group is None:
            return n
        sized = getattr(loader, "global_batch_size", None)
        return sized(index) if sized is not None else n * self.size

    def loss_weight(self, n: int, total: int) -> float:
        """The factor of this rank's mean loss, so that the gradient averaged over the
        ranks is that of the mean over all ``total`` images of the step: ``R n / total``
        (exactly 1.0 where the step splits evenly, so no rounding is added there)."""
        if self.group is None or n * self.size == total:
            return 1.0
        return n * self.size / total


def one_line(error: BaseException) -> str:
    """An error as one line: files by name, the first line of longer messages."""
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or error}"
    text = str(error).strip() or type(error).__name__
    return " ".join(part.strip() for part in text.splitlines())


def on_every_rank(error: BaseException) -> bool:
    """Whether every rank of the run raised ``error`` (or its twin) at the same point:
    an agreed setup error, a NaN stop, a signal stop. Any other error raised in a run of
    several ranks is this rank's alone, and must end the others (``MPI_Abort``)."""
    return isinstance(error, (NonFiniteError, TrainingInterrupted)) or \
        getattr(error, "on_every_rank", False)


# --------------------------------------------------------------------------- the recipe's part


def check_settings(config: dict, train_size: int, world: World,
                   drop_last: bool = False) -> None:
    """The settings of data-parallel training: ``sync_bn`` a bool, and an image of every
    global batch for every rank, the last batch of each epoch included (unless the
    loader drops it)."""
    if not isinstance(config.get("sync_bn", False), bool):
        raise ConfigError(f"--sync-bn is on or off (True or False), got {config['sync_bn']!r}")
    if world.size == 1:
        return
    batch_size = config["batch_size"]
    if drop_last:
        train_size -= train_size % batch_size
    last = train_size - (-(-train_size // batch_size) - 1) * batch_size
    if batch_size < world.size or last < world.size:
        what = (f"--batch-size {batch_size}" if batch_size < world.size else
                f"the last batch of each epoch ({last} of {train_size} images in batches "
                f"of {batch_size})")
        raise ConfigError(f"{what} cannot give each of {world.size} ranks an image: the "
                          "batch is the global one, split among the ranks; choose another "
                          "--batch-size (or --limit-train)")


def unwrap(model):
    """The model inside a ``DistributedDataParallel`` wrapper (or ``model`` itself)."""
    return model.module if isinstance(model, dist.DistributedDataParallel) else model


@contextlib.contextmanager
def rank0_output(world: World):
    """Standard output on rank 0 only: every rank runs the same code, one prints.
    (Standard error stays open everywhere: it carries the errors of any rank.)"""
    if world.writes:
        yield
        return
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        yield


def distribute(model, config: dict, world: World, train_loader, test_loader):
    """The model as the ranks train it, and the log line that says how.

    First the run's agreement on its setup (``World.agree``), then: every BatchNorm a
    SyncBatchNorm with ``sync_bn``; with several ranks, a check that every rank has the
    same settings, data and position, and the model wrapped in
    ``DistributedDataParallel`` (which checks that every rank built the same model and
    copies rank 0's weights to all)."""
    world.agree()
    if config.get("sync_bn"):
        model = dist.convert_sync_batchnorm(model)
    if world.size == 1:
        return model
    shared = {k: v for k, v in config.items() if k not in PER_MACHINE}
    shared["images"] = [len(train_loader.dataset), len(test_loader.dataset)]
    try:
        dist.check_same_on_all_ranks(shared, "a setting of minires train")
        wrapped = dist.DistributedDataParallel(model)
    except RuntimeError as error:  # raised on every rank, from what all ranks gathered
        agreed = ConfigError(one_line(error))
        agreed.on_every_rank = True
        raise agreed from None
    print(describe(config, world, model), flush=True)
    return wrapped


# Settings that may differ between ranks: where each machine finds its data, where rank 0
# writes, whether it shows progress.
PER_MACHINE = ("data_root", "download", "out", "progress")


def describe(config: dict, world: World, model) -> str:
    """'data-parallel on 2 ranks: global batch 128 = 2 ranks x 64, lr 0.1, ...'."""
    B, R = config["batch_size"], world.size
    low, high = B // R, -(-B // R)
    share = f"{R} ranks x {low}" if low == high else \
        f"{B % R} rank{'s' * (B % R > 1)} x {high} + {R - B % R} x {low}"
    text = (f"data-parallel on {R} ranks: global batch {B} = {share}, lr {config['lr']:g} "
            f"(the steps of 1 process with batch {B})")
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    if norms and isinstance(norms[0], dist.SyncBatchNorm):
        text += "; SyncBatchNorm: statistics of the global batch"
    elif norms:
        text += (f"; BatchNorm: statistics of each rank's {low} images, not of the global "
                 "batch (--sync-bn: those of the global batch, as 1 process computes them)")
    return text
