"""ResNet-20 and ResNet-56 training steps (batch 128: forward, loss, backward, SGD step)
on one CUDA GPU: minires with its CUDA kernels, minires with the pure-CuPy references
(``use_kernels(False)``), and PyTorch (if installed), in one process on the same batch.

    python benchmarks/bench_gpu.py [--models resnet20,resnet56] [--batch-size 128]
                                   [--repeats 20] [--warmup 5] [--count-launches]
                                   [--matmul-precision highest|high]

Every timed step ends with a device synchronisation (``cupy.cuda.Device().synchronize()``,
``torch.cuda.synchronize()``): GPU work is asynchronous, and without it the clock would
stop when the work is queued, not when it is done. Each variant runs its warm-up steps and
then its timed steps in a row; the median is reported. ``--count-launches`` also counts
the launches of minires's own kernels per step and, with PyTorch installed, every CUDA
kernel of one step of each framework as PyTorch's profiler (CUPTI) records them, CuPy's
elementwise, reduction and cuBLAS kernels included (``nsys profile`` gives the same
count without PyTorch).

Needs a CUDA GPU and CuPy; without them it says so and measures nothing.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from timing import median_seconds

import minires as mr
import minires.nn.functional as F
from minires import backend
from minires.models import get_model
from minires.optim import SGD

try:
    import torch
except ImportError:
    torch = None


def minires_step(model_name: str, x, y, kernels: bool):
    """One synchronised minires training step, with the CUDA kernels on or off."""
    model = get_model(model_name, num_classes=10).to("cuda")
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    xb, yb = mr.tensor(x, device="cuda"), mr.tensor(y, device="cuda")
    device = backend.cupy.cuda.Device()

    def step():
        mr.use_kernels(kernels)
        loss = F.cross_entropy(model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        device.synchronize()

    return step


def torch_step(model_name: str, x, y):
    from bench_resnet_cpu import torch_cifar_resnet  # the same network in PyTorch

    model = torch_cifar_resnet(int(model_name.removeprefix("resnet"))).cuda()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    xt, yt = torch.tensor(x, device="cuda"), torch.tensor(y, device="cuda")

    def step():
        loss = torch.nn.functional.cross_entropy(model(xt), yt)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        torch.cuda.synchronize()

    return step


def count_minires_launches(step) -> dict:
    """Calls of each minires CUDA kernel during one step (each call is one launch)."""
    counts: dict = {}
    kernels = dict(backend._kernels)

    def counting(name, fn):
        def wrapper(*args, **kwargs):
            counts[name] = counts.get(name, 0) + 1
            return fn(*args, **kwargs)
        return wrapper

    for name, fn in kernels.items():
        backend.register_kernel(name, counting(name, fn))
    try:
        step()
    finally:
        for name, fn in kernels.items():
            backend.register_kernel(name, fn)
    return counts


def count_cuda_kernels(step) -> int:
    """CUDA kernels that one call of ``step`` runs, as PyTorch's profiler records them."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step()
    return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--models", default="resnet20,resnet56",
                        help="comma-separated CIFAR ResNets (default: resnet20,resnet56)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5,
                        help="untimed steps first: kernel compilation, cuDNN autotuning")
    parser.add_argument("--matmul-precision", choices=["highest", "high"], default="highest",
                        help="highest: float32 everywhere; high: TF32 tensor cores for the "
                        "matrix multiplies and convolutions of both frameworks")
    parser.add_argument("--count-launches", action="store_true")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch")
    args = parser.parse_args(argv)

    if not mr.cuda.is_available():
        why = "CuPy is not installed" if backend.cupy is None else "CuPy finds no CUDA GPU"
        print(f"bench_gpu: needs a CUDA GPU ({why}); nothing was measured. Install the CuPy "
              "extra for your CUDA version (pip install 'minires[cuda12]' or "
              "'minires[cuda13]') on a machine with an NVIDIA GPU.")
        return 1
    import minires.cuda_kernels  # noqa: F401  (registers the kernels, if minires did not already)

    kernels_at_start = backend.kernels_enabled()  # MINIRES_KERNELS, restored after each model
    use_torch = torch is not None and torch.cuda.is_available() and not args.no_torch
    mr.set_float32_matmul_precision(args.matmul_precision)
    if use_torch:
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest
        # PyTorch lets cuDNN use TF32 for convolutions by default: the same math for both
        tf32 = args.matmul_precision == "high"
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
    cupy = backend.cupy
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    print(f"GPU: {name}; CuPy {cupy.__version__}; minires {mr.__version__}"
          + (f"; torch {torch.__version__} (cudnn.benchmark on)" if use_torch
             else "; torch: not measured"))
    print(f"batch {args.batch_size}, float32 with matmul precision "
          f"{args.matmul_precision!r} ({'TF32' if args.matmul_precision == 'high' else 'no TF32'}"
          f" in either framework), median of {args.repeats} steps after "
          f"{args.warmup} warm-up steps\n")

    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch_size, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, args.batch_size)
    header = f"{'model':<10} {'framework':<22} {'step (ms)':>10} {'images/s':>9} {'vs torch':>9}"
    print(header)
    print("-" * len(header))
    for model_name in args.models.split(","):
        steps = {"minires (CUDA kernels)": minires_step(model_name, x, y, kernels=True),
                 "minires (CuPy only)": minires_step(model_name, x, y, kernels=False)}
        if use_torch:
            steps["torch"] = torch_step(model_name, x, y)
        try:
            seconds = dict(zip(steps, median_seconds(list(steps.values()), args.repeats,
                                                     warmup=args.warmup)))
        finally:
            mr.use_kernels(kernels_at_start)  # each step sets its own; put back ours
        for framework, s in seconds.items():
            ratio = f"{s / seconds['torch']:.2f}x" if "torch" in seconds else "-"
            print(f"{model_name:<10} {framework:<22} {1000 * s:>10.1f} "
                  f"{args.batch_size / s:>9.0f} {ratio:>9}")
        if args.count_launches:
            counts = count_minires_launches(steps["minires (CUDA kernels)"])
            mr.use_kernels(kernels_at_start)
            print(f"{'':<10} minires kernel launches per step: {sum(counts.values())} "
                  f"({', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))})")
            if use_torch:
                minires_kernels = count_cuda_kernels(steps["minires (CUDA kernels)"])
                print(f"{'':<10} CUDA kernels per step (torch.profiler): minires "
                      f"{minires_kernels or 'not seen (use nsys profile)'}, torch "
                      f"{count_cuda_kernels(steps['torch'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
