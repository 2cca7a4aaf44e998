"""Timing shared by the benchmark scripts."""

from __future__ import annotations

import time

import numpy as np


def median_seconds(steps: list, repeats: int, warmup: int = 2) -> list:
    """Median wall-clock seconds of each step. The steps take turns within every repeat,
    so a busy machine slows them alike and their ratio stays fair."""
    for _ in range(warmup):
        for step in steps:
            step()
    times = [[] for _ in steps]
    for _ in range(repeats):
        for step, record in zip(steps, times):
            start = time.perf_counter()
            step()
            record.append(time.perf_counter() - start)
    return [float(np.median(t)) for t in times]
