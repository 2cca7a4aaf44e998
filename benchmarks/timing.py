"""Timing, load and memory measurement shared by the CPU benchmark scripts.

How the CPU benchmarks time things, and why:

* Contenders are interleaved round by round in one process (minires, PyTorch, minires,
  PyTorch, ...), so a change in the machine's load hits both alike, and the order is
  reversed every other round.
* Before each timed call the process sleeps ``settle`` seconds: after a call OpenBLAS
  (NumPy) and OpenMP (PyTorch) keep their worker threads spinning for a while (about
  0.1 s), which would slow whichever contender runs next on a 2-core machine.
* The median over the rounds is the result; the spread (lowest and highest round) is
  printed beside it, and the load of the machine (other processes' share of the CPUs
  during the timed rounds) under the table: numbers taken while other processes ran
  are not results.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager

import numpy as np


def median_seconds(steps: list, repeats: int, warmup: int = 2) -> list:
    """Median wall-clock seconds of each step, measured one step after the other (each
    step's warm-up and timed calls in a row; the GPU benchmark uses this). The CPU
    benchmarks use ``interleaved``."""
    results = []
    for step in steps:
        for _ in range(warmup):
            step()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        results.append(float(np.median(times)))
    return results


def interleaved(steps: list, rounds: int, warmup: int = 2, settle: float = 0.25) -> list:
    """Per-step lists of wall-clock seconds, one per round; steps alternate within each
    round (reversed every other round), each after a ``settle`` pause."""
    for step in steps:
        for _ in range(warmup):
            step()
    times = [[] for _ in steps]
    for r in range(rounds):
        order = range(len(steps)) if r % 2 == 0 else reversed(range(len(steps)))
        for i in order:
            time.sleep(settle)
            start = time.perf_counter()
            steps[i]()
            times[i].append(time.perf_counter() - start)
    return times


def spread(seconds: list) -> str:
    """'median (min-max)' in milliseconds."""
    ms = 1000 * np.asarray(seconds)
    return f"{np.median(ms):8.1f} ({ms.min():.0f}-{ms.max():.0f})"


# --------------------------------------------------------------------------- load


def _cpu_ticks() -> tuple:
    """(busy ticks of the whole machine, ticks of this process and its children)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal
    with open("/proc/self/stat") as f:
        stat = f.read().rsplit(")", 1)[1].split()
    own = sum(int(v) for v in stat[11:15])  # utime stime cutime cstime
    return busy, own


class LoadMeter:
    """How busy the other processes kept the CPUs while this one measured.

    ``others`` is their CPU time divided by the wall time: 0.0 on a quiet machine, 1.0
    when another process used a whole core throughout. Linux only (reads /proc); it
    reports None elsewhere."""

    def __init__(self):
        self.others = None
        self.loadavg = None

    def __enter__(self):
        try:
            self._start = (_cpu_ticks(), time.perf_counter())
        except OSError:
            self._start = None
        return self

    def __exit__(self, *exc):
        if self._start is None:
            return
        (busy0, own0), t0 = self._start
        busy1, own1 = _cpu_ticks()
        ticks = os.sysconf("SC_CLK_TCK") * (time.perf_counter() - t0)
        self.others = max(0.0, ((busy1 - busy0) - (own1 - own0)) / ticks)
        with open("/proc/loadavg") as f:
            self.loadavg = f.read().split()[0]

    def __str__(self) -> str:
        if self.others is None:
            return "load: unknown (no /proc)"
        return (f"load: other processes used {self.others:.2f} CPUs on average during the "
                f"timed rounds ({os.cpu_count()} CPUs; 1-minute load average "
                f"{self.loadavg} at the end)")


# --------------------------------------------------------------------------- memory


def vm_status(field: str) -> int:
    """A field of /proc/self/status in bytes (VmRSS, VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def reset_peak_rss() -> None:
    """Start a new VmHWM (peak resident memory) from the current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_step_memory(step, steps: int = 3) -> int:
    """Bytes of resident memory at the peak of ``steps`` calls of ``step``, above the
    resident memory just before the first call: what a training step costs, counting
    everything it keeps (gradients, buffers, caches). Measured by the kernel (VmHWM),
    so it sees NumPy's and PyTorch's allocations alike."""
    before = vm_status("VmRSS")
    reset_peak_rss()
    for _ in range(steps):
        step()
    return vm_status("VmHWM") - before


def run_isolated(script: str, args: list) -> dict:
    """Run ``script`` in a fresh Python process and parse the JSON line it prints last:
    each contender's memory is measured without the other's imports and caches."""
    env = dict(os.environ)
    out = subprocess.run([sys.executable, script, *args], capture_output=True, text=True,
                         env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- op profile


@contextmanager
def minires_op_profile(table: dict):
    """Add the seconds spent in every minires ``Function``'s forward and backward into
    ``table`` ({'Conv2d.forward': seconds, ...}) while the block runs.

    Wraps the static methods of every registered Function and restores them after."""
    from minires.autograd import Function

    saved = []

    def timed(fn, name):
        def run(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                table[name] = table.get(name, 0.0) + time.perf_counter() - start
        return staticmethod(run)

    for cls in set(Function.registry.values()):
        for method in ("forward", "backward"):
            if method in vars(cls):
                saved.append((cls, method, vars(cls)[method]))
                setattr(cls, method, timed(getattr(cls, method), f"{cls.__name__}.{method}"))
    try:
        yield table
    finally:
        for cls, method, original in saved:
            setattr(cls, method, original)


def format_profile(table: dict, total: float, steps: int, top: int = 12) -> str:
    """The ``top`` entries of a {name: seconds} table as ms per step and share of
    ``total`` (the seconds of all steps), largest first."""
    rows = sorted(table.items(), key=lambda kv: -kv[1])
    lines = [f"  {'op':<34} {'ms/step':>8} {'share':>6}"]
    for name, seconds in rows[:top]:
        lines.append(f"  {name:<34} {1000 * seconds / steps:8.1f} {seconds / total:6.1%}")
    rest = total - sum(s for _, s in rows)
    lines.append(f"  {'(engine, optimizer, Python)':<34} {1000 * rest / steps:8.1f} "
                 f"{rest / total:6.1%}")
    return "\n".join(lines)
