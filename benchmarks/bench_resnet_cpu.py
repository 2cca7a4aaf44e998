"""CIFAR ResNet training steps (forward, loss, backward, SGD step) in minires and in
PyTorch's CPU build, side by side on the same random batch: the whole CPU table.

    python benchmarks/bench_resnet_cpu.py [--models resnet20,resnet56] [--batch-size 128]
                                          [--rounds 7] [--settle 0.25]
                                          [--no-ops] [--no-memory] [--no-profile]

Prints, in order:

1. each model's step: median milliseconds (lowest-highest round) of minires (its CPU
   fast path with its own threads), of minires with one thread outside OpenBLAS, of
   minires's plain NCHW path and of PyTorch, interleaved in one process (see
   ``timing.py``), and each one's ratio to PyTorch;
2. the layers of the network one at a time (the table of ``bench_ops_cpu.py``);
3. peak memory of a training step above the memory before it (the kernel's VmHWM, each
   framework in a fresh process of its own, so neither sees the other's allocations);
4. where one ResNet-20 step's time goes: minires per op (forward and backward of each
   ``Function``), PyTorch per operator (``torch.profiler``, self CPU time);
5. the load of the machine while it measured. Numbers taken while other processes used
   the CPUs are not results.

``--memory-child FRAMEWORK MODEL BATCH`` (what part 3 runs in its fresh processes)
prints one framework's peak step memory in bytes as a JSON line; with
``MINIRES_FAST_CPU=0`` in the environment it measures minires's plain path.

PyTorch runs the same architecture (He et al. 2015, option A shortcuts), built below.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
from timing import (
    LoadMeter,
    format_profile,
    interleaved,
    minires_op_profile,
    peak_step_memory,
    run_isolated,
    spread,
)

import minires as mr
import minires.nn.functional as F
from minires import cpu_threads
from minires.models import get_model
from minires.ops import channel_major
from minires.optim import SGD

try:
    import torch
    import torch.nn as tnn
except ImportError:
    torch = None


def torch_cifar_resnet(depth: int):
    """The same network in PyTorch, for the comparison column."""
    n = (depth - 2) // 6

    class Block(tnn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(cout)
            self.conv2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(cout)
            self.stride, self.pad = stride, cout - cin

        def forward(self, x):
            out = torch.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            shortcut = x[:, :, ::self.stride, ::self.stride]
            if self.pad:
                shortcut = torch.nn.functional.pad(shortcut, (0, 0, 0, 0, 0, self.pad))
            return torch.relu(out + shortcut)

    layers = [tnn.Conv2d(3, 16, 3, 1, 1, bias=False), tnn.BatchNorm2d(16), tnn.ReLU()]
    cin = 16
    for cout, stride in ((16, 1), (32, 2), (64, 2)):
        for i in range(n):
            layers.append(Block(cin, cout, stride if i == 0 else 1))
            cin = cout
    layers += [tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(64, 10)]
    return tnn.Sequential(*layers)


def batch(batch_size: int):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch_size, 3, 32, 32)).astype(np.float32)
    return x, rng.integers(0, 10, batch_size)


def minires_step(model_name: str, x, y):
    model = get_model(model_name, num_classes=10)
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    xb, yb = mr.tensor(x), mr.tensor(y)

    def step():
        loss = F.cross_entropy(model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def torch_step(model_name: str, x, y):
    model = torch_cifar_resnet(int(model_name.removeprefix("resnet")))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    xt, yt = torch.tensor(x), torch.tensor(y)

    def step():
        loss = torch.nn.functional.cross_entropy(model(xt), yt)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def variant(step, fast: bool, threads: int | None):
    """``step`` run on minires's fast path or plain path, with the CPU fast path's own
    threads (None: the default number) or ``threads`` of them; restores both."""
    default = cpu_threads._cpu_threads

    def run():
        channel_major.use_fast_path(fast)
        cpu_threads.set_cpu_threads(default if threads is None else threads)
        try:
            step()
        finally:
            channel_major.use_fast_path(True)
            cpu_threads.set_cpu_threads(default)

    return run


# the minires contenders of the step table: name, fast path, CPU threads
MINIRES_VARIANTS = [("minires", True, None), ("minires 1 thread", True, 1),
                    ("minires plain path", False, None)]


def steps_table(models: list, batch_size: int, rounds: int, settle: float) -> str:
    """One row per model and contender: minires (fast path, its own threads), minires
    with one thread outside OpenBLAS, minires's plain NCHW path, PyTorch."""
    x, y = batch(batch_size)
    lines = [f"{'model':<9} {'contender':<19} {'ms (min-max)':>22} {'img/s':>6}"
             + (f" {'/ torch':>8}" if torch is not None else "")]
    for name in models:
        step = minires_step(name, x, y)
        names = [v[0] for v in MINIRES_VARIANTS]
        steps = [variant(step, fast, threads) for _, fast, threads in MINIRES_VARIANTS]
        if torch is not None:
            names.append("torch")
            steps.append(torch_step(name, x, y))
        times = interleaved(steps, rounds, settle=settle)
        medians = [float(np.median(t)) for t in times]
        for contender, t, median in zip(names, times, medians):
            line = f"{name:<9} {contender:<19} {spread(t):>22} {batch_size / median:>6.0f}"
            if torch is not None:
                line += f" {median / medians[-1]:>8.2f}"
            lines.append(line)
    return "\n".join(lines)


