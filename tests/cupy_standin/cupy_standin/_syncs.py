"""A record of every host synchronisation: each read of device data by the host (and
each explicit wait for the device), with the minires line that caused it.

On a real GPU such a read makes the host wait for every kernel queued before it, so a
training step that reads one number runs at the speed of the slowest round trip. The
stand-in runs everything at once, so it cannot make the waiting visible; it counts
the reads instead.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from collections import Counter
from dataclasses import dataclass

_STANDIN_DIRS = tuple(
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), name) + os.sep
    for name in ("cupy", "cupyx", "cupy_standin"))


def _minires_dir():
    module = sys.modules.get("minires")
    if module is None or not getattr(module, "__file__", None):
        return None
    return os.path.dirname(os.path.abspath(module.__file__)) + os.sep


@dataclass(frozen=True)
class SyncEvent:
    kind: str  # "read": device data copied to the host; "implicit": an operation whose
    # result size depends on device data (boolean masks, nonzero, unique);
    # "synchronize": an explicit wait (Device/Stream/Event.synchronize)
    what: str  # the CuPy call, e.g. "cupy.asnumpy" or "ndarray.__float__"
    site: str  # "minires/train/loop.py:72": the minires line that caused it (the
    # innermost minires frame outside backend.py, whose helpers only carry the read)
    stack: tuple  # every minires frame, innermost first, "file:line"
    caller: str  # the first frame outside the stand-in, wherever it is


class SyncRecorder:
    def __init__(self):
        self.events: list = []

    def record(self, kind: str, what: str) -> None:
        minires = _minires_dir()
        root = os.path.dirname(minires.rstrip(os.sep)) + os.sep if minires else ""
        frames, caller = [], None
        frame = sys._getframe(1)
        while frame is not None:
            path = os.path.abspath(frame.f_code.co_filename)
            if not path.startswith(_STANDIN_DIRS):
                where = f"{path[len(root):] if root and path.startswith(root) else path}" \
                        f":{frame.f_lineno}"
                if caller is None:
                    caller = where
                if minires and path.startswith(minires):
                    frames.append(where)
            frame = frame.f_back
        site = next((f for f in frames if not f.startswith("minires/backend.py:")),
                    frames[0] if frames else caller or "?")
        self.events.append(SyncEvent(kind, what, site, tuple(frames), caller or "?"))

    def clear(self) -> None:
        self.events.clear()

    @contextlib.contextmanager
    def recording(self):
        """``with syncs.recording() as events:``: the events inside the block."""
        start = len(self.events)
        found: list = []
        try:
            yield found
        finally:
            found.extend(self.events[start:])

    def summary(self, events=None) -> str:
        events = self.events if events is None else events
        counts = Counter((e.site, e.kind, e.what) for e in events)
        lines = [f"{len(events)} host synchronisations"]
        for (site, kind, what), n in counts.most_common():
            lines.append(f"  {n:>6} x {kind:<11} {what:<28} {site}")
        return "\n".join(lines)


syncs = SyncRecorder()


def _report_at_exit() -> None:
    path = os.environ.get("CUPY_STANDIN_SYNC_REPORT")
    if not path:
        return
    text = "CuPy stand-in: " + syncs.summary() + "\n"
    if path == "-":
        sys.stderr.write(text)
    else:
        with open(path, "a") as f:
            f.write(text)


atexit.register(_report_at_exit)
