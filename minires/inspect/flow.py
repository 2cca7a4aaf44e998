"""``gradient_flow(model, batch)``: one forward and backward pass, the per-depth profile.

    profile = gradient_flow(resnet56(), (images, labels))
    profile['act_grad_norm']   # d loss / d (block output), first block to last
    profile.ratio()            # first / last: how much the gradient grows toward the input

The model is measured as it is (at initialisation, or after ``load_state_dict`` of a
checkpoint) and left as it was: its parameters' ``.grad`` and its buffers (BatchNorm's
running statistics, which a training-mode forward pass updates) are put back.
"""

from __future__ import annotations

import numpy

from ..autograd import no_grad
from ..nn import functional as F
from ..tensors import Tensor
from .monitor import GradientMonitor
from .profile import Profile


def gradient_flow(model, batch, *, loss_fn=None, layers=None, train: bool = True,
                  seed: int | None = 0) -> Profile:
    """The gradient-flow ``Profile`` of one forward/backward pass of ``model`` on ``batch``.

    ``batch``: ``(inputs, targets)``, or inputs alone (the targets are then random class
    labels, drawn with ``seed``). ``loss_fn(outputs, targets)`` defaults to
    ``F.cross_entropy``. ``train=True`` runs BatchNorm with batch statistics, as in
    training; ``layers`` as in ``GradientMonitor``.
    """
    if isinstance(batch, (tuple, list)):
        inputs, targets = batch
    else:
        inputs, targets = batch, None
    loss_fn = loss_fn or F.cross_entropy
    was_training = model.training
    grads = [(p, p.grad) for p in model.parameters()]
    buffers = [(b, b.data.copy()) for b in model.buffers()]
    model.train(train)
    try:
        monitor = GradientMonitor(model, layers=layers)
        with monitor:
            outputs = model(inputs)
            if targets is None:
                targets = _random_labels(outputs, seed)
            loss = loss_fn(outputs, targets)
            model.zero_grad()
            loss.backward()
            profile = monitor.step()
    finally:
        model.train(was_training)
        for p, g in grads:
            p.grad = g
        with no_grad():
            for b, data in buffers:
                b.data = data
    return profile


def _random_labels(outputs: Tensor, seed) -> Tensor:
    """Random class labels from a private generator: the global one is left untouched."""
    n, classes = outputs.shape[0], outputs.shape[-1]
    labels = numpy.random.default_rng(seed).integers(0, classes, size=n)
    return Tensor(labels, device=outputs.device)