# ------------------------------------------------------------------------- memory


def memory_child(framework: str, model_name: str, batch_size: int) -> None:
    """Run in a fresh process: print the peak step memory as one JSON line."""
    x, y = batch(batch_size)
    step = (minires_step if framework == "minires" else torch_step)(model_name, x, y)
    print(json.dumps({"peak": peak_step_memory(step)}))


def memory_table(models: list, batch_size: int) -> str:
    frameworks = ["minires"] + (["torch"] if torch else [])
    lines = [f"{'model':<10} " + " ".join(f"{f + ' MiB':>12}" for f in frameworks)
             + (f" {'ratio':>6}" if torch else "")]
    for name in models:
        peaks = [run_isolated(__file__, ["--memory-child", f, name, str(batch_size)])["peak"]
                 / 2**20 for f in frameworks]
        lines.append(f"{name:<10} " + " ".join(f"{p:>12.0f}" for p in peaks)
                     + (f" {peaks[0] / peaks[1]:>6.2f}" if torch else ""))
    return "\n".join(lines)


# ------------------------------------------------------------------------- profile


def profiles(model_name: str, batch_size: int, steps: int = 3) -> str:
    x, y = batch(batch_size)
    ours = minires_step(model_name, x, y)
    ours()
    table = {}
    with minires_op_profile(table):
        start = time.perf_counter()
        for _ in range(steps):
            ours()
        total = time.perf_counter() - start
    text = [f"minires, {1000 * total / steps:.0f} ms per step:",
            format_profile(table, total, steps)]
    if torch is not None:
        theirs = torch_step(model_name, x, y)
        theirs()
        time.sleep(0.25)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()
            for _ in range(steps):
                theirs()
            total = time.perf_counter() - start
        table = {e.key: e.self_cpu_time_total / 1e6 for e in prof.key_averages()}
        # self times overlap on several threads; shares are of the wall time
        text += [f"torch, {1000 * total / steps:.0f} ms per step (self CPU time per "
                 "operator, summed over threads):",
                 format_profile(table, total, steps).rsplit("\n", 1)[0]]
    return "\n".join(text)


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--memory-child":
        memory_child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet20,resnet56")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--settle", type=float, default=0.25,
                        help="seconds of pause before each timed call")
    parser.add_argument("--no-ops", action="store_true", help="skip the per-layer table")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory table")
    parser.add_argument("--no-profile", action="store_true", help="skip the per-op times")
    args = parser.parse_args()
    models = args.models.split(",")
    print(f"minires {mr.__version__}, numpy {np.__version__}"
          + (f", torch {torch.__version__} ({torch.get_num_threads()} threads)" if torch
             else ", torch not installed: minires alone"))
    with LoadMeter() as load:
        print(f"\ntraining step, batch {args.batch_size}, {args.rounds} rounds")
        print(steps_table(models, args.batch_size, args.rounds, args.settle), flush=True)
        if not args.no_ops:
            from bench_ops_cpu import table
            print(f"\nlayers, batch {args.batch_size}, {args.rounds} rounds")
            print(table(args.batch_size, args.rounds, args.settle).rsplit("\n", 1)[0],
                  flush=True)
    print(load)
    if not args.no_memory:
        print(f"\npeak memory of a training step above the memory before it, batch "
              f"{args.batch_size}")
        print(memory_table(models, args.batch_size), flush=True)
    if not args.no_profile:
        print(f"\nwhere the time of a {models[0]} step goes (3 steps, not interleaved)")
        print(profiles(models[0], args.batch_size))


if __name__ == "__main__":
    main()
