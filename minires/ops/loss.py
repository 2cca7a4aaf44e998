"""Losses. Cross-entropy is fused (log-softmax + negative log-likelihood in one op)
because its gradient is then simply ``softmax - target``, and because computing
``log(softmax(x))`` in two steps overflows for large logits.

The class-index losses follow PyTorch: a target equal to ``ignore_index`` (default
-100) counts for nothing, ``weight`` scales each class, and ``'mean'`` divides by the
total weight of the counted targets (their number without ``weight``), so a batch with
ignored targets averages over the others only. Class weights go through a composite
(log-softmax, pick, weigh) rather than the fused op, whose backward stays the lesson.
"""

from __future__ import annotations

import numbers

from .. import backend
from ..autograd import Function
from ..backend import overridable
from ..tensors import Tensor, as_tensor
from .activation import log_softmax, log_softmax_array
from .arguments import check_reduction
from .basic import add, mul, neg, sub
from .reduce import mean, sum
from .shape import getitem, permute, reshape


@overridable
def cross_entropy_forward(xp, x, target, label_smoothing):
    """(N, C) logits, (N,) classes -> (per-sample loss (N,), softmax probabilities (N, C))."""
    logp = log_softmax_array(xp, x, 1)
    nll = -xp.take_along_axis(logp, target[:, None], axis=1)[:, 0]
    loss = (1 - label_smoothing) * nll - label_smoothing * logp.mean(axis=1)
    return loss, xp.exp(logp)


class CrossEntropy(Function):
    @staticmethod
    def forward(ctx, x, target, *, reduction, label_smoothing, ignore_index):
        # x: (N, C) logits; target: (N,) class indices (an input that needs no gradient)
        xp = ctx.xp
        counted = target != ignore_index  # (N,)
        # an ignored row is computed with class 0 (any valid index) and then zeroed
        loss, p = cross_entropy_forward(xp, x, xp.where(counted, target, 0), label_smoothing)
        loss = loss * counted
        ctx.save_for_backward(p, target)
        ctx.reduction, ctx.label_smoothing = reduction, label_smoothing
        ctx.ignore_index = ignore_index
        if reduction == "mean":  # over the counted rows: NaN when there are none, as in PyTorch
            with backend.quiet_float_errors():
                return loss.sum() / counted.sum().astype(loss.dtype)
        return loss.sum() if reduction == "sum" else loss

    @staticmethod
    def backward(ctx, gy):
        # loss_n = -sum_c q_nc log softmax(x_n)_c, with q_n = (1-s) onehot(t_n) + s/C,
        # and q_n = 0 where t_n == ignore_index
        #   =>  gx_n = (softmax(x_n) - q_n) * gy_n   (0 for an ignored row;
        #       gy_n = gy / (number of counted rows) for 'mean')
        xp = ctx.xp
        p, target = ctx.saved_tensors
        N, C = p.shape
        s = ctx.label_smoothing
        counted = target != ctx.ignore_index
        g = p - s / C
        backend.scatter_add(xp, g, (xp.arange(N), xp.where(counted, target, 0)),
                            p.dtype.type(-(1 - s)))
        g *= counted[:, None]
        if ctx.reduction == "none":
            return g * gy[:, None], None
        if ctx.reduction == "mean":  # max(., 1): no counted row leaves g all zeros
            return g * (gy / xp.maximum(counted.sum(), 1).astype(p.dtype)), None
        return g * gy, None  # the targets get no gradient


# --------------------------------------------------------------------------- wrappers


