"""One ResNet-20 training step (batch 128: forward, loss, backward, SGD step) in minires
and in PyTorch's CPU build, in one process, on the same random batch.

    python benchmarks/bench_resnet_cpu.py [--batch-size 128] [--repeats 5] [--model resnet20]

PyTorch runs the same architecture (He et al. 2015, option A shortcuts), built below.
"""

from __future__ import annotations

import argparse

import numpy as np
from timing import median_seconds

import minires as mr
import minires.nn.functional as F
from minires.models import get_model
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch_size, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, args.batch_size)

    model = get_model(args.model, num_classes=10)
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    xb, yb = mr.tensor(x), mr.tensor(y)

    def ours():
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()

    steps = [ours]
    if torch is not None:
        depth = int(args.model.removeprefix("resnet"))
        tmodel = torch_cifar_resnet(depth)
        topt = torch.optim.SGD(tmodel.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        xt, yt = torch.tensor(x), torch.tensor(y)

        def theirs():
            loss = torch.nn.functional.cross_entropy(tmodel(xt), yt)
            topt.zero_grad()
            loss.backward()
            topt.step()

        steps.append(theirs)
    seconds = median_seconds(steps, args.repeats)
    print(f"{'framework':<10} {'step (s)':>9} {'images/s':>9}")
    for name, t in zip(("minires", "torch"), seconds):
        print(f"{name:<10} {t:>9.3f} {args.batch_size / t:>9.0f}")
    if torch is None:
        print("torch not installed: no comparison")
    else:
        print(f"ratio minires/torch: {seconds[0] / seconds[1]:.2f} (torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
