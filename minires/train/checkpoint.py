"""Full training checkpoints: everything needed to continue a run exactly.

A checkpoint is one file written by ``mr.save`` (no pickle, written atomically): the
model's and optimizer's state, the scheduler's, where the data loader stands (epoch
and batch, so a run interrupted mid-epoch continues with the next batch), the random
generators, the metrics so far and the run's configuration.
"""

from __future__ import annotations

from .. import backend
from ..serialization import load, save

FORMAT = "minires-checkpoint"


def save_checkpoint(path, *, model, optimizer, scheduler=None, loader=None, epoch: int,
                    history: list, config: dict | None = None) -> None:
    save({
        "format": FORMAT,
        "epoch": int(epoch),  # epochs completed
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "loader": loader.state_dict() if loader is not None else None,
        "rng": backend.get_rng_state(),
        "history": list(history),
        "config": dict(config or {}),
    }, path)


def load_checkpoint(path, map_location: str = "cpu") -> dict:
    checkpoint = load(path, map_location=map_location)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise ValueError(f"{path}: not a minires training checkpoint (no '{FORMAT}' marker); "
                         "mr.load() reads any file written by mr.save()")
    return checkpoint


def restore(checkpoint: dict, *, model, optimizer=None, scheduler=None, loader=None) -> None:
    """Put a run back exactly where ``checkpoint`` left it."""
    model.load_state_dict(checkpoint["model"])
    if optimizer is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
    if scheduler is not None and checkpoint["scheduler"] is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
    if loader is not None and checkpoint["loader"] is not None:
        loader.load_state_dict(checkpoint["loader"])
    backend.set_rng_state(checkpoint["rng"])
