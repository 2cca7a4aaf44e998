"""What the autograd guards cost on the CPU, and what backward releases.

    python benchmarks/bench_autograd_safety.py [--model resnet20] [--batch-size 128]
                                               [--repeats 5]

1. Time: one training step (forward, loss, backward, SGD step) with the engine's guards
   on (read-only views of gy and of the saved arrays in every backward, version
   counters recorded in every forward and checked in every backward) and with them
   switched off by replacing those helpers with no-ops in this process only; and the
   time spent inside the guards during one step, call by call, which does not drown in
   the noise of a shared machine as the difference of two step times does.
2. Memory: the bytes of NumPy arrays still reachable from ``loss`` after ``backward()``,
   with ``retain_graph=True`` (everything forward saved) and without (what the released
   graph keeps). Parameters and their gradients are not counted.

The step times are medians; on a machine shared with other work they are noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import time

from timing import median_seconds

import minires as mr
import minires.nn.functional as F
from minires.inspect import arrays_reachable_from
from minires.models import get_model
from minires.optim import SGD

GUARDS = ("read_only", "record_saved_versions", "share_version_with_views",
          "check_saved_versions")
# where the engine looks the guards up: minires.autograd imports them by name, and
# autograd_safety.call_backward reads gy through its own read_only
PLACES = [(module, name)
          for module in (importlib.import_module("minires.autograd"),
                         importlib.import_module("minires.autograd_safety"))
          for name in GUARDS if name in vars(module)]


@contextlib.contextmanager
def replaced(make):
    """Every guard replaced by ``make(name, original)`` inside the block."""
    originals = [(module, name, getattr(module, name)) for module, name in PLACES]
    for module, name, fn in originals:
        setattr(module, name, make(name, fn))
    try:
        yield
    finally:
        for module, name, fn in originals:
            setattr(module, name, fn)


def guards_off():
    """The engine without read-only views and version counters (for this comparison)."""
    return replaced(lambda name, fn: (lambda array: array) if name == "read_only"
                    else (lambda *args: None))


def timing_guards(calls: dict, seconds: dict):
    """Count the calls of each guard in the steps run inside, and the time spent in them."""
    def timed(name, fn):
        def wrapper(*args):
            start = time.perf_counter()
            try:
                return fn(*args)
            finally:
                seconds[name] += time.perf_counter() - start
                calls[name] += 1
        return wrapper

    return replaced(timed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    mr.manual_seed(0)
    model = get_model(args.model)
    optimizer = SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = mr.randn(args.batch_size, 3, 32, 32)
    y = mr.randint(0, 10, (args.batch_size,))

    def step():
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()

    on, = median_seconds([step], args.repeats, warmup=1)
    with guards_off():
        off, = median_seconds([step], args.repeats, warmup=1)
    calls, seconds = dict.fromkeys(GUARDS, 0), dict.fromkeys(GUARDS, 0.0)
    with timing_guards(calls, seconds):
        step()

    params = list(model.parameters())
    kept = {}
    for retain in (True, False):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward(retain_graph=retain)
        kept[retain] = arrays_reachable_from(loss, params + [loss.data]) / 2**20
        del loss

    print(f"{args.model}, batch {args.batch_size}, one training step on the CPU "
          f"(median of {args.repeats})")
    print(f"| {'engine':<36} | {'step (s)':>8} |")
    print(f"|{'-' * 38}|{'-' * 10}|")
    print(f"| {'guards on (views, version counters)':<36} | {on:8.3f} |")
    print(f"| {'guards off':<36} | {off:8.3f} |")
    print(f"difference of the two medians: {100 * (on - off) / off:+.1f}%")
    print(f"time inside the guards during one step: {1e3 * sum(seconds.values()):.2f} ms "
          f"({100 * sum(seconds.values()) / on:.3f}% of the step):")
    for name in GUARDS:
        print(f"  {name:<26} {calls[name]:5d} calls  {1e3 * seconds[name]:7.3f} ms")
    print(f"arrays reachable from loss after backward(retain_graph=True): {kept[True]:.1f} MiB")
    print(f"arrays reachable from loss after backward():                  {kept[False]:.1f} MiB")


if __name__ == "__main__":
    main()
