"""``RunState``: where a training run stands, in one object that a checkpoint stores.

The model, the optimizer, the scheduler and the data loader each save their own state;
this is the rest: which epoch and step the run is at, what the epoch in progress has
summed so far (so its train_loss and train_acc come out as if the run had never
stopped), the seed of the steps' random streams, and the metrics history. Everything
the loop needs to continue exactly is here or in those four, so a new kind of state
(several processes, another loader) extends this one class.

Several processes (data-parallel ranks): each rank adds its own images' loss and
correct answers to its own sums, and the loop combines them where it reads them anyway
(``parallel.World.read_sums``). A checkpoint holds the combined sums, and also each
rank's part (``rank_sums``): resumed by as many ranks, every rank takes back its own
part, so the epoch's train_loss comes out bit for bit; resumed by another number, rank
0 starts from the total and the others from zero (the same total, added in another
order: equal up to rounding).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy

from .. import backend

PHASES = ("train", "evaluate")


@dataclass
class RunState:
    """Where a run stands.

    ``epoch`` is the epoch in progress (1-based) and ``step`` the number of its training
    steps that are finished. ``phase`` is 'train' while steps remain and 'evaluate' once
    they are all done but the epoch's evaluation is not (a stop during evaluation).

    ``seed`` keys the random numbers of every step: step ``s`` of epoch ``e`` draws its
    dropout masks inside ``backend.random_stream("step", seed, e, s)``, so they depend on
    the position alone (the loader keys the augmentation the same way).

    ``loss_sum`` and ``correct`` are the epoch's running sums, device scalars that the
    loop reads back only at its logging steps and at the end of the epoch; ``count`` is
    the images seen and ``seconds`` the time spent training in this epoch. ``first_bad``
    is the first step (1-based) of the epoch whose loss was not finite, 0 while none was.

    With several ranks, ``part`` is ``(rank, world_size)`` while ``loss_sum``,
    ``correct`` and ``first_bad`` hold this rank's part of the sums (``count`` always
    counts all ranks' images); it is None when they are the whole run's. ``rank_sums``
    (a combined state of several ranks, as saved) lists every rank's
    ``[loss_sum, correct]``.
    """

    epoch: int = 1
    step: int = 0
    phase: str = "train"
    seed: int | None = None
    loss_sum: object = 0.0
    correct: object = 0
    count: int = 0
    seconds: float = 0.0
    first_bad: object = 0
    history: list = field(default_factory=list)
    part: tuple | None = None
    rank_sums: list | None = None

    @property
    def completed_epochs(self) -> int:
        """The epochs whose evaluation is done and whose row is written."""
        return self.epoch - 1

    def next_epoch(self) -> None:
        """The epoch's row is written: start the next one from zero."""
        self.epoch += 1
        self.step, self.phase = 0, "train"
        self.loss_sum, self.correct, self.count, self.seconds, self.first_bad = 0.0, 0, 0, 0.0, 0
        self.rank_sums = None

    # ----------------------------------------------------------------- several ranks
    def combined(self, parts: list) -> RunState:
        """A copy that holds the sums of every rank: ``parts`` is each rank's
        ``(loss_sum, correct, first_bad)`` as read back (in rank order). Each sum keeps
        its type; the parts are kept in ``rank_sums`` for a resume by as many ranks."""
        bad = [int(b) for _, _, b in parts if b]
        return replace(
            self, part=None, loss_sum=_like(sum(p[0] for p in parts), self.loss_sum),
            correct=_like(sum(p[1] for p in parts), self.correct), first_bad=min(bad, default=0),
            rank_sums=[[_like(p[0], self.loss_sum), _like(p[1], self.correct)] for p in parts],
            history=list(self.history))

    def localize(self, rank: int, world_size: int) -> RunState:
        """This rank's part of a combined state, for a run of ``world_size`` ranks: its
        own saved part if the state was saved by as many ranks, else the total on rank
        0 and zeros on the others. A state that already is a part stays as it is."""
        if self.part is not None or world_size == 1:
            if self.part not in (None, (rank, world_size)):
                raise ValueError(f"RunState: holds rank {self.part[0]}'s part of a run of "
                                 f"{self.part[1]} ranks, not rank {rank}'s of {world_size}; "
                                 "resume from its checkpoint")
            return self
        if self.rank_sums is not None and len(self.rank_sums) == world_size:
            loss_sum, correct = self.rank_sums[rank]
        elif rank == 0:
            loss_sum, correct = self.loss_sum, self.correct
        else:
            loss_sum, correct = self.loss_sum * 0, self.correct * 0  # zeros of the same type
        return replace(self, part=(rank, world_size), rank_sums=None, loss_sum=loss_sum,
                       correct=correct, first_bad=self.first_bad * (rank == 0),
                       history=list(self.history))

    def to(self, device: str) -> RunState:
        """Move the running sums to ``device`` (where the loop adds to them)."""
        for name in ("loss_sum", "correct", "first_bad"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) and backend.device_of(value) != device:
                setattr(self, name, backend.to_device(value, device))
        return self

    def read_sums(self) -> tuple[float, float, int]:
        """(loss_sum, correct, first_bad) as host numbers, in one transfer."""
        loss_sum, correct, first_bad = backend.host_floats(self.loss_sum, self.correct,
                                                           self.first_bad)
        return loss_sum, correct, int(first_bad)

    def train_metrics(self, loss_sum: float | None = None, correct: float | None = None) -> dict:
        """The epoch's training loss, accuracy and speed so far, from the sums as read
        back by ``read_sums`` (read here when not given)."""
        if loss_sum is None:
            loss_sum, correct, _ = self.read_sums()
        count = max(self.count, 1)
        return {"loss": loss_sum / count, "acc": correct / count, "seconds": self.seconds,
                "images_per_s": self.count / self.seconds if self.seconds else 0.0}

    def scheduler_steps(self, steps_per_epoch: int, per_batch: bool) -> int:
        """How many times the scheduler has stepped by now: once per finished epoch, or
        once per finished batch for schedules stepped per batch."""
        if not per_batch:
            return self.completed_epochs
        done = steps_per_epoch if self.phase == "evaluate" else self.step
        return self.completed_epochs * steps_per_epoch + done

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        """Plain values and host arrays for ``mr.save``. The sums keep their dtype (a
        float32 sum resumes as float32), so the resumed epoch adds up bit for bit."""
        def host(value):
            return value if isinstance(value, (int, float)) else backend.to_numpy(value)

        if self.part is not None:
            raise ValueError("RunState.state_dict: this is one rank's part of the sums; "
                             "save the state combined from every rank's (combined())")
        state = {"epoch": self.epoch, "step": self.step, "phase": self.phase,
                 "seed": self.seed, "loss_sum": host(self.loss_sum),
                 "correct": host(self.correct), "count": self.count,
                 "seconds": self.seconds, "first_bad": host(self.first_bad),
                 "history": list(self.history)}
        if self.rank_sums is not None:
            state["rank_sums"] = [[host(v) for v in sums] for sums in self.rank_sums]
        return state

    @classmethod
    def from_state_dict(cls, state: dict, device: str = "cpu") -> RunState:
        """The run state of ``state_dict()``'s values, its running sums moved to ``device``
        (raises ValueError on an unknown phase)."""
        def on_device(value):
            return value if isinstance(value, (int, float)) else backend.to_device(value,
                                                                                    device)

        if state["phase"] not in PHASES:
            raise ValueError(f"RunState: unknown phase {state['phase']!r}")
        return cls(epoch=int(state["epoch"]), step=int(state["step"]), phase=state["phase"],
                   seed=state["seed"], loss_sum=on_device(state["loss_sum"]),
                   correct=on_device(state["correct"]), count=int(state["count"]),
                   seconds=float(state["seconds"]), first_bad=on_device(state["first_bad"]),
                   history=list(state["history"]), rank_sums=state.get("rank_sums"))


def _like(value, template):
    """``value`` as a number of ``template``'s type: a Python int or float stays one (a
    weak scalar in NumPy's promotion), an array becomes a NumPy scalar of its dtype."""
    if isinstance(template, (int, float)):
        return type(template)(value)
    return numpy.asarray(backend.to_numpy(template)).dtype.type(value)
