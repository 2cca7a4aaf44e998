"""What mr.set_float32_matmul_precision costs in accuracy and buys in speed.

    python benchmarks/matmul_precision.py [--device cpu|cuda] [--repeats 5]
                                          [--train-epochs N] [--model resnet20]
                                          [--dataset cifar10-sample] [--data-root DIR]

For each precision, 'highest' (float32), 'high' (TF32) and 'medium' (bfloat16 inputs):

1. the error of ResNet-20's convolutions at batch 128 (output, input gradient, weight
   gradient), relative to float64: largest absolute error / largest absolute value;
2. the median time of one ResNet-20 training step at batch 128 (forward, loss, backward,
   SGD step). On a GPU of compute capability 8.0 or later 'high' runs on the tensor
   cores; on the CPU 'high' and 'medium' are emulated (inputs rounded, then float32
   BLAS), so there they show the accuracy effect at a cost in time, never a speed-up;
3. with --train-epochs N, the same `minires train` run (--model, --dataset, the default
   recipe, same seed and data order) at each precision: final training loss and accuracy.

Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

import numpy as np
from timing import median_seconds

import minires as mr
import minires.nn.functional as F
from minires.backend import MATMUL_PRECISIONS
from minires.models import get_model
from minires.optim import SGD
from minires.train import run_training

# ResNet-20's three convolution shapes (input, weight) at batch 128
CONVS = {"stage 1": ((128, 16, 32, 32), (16, 16, 3, 3)),
         "stage 2": ((128, 32, 16, 16), (32, 32, 3, 3)),
         "stage 3": ((128, 64, 8, 8), (64, 64, 3, 3))}


def conv_results(x, w, gy, device, dtype) -> list:
    """conv2d's output, input gradient and weight gradient as float64 NumPy arrays."""
    xt = mr.tensor(x.astype(dtype), device=device, requires_grad=True)
    wt = mr.tensor(w.astype(dtype), device=device, requires_grad=True)
    y = F.conv2d(xt, wt, padding=1)
    y.backward(mr.tensor(gy.astype(dtype), device=device))
    return [t.detach().cpu().numpy().astype(np.float64) for t in (y, xt.grad, wt.grad)]


def conv_errors(device: str) -> dict:
    """{(stage, precision): [relative error of y, gx, gw]}"""
    rng = np.random.default_rng(0)
    errors = {}
    for stage, (x_shape, w_shape) in CONVS.items():
        x = rng.standard_normal(x_shape)
        w = rng.standard_normal(w_shape) * np.sqrt(2 / np.prod(w_shape[1:]))  # He init
        gy = rng.standard_normal((x_shape[0], w_shape[0], *x_shape[2:]))
        exact = conv_results(x, w, gy, "cpu", np.float64)
        for precision in MATMUL_PRECISIONS:
            mr.set_float32_matmul_precision(precision)
            got = conv_results(x, w, gy, device, np.float32)
            errors[stage, precision] = [float(np.abs(g - e).max() / np.abs(e).max())
                                        for g, e in zip(got, exact)]
    mr.set_float32_matmul_precision("highest")
    return errors


def step_times(device: str, repeats: int) -> dict:
    """{precision: median seconds of one ResNet-20 training step at batch 128}"""
    rng = np.random.default_rng(0)
    x = mr.tensor(rng.standard_normal((128, 3, 32, 32)).astype(np.float32), device=device)
    y = mr.tensor(rng.integers(0, 10, 128), device=device)
    model = get_model("resnet20", num_classes=10).to(device)
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9)

    def step():
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss.item()  # waits for the GPU

    times = {}
    for precision in MATMUL_PRECISIONS:
        mr.set_float32_matmul_precision(precision)
        times[precision] = median_seconds([step], repeats)[0]
    mr.set_float32_matmul_precision("highest")
    return times


def training_runs(args) -> dict:
    """{precision: the last epoch's row of the training log}"""
    rows = {}
    for precision in MATMUL_PRECISIONS:
        with tempfile.TemporaryDirectory() as out:
            result = run_training(model=args.model, dataset=args.dataset,
                                  data_root=args.data_root, epochs=args.train_epochs,
                                  device=args.device, matmul_precision=precision,
                                  progress=False, out=out)
        rows[precision] = result["history"][-1]
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per precision")
    parser.add_argument("--train-epochs", type=int, default=0,
                        help="also train --model this many epochs at each precision")
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--dataset", default="cifar10-sample")
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args(argv)
    mr.manual_seed(0)

    print(f"device: {args.device}" + (" (TF32 and bfloat16 emulated: rounded inputs, "
                                      "float32 BLAS)" if args.device == "cpu" else ""))
    print("\nconv2d error relative to float64 (ResNet-20 shapes, batch 128)\n")
    print("| convolution | precision | output | input gradient | weight gradient |")
    print("|---|---|---|---|---|")
    for (stage, precision), errors in conv_errors(args.device).items():
        print(f"| {stage} | {precision} | " + " | ".join(f"{e:.2e}" for e in errors) + " |")

    print(f"\nResNet-20 training step, batch 128 (median of {args.repeats})\n")
    print("| precision | step (ms) | vs highest |")
    print("|---|---|---|")
    times = step_times(args.device, args.repeats)
    for precision, seconds in times.items():
        print(f"| {precision} | {1000 * seconds:.1f} | {seconds / times['highest']:.2f}x |")

    if args.train_epochs:
        print(f"\n{args.model} on {args.dataset}, {args.train_epochs} epochs, seed 0\n")
        print("| precision | final train loss | train accuracy | test accuracy |")
        print("|---|---|---|---|")
        for precision, row in training_runs(args).items():
            print(f"| {precision} | {row['train_loss']:.4f} | {100 * row['train_acc']:.2f}% "
                  f"| {100 * row['test_acc']:.2f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
