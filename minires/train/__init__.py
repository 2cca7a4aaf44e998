"""Training: the loop, checkpoints, curves, and the recipe behind ``minires train``."""

from .checkpoint import load_checkpoint, restore, run_state, save_checkpoint
from .errors import ConfigError, NonFiniteError, TrainingInterrupted
from .loop import evaluate, fit, train_one_epoch
from .plots import plot_curves
from .recipe import DEFAULTS, run_training
from .state import RunState

__all__ = ["DEFAULTS", "ConfigError", "NonFiniteError", "RunState", "TrainingInterrupted",
           "evaluate", "fit", "load_checkpoint", "plot_curves", "restore", "run_state",
           "run_training", "save_checkpoint", "train_one_epoch"]
