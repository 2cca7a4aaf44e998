"""A one-minute demo: a tiny CNN, written with the functional ops only, learns to tell
horizontal bars from vertical ones, and its loss falls."""

from __future__ import annotations

import numpy as np

import minires as mr
import minires.nn.functional as F


def bars(n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """(n, 1, 8, 8) noisy images holding one bright bar; label 0 = horizontal, 1 = vertical."""
    images = rng.normal(0, 0.3, (n, 1, 8, 8)).astype(np.float32)
    labels = rng.integers(0, 2, n)
    where = rng.integers(0, 8, n)
    for k in range(n):  # building the toy data set, not the hot path
        if labels[k] == 0:
            images[k, 0, where[k], :] += 1.0
        else:
            images[k, 0, :, where[k]] += 1.0
    return images, labels


def run_demo(steps: int = 150, batch_size: int = 32, lr: float = 0.1, seed: int = 0) -> list:
    """Train and return the loss of every step."""
    mr.manual_seed(seed)
    rng = np.random.default_rng(seed)

    def param(*shape, fan_in):
        return (mr.randn(*shape) * (2 / fan_in) ** 0.5).requires_grad_()

    w1, w2 = param(8, 1, 3, 3, fan_in=9), param(16, 8, 3, 3, fan_in=72)
    gamma, beta = mr.ones(8, requires_grad=True), mr.zeros(8, requires_grad=True)
    fc_w, fc_b = param(2, 16, fan_in=16), mr.zeros(2, requires_grad=True)
    params = [w1, w2, gamma, beta, fc_w, fc_b]

    losses = []
    for step in range(steps):
        x, y = bars(batch_size, rng)
        h = F.relu(F.batch_norm(F.conv2d(x, w1, padding=1), None, None, gamma, beta,
                                training=True))
        h = F.max_pool2d(h, 2)  # (N, 8, 4, 4)
        h = F.relu(F.conv2d(h, w2, padding=1))  # (N, 16, 4, 4)
        h = F.adaptive_avg_pool2d(h, 1).flatten(1)  # (N, 16)
        loss = F.cross_entropy(F.linear(h, fc_w, fc_b), y)
        for p in params:
            p.grad = None
        loss.backward()
        with mr.no_grad():
            for p in params:  # plain gradient descent, written out
                p.data -= lr * p.grad.data
        losses.append(loss.item())
        if step % 25 == 0 or step == steps - 1:
            print(f"step {step:4d}  loss {loss.item():.4f}")
    return losses
