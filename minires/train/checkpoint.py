"""Full training checkpoints: everything needed to continue a run exactly.

A checkpoint is one file written by ``mr.save`` (no pickle, written atomically): the
model's and optimizer's state, the scheduler's, where the data loader stands, the
global random generators, the run's ``RunState`` (epoch, step, the running sums of the
epoch in progress, the metrics so far) and the run's configuration. A run stopped
mid-epoch continues with the next step, and its epoch's metrics come out as if it had
never stopped.
"""

from __future__ import annotations

from .. import backend
from ..serialization import CheckpointError, load, save
from .state import RunState

FORMAT = "minires-checkpoint"
_REQUIRED = ("epoch", "model", "optimizer", "scheduler", "loader", "rng", "history", "config")


def save_checkpoint(path, *, model, optimizer, scheduler=None, loader=None, epoch: int = None,
                    history: list = None, config: dict | None = None,
                    run: RunState | None = None) -> None:
    """Write a training checkpoint. With ``run`` its epoch and history are used; without
    it, ``epoch`` (epochs completed) and ``history`` describe a run at an epoch boundary."""
    if run is None:
        if epoch is None:
            raise TypeError("save_checkpoint: give run= (a RunState) or epoch=")
        run = RunState(epoch=int(epoch) + 1, history=list(history or []))
    save({
        "format": FORMAT,
        "epoch": run.completed_epochs,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "loader": loader.state_dict() if hasattr(loader, "state_dict") else None,
        "rng": backend.get_rng_state(),
        "history": list(run.history),
        "run": run.state_dict(),
        "config": dict(config or {}),
    }, path)


def load_checkpoint(path, map_location: str = "cpu") -> dict:
    """Read a training checkpoint; a file of another kind, or one that lacks a part,
    raises ``CheckpointError`` naming the file."""
    checkpoint = load(path, map_location=map_location)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a minires training checkpoint (no '{FORMAT}' "
                              "marker); mr.load() reads any file written by mr.save()")
    missing = [key for key in _REQUIRED if key not in checkpoint]
    if missing:
        raise CheckpointError(f"{path}: a training checkpoint without {', '.join(missing)}: "
                              "written by something else, or damaged")
    return checkpoint


def run_state(checkpoint: dict, device: str = "cpu") -> RunState:
    """The checkpoint's ``RunState``, its running sums moved to ``device``.

    Checkpoints written before run states existed hold the epochs completed and the
    loader's batch: the run continues there, and that one epoch's train metrics cover
    only the batches after the stop."""
    if checkpoint.get("run") is not None:
        return RunState.from_state_dict(checkpoint["run"], device)
    loader = checkpoint.get("loader") or {}
    return RunState(epoch=int(checkpoint["epoch"]) + 1, step=int(loader.get("batch", 0)),
                    seed=loader.get("seed"), history=list(checkpoint["history"]))


def restore(checkpoint: dict, *, model, optimizer=None, scheduler=None, loader=None) -> None:
    """Put a run back exactly where ``checkpoint`` left it (its ``RunState`` comes from
    ``run_state(checkpoint)``)."""
    model.load_state_dict(checkpoint["model"])
    if optimizer is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
    if scheduler is not None and checkpoint["scheduler"] is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
    if loader is not None and checkpoint["loader"] is not None:
        loader.load_state_dict(checkpoint["loader"])
    backend.set_rng_state(checkpoint["rng"])
