"""The layers of a CIFAR ResNet, one at a time, forward + backward: minires against
PyTorch's CPU build, interleaved in one process.

    python benchmarks/bench_ops_cpu.py [--batch-size 128] [--rounds 7] [--settle 0.25]

One row per case: median milliseconds (lowest-highest round) of minires's fast path
(what ``nn.Conv2d`` and the ResNet blocks run on the CPU: channel-major padded grids,
inputs and gradients already on grids as they are inside the network), of minires's
plain NCHW path (``F.conv2d``, ``F.batch_norm`` + ``F.relu``: im2col through strided
views), of PyTorch, and the ratios to PyTorch (below 1: minires is faster). Without
PyTorch only minires's columns are printed. ``bench_resnet_cpu.py`` prints this table too.
"""

from __future__ import annotations

import argparse

import numpy as np
from timing import LoadMeter, interleaved, spread

import minires as mr
import minires.nn.functional as F
from minires.ops import channel_major as cm
from minires.ops import fast_conv, fused_norm

try:
    import torch
    import torch.nn.functional as TF
except ImportError:  # the comparison columns stay empty
    torch = None


def on_grid(a):
    """A leaf tensor whose data is the NCHW view of a padded grid (as between the fast
    path's layers), or the plain array."""
    G, grid = cm.as_grid(np, a)
    return mr.Tensor(cm.grid_view(G, grid), requires_grad=True)


def conv_case(N, C, H, F_out, stride):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, H), dtype=np.float32)
    w = rng.standard_normal((F_out, C, 3, 3), dtype=np.float32) * 0.1
    OH = (H - 1) // stride + 1
    gy = rng.standard_normal((N, F_out, OH, OH), dtype=np.float32)
    name = f"conv 3x3 {C}->{F_out} at {H}x{H}" + (f", stride {stride}" if stride > 1 else "")

    def fast():
        return [on_grid(x), mr.tensor(w, requires_grad=True)], on_grid(gy).data, \
            lambda x, w: fast_conv.conv2d(x, w, stride=stride, padding=1)

    def plain():
        return [mr.tensor(x, requires_grad=True), mr.tensor(w, requires_grad=True)], gy, \
            lambda x, w: F.conv2d(x, w, stride=stride, padding=1)

    def theirs():
        return [torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)], \
            torch.tensor(gy), lambda x, w: TF.conv2d(x, w, stride=stride, padding=1)

    return name, fast, plain, theirs


def bn_relu_case(N, C, H, residual=False):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, H), dtype=np.float32)
    r = rng.standard_normal((N, C, H, H), dtype=np.float32)
    gy = rng.standard_normal((N, C, H, H), dtype=np.float32)
    w, b = np.ones(C, np.float32), np.zeros(C, np.float32)
    name = f"batchnorm{' + add' if residual else ''} + relu ({C} ch, {H}x{H})"
    stats = lambda: (mr.zeros(C), mr.ones(C))  # noqa: E731

    def fast():
        inputs = [on_grid(x), mr.tensor(w, requires_grad=True), mr.tensor(b, requires_grad=True)]
        inputs += [on_grid(r)] if residual else []
        return inputs, on_grid(gy).data, lambda x, w, b, *r: fused_norm.batch_norm_act(
            x, *stats(), w, b, True, residual=r[0] if r else None)

    def plain():
        inputs = [mr.tensor(a, requires_grad=True) for a in ([x, w, b] + [r] * residual)]
        return inputs, gy, lambda x, w, b, *r: F.relu(
            F.batch_norm(x, *stats(), w, b, True) + (r[0] if r else 0))

    def theirs():
        inputs = [torch.tensor(a, requires_grad=True) for a in ([x, w, b] + [r] * residual)]
        return inputs, torch.tensor(gy), lambda x, w, b, *r: torch.relu(
            TF.batch_norm(x, torch.zeros(C), torch.ones(C), w, b, True) + (r[0] if r else 0))

    return name, fast, plain, theirs


def cases(N: int) -> list:
    return [conv_case(N, 16, 32, 16, 1), conv_case(N, 32, 16, 32, 1), conv_case(N, 64, 8, 64, 1),
            conv_case(N, 16, 32, 32, 2), conv_case(N, 32, 16, 64, 2),
            bn_relu_case(N, 16, 32), bn_relu_case(N, 16, 32, residual=True),
            bn_relu_case(N, 64, 8, residual=True)]


def step_fn(make):
    inputs, gy, op = make()

    def step():
        for t in inputs:
            t.grad = None
        op(*inputs).backward(gy)

    return step


def table(N: int, rounds: int, settle: float) -> str:
    """The whole table as text, with the load it was measured under."""
    header = (f"{'case (batch ' + str(N) + ', forward + backward)':<44} {'fast ms (min-max)':>20}"
              f" {'plain ms (min-max)':>20}")
    if torch is not None:
        header += f" {'torch ms (min-max)':>20} {'fast/torch':>10} {'plain/torch':>11}"
    lines = [header]
    with LoadMeter() as load:
        for name, fast, plain, theirs in cases(N):
            steps = [step_fn(fast), step_fn(plain)] + ([step_fn(theirs)] if torch else [])
            times = interleaved(steps, rounds, settle=settle)
            line = f"{name:<44} {spread(times[0]):>20} {spread(times[1]):>20}"
            if torch is not None:
                ratios = [np.median(t) / np.median(times[2]) for t in times[:2]]
                line += f" {spread(times[2]):>20} {ratios[0]:>10.2f} {ratios[1]:>11.2f}"
            lines.append(line)
    lines.append(str(load))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--settle", type=float, default=0.25,
                        help="seconds of pause before each timed call")
    args = parser.parse_args()
    print(f"minires {mr.__version__}, numpy {np.__version__}"
          + (f", torch {torch.__version__} ({torch.get_num_threads()} threads)" if torch
             else ", torch not installed"))
    print(table(args.batch_size, args.rounds, args.settle))


if __name__ == "__main__":
    main()
