"""Training: the loop, checkpoints, curves, and the recipe behind ``minires train``."""

from .checkpoint import load_checkpoint, restore, save_checkpoint
from .loop import evaluate, fit, train_one_epoch
from .plots import plot_curves
from .recipe import DEFAULTS, run_training

__all__ = ["DEFAULTS", "evaluate", "fit", "load_checkpoint", "plot_curves", "restore",
           "run_training", "save_checkpoint", "train_one_epoch"]