def cross_entropy(input, target, weight=None, ignore_index: int = -100, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy between logits (N, C), (N, C, d1, ...) or (C,) and integer class
    targets (N,), (N, d1, ...) or (), like ``torch.nn.functional.cross_entropy``:
    ``weight`` (C,) scales each class, targets equal to ``ignore_index`` count for
    nothing, ``label_smoothing`` mixes the one-hot target with the uniform one."""
    op = "cross_entropy"
    check_reduction(op, reduction)
    if not 0 <= label_smoothing <= 1:
        raise ValueError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing}")
    x, t, out_shape = _rows(op, as_tensor(input), target, ignore_index)
    C = x.shape[1]
    w = _class_weight(op, weight, x)
    s = float(label_smoothing)
    if w is None:
        out = CrossEntropy.apply(x, t, reduction=reduction, label_smoothing=s,
                                 ignore_index=int(ignore_index))
    else:
        logp = log_softmax(x, 1)  # (M, C)
        terms = [(neg(_picked(logp, t)), (1 - s) * _target_weight(t, w, ignore_index))]
        if s:  # smoothing: -sum_c w_c log p_c of each counted row, spread over C
            counted = (t != ignore_index).astype(x.dtype)
            terms.append((neg(sum(mul(logp, w[None, :]), 1)), (s / C) * counted))
        out = _weighted_reduce(terms, _target_weight(t, w, ignore_index), reduction)
    return reshape(out, out_shape) if reduction == "none" else out


def nll_loss(input, target, weight=None, ignore_index: int = -100,
             reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of log-probabilities (N, C), (N, C, d1, ...) or (C,) at
    integer targets (N,), (N, d1, ...) or (), like ``torch.nn.functional.nll_loss``:
    ``loss_n = -weight[t_n] * input[n, t_n]``, 0 where ``t_n == ignore_index``."""
    op = "nll_loss"
    check_reduction(op, reduction)
    x, t, out_shape = _rows(op, as_tensor(input), target, ignore_index)
    w = _class_weight(op, weight, x)
    rows = _target_weight(t, w, ignore_index)
    out = _weighted_reduce([(neg(_picked(x, t)), rows)], rows, reduction)
    return reshape(out, out_shape) if reduction == "none" else out


def mse_loss(input, target, reduction: str = "mean") -> Tensor:
    """Squared error ``(input - target) ** 2`` of two tensors of one shape, averaged
    (``reduction='mean'``), summed ('sum') or element by element ('none')."""
    x, y = as_tensor(input), as_tensor(target)
    if x.shape != y.shape:
        raise ValueError(f"mse_loss: input shape {x.shape} and target shape {y.shape} differ")
    check_reduction("mse_loss", reduction)
    d = sub(x, y)
    if reduction == "mean":
        return mean(d * d)
    return sum(d * d) if reduction == "sum" else d * d


# --------------------------------------------------------------------------- helpers


def _rows(op: str, x: Tensor, target, ignore_index):
    """Scores (N, C, d1, ...) and targets (N, d1, ...) -> one row per prediction:
    (M, C) scores, (M,) int64 targets, and the shape of a 'none' result. Checks the
    shapes, and the target values (on a GPU without waiting for it)."""
    xp = backend.array_module(x.data)
    t = xp.asarray(target.data if isinstance(target, Tensor) else target)
    if t.dtype.kind not in "iu":
        raise TypeError(f"{op}: expected integer class indices as target, got dtype "
                        f"{t.dtype} (shape {tuple(t.shape)})")
    if not isinstance(ignore_index, numbers.Integral) or isinstance(ignore_index, bool):
        raise TypeError(f"{op}: ignore_index must be an int, got {ignore_index!r}")
    if x.ndim == 1:  # one unbatched prediction (C,) with a 0-d target
        if t.ndim != 0:
            raise ValueError(f"{op}: an input of shape {x.shape} (one prediction) needs a "
                             f"0-d target, got shape {tuple(t.shape)}")
        x, t, out_shape = reshape(x, 1, -1), t.reshape(1), ()
    elif x.ndim < 1:
        raise ValueError(f"{op}: expected scores of shape (N, C), got shape {x.shape}")
    else:
        out_shape = (x.shape[0],) + x.shape[2:]
        if tuple(t.shape) != out_shape:
            scores = "logits" if op == "cross_entropy" else "input"
            raise ValueError(f"{op}: target of shape {tuple(t.shape)} does not match {scores} "
                             f"of shape {x.shape} (expected {out_shape})")
        if x.ndim > 2:  # (N, C, d1, ...) -> (N*d1*..., C): one row per prediction
            x = reshape(permute(x, 0, *range(2, x.ndim), 1), -1, x.shape[1])
            t = t.reshape(-1)
    C = x.shape[1]
    if t.size:
        bad = ((t < 0) | (t >= C)) & (t != ignore_index)

        def message():
            flat = backend.to_numpy(bad).reshape(-1)
            i = int(flat.argmax())
            value = int(backend.to_numpy(t).reshape(-1)[i])
            return (f"{op}: target values must be in [0, {C - 1}] for {C} classes (or equal "
                    f"ignore_index={ignore_index}), got {value} at position {i}")

        backend.check_value(bad.any(), message)  # on a GPU: raised at the next read
    return x, t.astype("int64", copy=False), out_shape


def _class_weight(op: str, weight, x: Tensor):
    """``weight`` as a constant array of x's dtype and device (no gradient flows to it,
    as in PyTorch), or None."""
    if weight is None:
        return None
    w = weight if isinstance(weight, Tensor) else Tensor(backend.array_module(x.data)
                                                         .asarray(weight))
    C = x.shape[1]
    if w.shape != (C,):
        raise ValueError(f"{op}: weight should be defined for all {C} classes (shape "
                         f"({C},)), but got a weight of shape {w.shape}")
    if w.device != x.device:
        raise RuntimeError(f"{op}: weight is on {w.device} but the input is on {x.device}")
    if w.dtype.kind != "f":
        raise TypeError(f"{op}: weight must be floating point, got dtype {w.dtype}")
    return w.data.astype(x.dtype, copy=False)


def _picked(scores: Tensor, t):
    """scores[n, t_n] for every row (an ignored t_n reads class 0; its weight is 0)."""
    xp = backend.array_module(scores.data)
    safe = xp.where((t >= 0) & (t < scores.shape[1]), t, 0)
    return getitem(scores, (xp.arange(scores.shape[0]), safe))  # (M,)


def _target_weight(t, w, ignore_index):
    """(M,) weight of each row's target: weight[t_n] (1 without weight), 0 if ignored."""
    xp = backend.array_module(t)
    counted = t != ignore_index
    if w is None:
        return counted
    return w[xp.where(counted, t, 0)] * counted


def _weighted_reduce(terms, row_weights, reduction: str) -> Tensor:
    """Sum of ``loss * scale`` over the (loss Tensor (M,), constant scale (M,)) terms,
    reduced. 'mean' divides by the total of ``row_weights``; when it is 0 (every target
    ignored) the result is NaN with a zero gradient, as in PyTorch."""
    xp = backend.array_module(row_weights)
    dtype = terms[0][0].dtype
    if reduction == "mean":
        total = row_weights.sum().astype(dtype)
        scale = 1 / (total + (total == 0))  # the gradient: 0, not 0 * inf
        loss = sum(_scaled_sum(terms, dtype, scale))
        return add(loss, xp.where(total == 0, dtype.type("nan"), dtype.type(0)))
    loss = _scaled_sum(terms, dtype, 1)
    return sum(loss) if reduction == "sum" else loss


def _scaled_sum(terms, dtype, factor) -> Tensor:
    out = None
    for loss, scale in terms:
        part = mul(loss, (scale * factor).astype(dtype))
        out = part if out is None else add(out, part)
    return out
