"""``nn.utils``: helpers that act on a model's parameters, where PyTorch has them.

``clip_grad_norm_`` rescales gradients so their global norm is at most ``max_norm``.
The norm is taken over all gradients together, as if they were one long vector::

    total = || (||g_1||, ||g_2||, ...) ||        (each ||.|| of order norm_type)
    g_i = g_i * max_norm / (total + 1e-6)        only if that factor is below 1

Scaling every gradient by the same factor keeps the update's direction and only
shortens it, which tames the occasional exploding step. ``minires.optim`` re-exports it.
"""

from __future__ import annotations

import math

from .. import backend
from ..tensors import Tensor

__all__ = ["clip_grad_norm_"]


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> Tensor:
    """Clip the gradients of ``parameters`` (Tensors, or one Tensor) in place.

    Returns the total norm *before* clipping as a 0-d Tensor, like PyTorch.
    ``norm_type`` may be ``float('inf')`` for the largest absolute value.
    """
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    params = [p for p in parameters if p.grad is not None]
    max_norm, norm_type = float(max_norm), float(norm_type)
    if not params:
        return Tensor(0.0)
    devices = sorted({p.grad.device for p in params})
    if len(devices) > 1:
        raise RuntimeError(f"clip_grad_norm_: expected all gradients on one device, but found "
                           f"gradients on {' and '.join(devices)}")

    grads = [p.grad.data for p in params]
    xp = backend.array_module(*grads)
    # One norm per gradient, then the norm of those norms: the same number as the norm
    # of all gradients concatenated, without building that concatenation.
    if math.isinf(norm_type):
        norms = [xp.abs(g).max() for g in grads if g.size > 0]
        total = xp.stack(norms).max() if norms else xp.zeros((), dtype=grads[0].dtype)
    else:
        norms = [xp.linalg.norm(g.ravel(), ord=norm_type) for g in grads]
        total = xp.linalg.norm(xp.stack(norms), ord=norm_type)

    total_norm = float(total)  # one device-to-host copy per call
    if error_if_nonfinite and not math.isfinite(total_norm):
        raise RuntimeError(f"clip_grad_norm_: the total norm of order {norm_type} of the "
                           f"gradients is {total_norm}, so they cannot be clipped. Pass "
                           "error_if_nonfinite=False to clip anyway.")
    # min() keeps a NaN factor (NaN < 1 is False), so NaN norms spread to every
    # gradient exactly as in PyTorch instead of leaving part of them unclipped.
    clip_coef = min(max_norm / (total_norm + 1e-6), 1.0)
    if clip_coef != 1.0:
        for p in params:
            # Out of place: the engine may give two leaves one shared gradient array
            # (y = a + b), and scaling it in place would scale it twice.
            p.grad.data = p.grad.data * clip_coef
    return Tensor(total)
