"""Ctrl-C and SIGTERM as a request, not an exception: the loop stops where it is safe.

A ``KeyboardInterrupt`` can surface anywhere: between a parameter's update and the
next one inside ``optimizer.step()``, or after the loader counted a batch the step never
used. So while ``fit`` runs, SIGINT and SIGTERM only set a flag; the loop looks at it
after each whole step (forward, backward, optimizer step, scheduler step) and between
evaluation batches, saves a checkpoint there and stops. A second signal stops at once,
without saving (the previous checkpoint stays as it was).

``stop_when`` adds other reasons to stop the same way, such as a wall-clock budget.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_CONDITIONS: list = []  # (check, reason) pairs that stop_when adds; every request polls them


@contextlib.contextmanager
def stop_when(check, reason: str = "time budget"):
    """Within the block, a ``StopRequest`` also counts as requested once ``check()`` is
    true: ``fit`` stops at the next step boundary and saves, as after SIGTERM, and its
    ``TrainingInterrupted`` gives ``reason`` as the signal. ``check`` is called after
    every step and evaluation batch, so it must be cheap (``time.monotonic() > end``)."""
    entry = (check, reason)
    _CONDITIONS.append(entry)
    try:
        yield
    finally:
        _CONDITIONS.remove(entry)


class StopRequest:
    """``with StopRequest() as stop: ... if stop.requested(): ...``.

    Handlers are installed only in the main thread (Python delivers signals there
    alone), and never over a signal that was set to be ignored (``nohup``, a background
    job's SIGINT).
    """

    def __init__(self, enabled: bool = True, message: str = "stopping after this step"):
        self.enabled, self.message = enabled, message
        self.signal = None  # the name of the first signal received
        self._previous = {}

    def requested(self) -> bool:
        if self.signal is None:
            self.signal = next((reason for check, reason in _CONDITIONS if check()), None)
        return self.signal is not None

    def _handle(self, signum, frame) -> None:
        if self.signal is not None:  # asked twice: stop now
            self._restore()
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name
        print(f"\n{self.signal}: {self.message} (press Ctrl-C again to stop at once, "
              "without saving)", file=sys.stderr, flush=True)

    def __enter__(self) -> StopRequest:
        if self.enabled and threading.current_thread() is threading.main_thread():
            for sig in _SIGNALS:
                previous = signal.getsignal(sig)
                if previous is signal.SIG_IGN:
                    continue
                self._previous[sig] = previous
                signal.signal(sig, self._handle)
        return self

    def _restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    def __exit__(self, *exc) -> None:
        self._restore()
