"""Timing shared by the benchmark scripts."""

from __future__ import annotations

import time

import numpy as np


def median_seconds(steps: list, repeats: int, warmup: int = 2) -> list:
    """Median wall-clock seconds of each step, measured one step after the other.

    Not interleaved: after a call, OpenBLAS (NumPy) and OpenMP (PyTorch) keep their
    worker threads spinning for a while, which would slow whichever framework runs
    next on a 2-core machine. Run benchmarks on an otherwise idle machine.
    """
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
