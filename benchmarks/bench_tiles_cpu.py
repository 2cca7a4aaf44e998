"""How large the fast path's im2col tiles should be on this CPU: the convolutions of a
CIFAR ResNet, forward + backward, at each tile size, interleaved in one process.

    python benchmarks/bench_tiles_cpu.py [--batch-size 128] [--rounds 11] [--sizes 1,2,4,8]

One row per convolution: median milliseconds (lowest-highest round) at each tile size in
MiB (``cpu_threads.set_tile_bytes``), and with no tiling at all ("whole": one tile per
thread, the matrix built whole). The calls run back to back with only a short pause:
on a virtual machine a longer pause let the CPU idle down and slowed whichever call
came next, which hides what the cache does. The default size is the one that
``minires.cpu_threads`` documents; pick yours from the fastest columns.
"""

from __future__ import annotations

import argparse

import numpy as np
from bench_ops_cpu import conv_case, step_fn
from timing import LoadMeter, interleaved, spread

import minires as mr
from minires import cpu_threads

WHOLE = 1 << 50  # bytes: every thread's columns in one tile


def sweep(N: int, rounds: int, sizes: list, settle: float) -> str:
    """The table as text, with the load it was measured under."""
    labels = ["whole"] + [f"{size:g} MiB" for size in sizes]
    tile_bytes = [WHOLE] + [int(size * 2**20) for size in sizes]
    lines = [f"{'case (batch ' + str(N) + ', forward + backward)':<44}"
             + "".join(f"{label:>18}" for label in labels)]
    cases = [conv_case(N, 16, 32, 16, 1), conv_case(N, 32, 16, 32, 1),
             conv_case(N, 64, 8, 64, 1), conv_case(N, 16, 32, 32, 2),
             conv_case(N, 32, 16, 64, 2)]
    before = cpu_threads._tile_bytes
    try:
        with LoadMeter() as load:
            for name, fast, _plain, _theirs in cases:
                steps = []
                for size in tile_bytes:
                    step = step_fn(fast)
                    steps.append(lambda size=size, step=step: (
                        cpu_threads.set_tile_bytes(size), step()))
                times = interleaved(steps, rounds, settle=settle)
                lines.append(f"{name:<44}" + "".join(f"{spread(t):>18}" for t in times))
    finally:
        cpu_threads.set_tile_bytes(before)
    lines.append(str(load))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--sizes", default="0.5,1,2,4,8",
                        help="tile sizes in MiB, comma-separated")
    parser.add_argument("--settle", type=float, default=0.02,
                        help="seconds of pause before each timed call")
    args = parser.parse_args()
    sizes = [float(s) for s in args.sizes.split(",")]
    print(f"minires {mr.__version__}, numpy {np.__version__}, "
          f"{cpu_threads.parts_for(np)} CPU threads, default tile "
          f"{cpu_threads._tile_bytes / 2**20:g} MiB")
    print(sweep(args.batch_size, args.rounds, sizes, args.settle))


if __name__ == "__main__":
    main()
