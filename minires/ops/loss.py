"""Losses. Cross-entropy is fused (log-softmax + negative log-likelihood in one op)
because its gradient is then simply ``softmax - target``, and because computing
``log(softmax(x))`` in two steps overflows for large logits."""

from __future__ import annotations

from .. import backend
from ..backend import overridable
from ..tensor import Function, Tensor, as_tensor
from .activation import log_softmax_array
from .basic import sub
from .reduce import mean, sum
from .shape import getitem, permute, reshape

_REDUCTIONS = ("mean", "sum", "none")


@overridable
def cross_entropy_forward(xp, x, target, label_smoothing):
    """(N, C) logits, (N,) classes -> (per-sample loss (N,), softmax probabilities (N, C))."""
    logp = log_softmax_array(xp, x, 1)
    nll = -xp.take_along_axis(logp, target[:, None], axis=1)[:, 0]
    loss = (1 - label_smoothing) * nll - label_smoothing * logp.mean(axis=1)
    return loss, xp.exp(logp)


class CrossEntropy(Function):
    @staticmethod
    def forward(ctx, x, *, target, reduction, label_smoothing):
        loss, p = cross_entropy_forward(ctx.xp, x, target, label_smoothing)
        ctx.save_for_backward(p, target)
        ctx.reduction, ctx.label_smoothing = reduction, label_smoothing
        if reduction == "mean":
            return loss.mean()
        return loss.sum() if reduction == "sum" else loss

    @staticmethod
    def backward(ctx, gy):
        # loss_n = -sum_c q_nc log softmax(x_n)_c with q = (1-s) onehot + s/C
        #   =>  gx_n = (softmax(x_n) - q_n) * gy_n      (gy_n = gy / N for 'mean')
        xp = ctx.xp
        p, target = ctx.saved_tensors
        N, C = p.shape
        s = ctx.label_smoothing
        g = p - s / C
        backend.scatter_add(xp, g, (xp.arange(N), target), p.dtype.type(-(1 - s)))
        if ctx.reduction == "none":
            return g * gy[:, None]
        return g * (gy / N if ctx.reduction == "mean" else gy)


def cross_entropy(input, target, reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy between logits (N, C) or (N, C, d1, ...) and integer class targets
    (N,) or (N, d1, ...), like ``torch.nn.functional.cross_entropy``."""
    x = as_tensor(input)
    t = target.data if isinstance(target, Tensor) else target
    xp = backend.array_module(x.data)
    t = xp.asarray(t)
    if reduction not in _REDUCTIONS:
        raise ValueError(f"cross_entropy: reduction must be one of {_REDUCTIONS}, got "
                         f"{reduction!r}")
    if not 0 <= label_smoothing <= 1:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got "
                         f"{label_smoothing}")
    if x.ndim < 2:
        raise ValueError(f"cross_entropy: expected logits of shape (N, C), got shape {x.shape}")
    if t.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: expected integer class indices as target, got dtype "
                        f"{t.dtype} (shape {tuple(t.shape)})")
    if tuple(t.shape) != (x.shape[0],) + x.shape[2:]:
        raise ValueError(f"cross_entropy: target of shape {tuple(t.shape)} does not match "
                         f"logits of shape {x.shape} (expected {(x.shape[0],) + x.shape[2:]})")
    C = x.shape[1]
    if t.size:  # on a GPU checked without waiting for it (backend.check_value)
        backend.check_value(
            (t.min() < 0) | (t.max() >= C),
            lambda: f"cross_entropy: target values must be in [0, {C - 1}] for {C} "
                    f"classes, got values in [{int(t.min())}, {int(t.max())}]")
    spatial = x.shape[2:]
    if spatial:  # (N, C, d1, ...) -> (N*d1*..., C): one row per prediction
        x = reshape(permute(x, 0, *range(2, x.ndim), 1), -1, C)
        t = t.reshape(-1)
    out = CrossEntropy.apply(x, target=t.astype("int64", copy=False), reduction=reduction,
                             label_smoothing=float(label_smoothing))
    return reshape(out, x.shape[:1] if not spatial else (-1, *spatial)) \
        if reduction == "none" else out


def nll_loss(input, target, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of log-probabilities (N, C) at integer targets (N,)."""
    x = as_tensor(input)
    t = target.data if isinstance(target, Tensor) else target
    xp = backend.array_module(x.data)
    picked = -getitem(x, (xp.arange(x.shape[0]), xp.asarray(t)))
    return _reduce(picked, reduction, "nll_loss")


def mse_loss(input, target, reduction: str = "mean") -> Tensor:
    """Mean squared error: mean((input - target)^2)."""
    x, y = as_tensor(input), as_tensor(target)
    if x.shape != y.shape:
        raise ValueError(f"mse_loss: input shape {x.shape} and target shape {y.shape} differ")
    d = sub(x, y)
    return _reduce(d * d, reduction, "mse_loss")


def _reduce(loss: Tensor, reduction: str, op: str) -> Tensor:
    if reduction == "mean":
        return mean(loss)
    if reduction == "sum":
        return sum(loss)
    if reduction == "none":
        return loss
    raise ValueError(f"{op}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


