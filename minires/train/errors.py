"""The ways a training run ends early, as exceptions a caller (or the CLI) can tell apart.

* ``ConfigError``: an impossible setting or a request minires refuses (a fresh run into
  a folder that holds another run, a backbone that does not match). Nothing was trained.
* ``NonFiniteError``: the loss (or the weights) became NaN or infinite. The run stopped
  and the last good checkpoint was left as it was.
* ``TrainingInterrupted``: Ctrl-C (SIGINT) or SIGTERM. The run finished the step it was
  in, saved a checkpoint there and stopped; ``--resume`` continues it exactly.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A setting that cannot work, named as on the command line (``--epochs``...)."""


class NonFiniteError(FloatingPointError):
    """The training loss or the weights became non-finite (NaN or infinite).

    ``epoch`` and ``step`` say where it was first seen; ``checkpoint`` is the last good
    checkpoint (None if none was written), which the run did not touch.
    """

    def __init__(self, message: str, *, epoch: int, step: int, checkpoint=None):
        super().__init__(message)
        self.epoch, self.step, self.checkpoint = epoch, step, checkpoint


class TrainingInterrupted(KeyboardInterrupt):
    """A signal asked the run to stop; it stopped at a step boundary.

    ``checkpoint`` is where it saved (None without an output folder), ``epoch`` and
    ``step`` where it stands (the epoch in progress and its finished steps) and
    ``signal`` the signal's name ('SIGINT' or 'SIGTERM').
    """

    def __init__(self, message: str, *, checkpoint, epoch: int, step: int, signal: str):
        super().__init__(message)
        self.checkpoint, self.epoch, self.step, self.signal = checkpoint, epoch, step, signal

    def __str__(self) -> str:
        return str(self.args[0])
