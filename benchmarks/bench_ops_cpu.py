"""Time minires ops against PyTorch's CPU build in one process, forward + backward.

    python benchmarks/bench_ops_cpu.py [--repeats 20]

Prints one row per case: median milliseconds for each framework and their ratio
(minires / PyTorch; below 1 means minires is faster). Without PyTorch installed it
prints minires's times alone.
"""

from __future__ import annotations

import argparse

import numpy as np
from timing import median_seconds

import minires as mr
import minires.nn.functional as F

try:
    import torch
    import torch.nn.functional as TF
except ImportError:  # the comparison column stays empty
    torch = None


def case_conv(N, C, H, F_out):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, H), dtype=np.float32)
    w = rng.standard_normal((F_out, C, 3, 3), dtype=np.float32) * 0.1
    name = f"conv2d fwd+bwd ({N},{C},{H},{H}) {C}->{F_out} 3x3 pad 1"
    return name, [x, w], lambda f, x, w: f.conv2d(x, w, padding=1)


def case_bn(N, C, H):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, H), dtype=np.float32)
    w, b = np.ones(C, np.float32), np.zeros(C, np.float32)
    name = f"batch_norm train fwd+bwd ({N},{C},{H},{H})"
    return name, [x, w, b], lambda f, x, w, b: f.batch_norm(x, None, None, w, b, training=True)


def case_pool(N, C, H):
    x = np.random.default_rng(0).standard_normal((N, C, H, H), dtype=np.float32)
    name = f"max_pool2d 2x2 fwd+bwd ({N},{C},{H},{H})"
    return name, [x], lambda f, x: f.max_pool2d(x, 2)


def step_fn(framework: str, op, arrays):
    if framework == "minires":
        inputs = [mr.tensor(a, requires_grad=True) for a in arrays]
        module = F
    else:
        inputs = [torch.tensor(a, requires_grad=True) for a in arrays]
        module = TF
    gy_holder = {}

    def step():
        for t in inputs:
            t.grad = None
        y = op(module, *inputs)
        if "gy" not in gy_holder:
            gy = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
            gy_holder["gy"] = gy if framework == "minires" else torch.tensor(gy)
        y.backward(gy_holder["gy"])

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    cases = [case_conv(64, 16, 32, 16), case_conv(64, 64, 8, 64), case_bn(64, 16, 32),
             case_bn(64, 64, 8), case_pool(64, 16, 32)]
    threads = f", torch threads {torch.get_num_threads()}" if torch else ""
    print(f"minires {mr.__version__}, numpy {np.__version__}"
          + (f", torch {torch.__version__}" if torch else ", torch not installed") + threads)
    print(f"{'case':<50} {'minires ms':>11} {'torch ms':>9} {'ratio':>6}")
    for name, arrays, op in cases:
        if torch is None:
            ours = 1000 * median_seconds([step_fn("minires", op, arrays)], args.repeats)[0]
            print(f"{name:<50} {ours:>11.2f} {'-':>9} {'-':>6}")
            continue
        steps = [step_fn("minires", op, arrays), step_fn("torch", op, arrays)]
        ours, theirs = (1000 * t for t in median_seconds(steps, args.repeats))
        print(f"{name:<50} {ours:>11.2f} {theirs:>9.2f} {ours / theirs:>6.2f}")


if __name__ == "__main__":
    main()
