"""Reductions: sum and max with a backward; mean and var built from them."""

from __future__ import annotations

from collections import namedtuple

from .. import backend
from ..autograd import Function
from ..tensors import Tensor, as_tensor
from .arguments import normalize_dims
from .basic import mul, sub

MaxResult = namedtuple("MaxResult", ["values", "indices"])  # like torch.return_types.max


def _keep(g, axes, keepdim: bool, xp):
    """Re-insert reduced axes so ``g`` broadcasts against the input."""
    return g if keepdim else xp.expand_dims(g, axes)


class Sum(Function):
    @staticmethod
    def forward(ctx, x, *, axes, keepdim):
        ctx.in_shape, ctx.axes, ctx.keepdim = x.shape, axes, keepdim
        return x.sum(axis=axes, keepdims=keepdim)

    @staticmethod
    def backward(ctx, gy):
        # y = sum_i x_i  =>  gx_i = gy (copied to every summed position)
        g = _keep(gy, ctx.axes, ctx.keepdim, ctx.xp)
        return ctx.xp.broadcast_to(g, ctx.in_shape).copy()


class Max(Function):
    @staticmethod
    def forward(ctx, x, *, axes, keepdim):
        y = x.max(axis=axes, keepdims=True)
        ctx.save_for_backward(x, y)
        ctx.axes, ctx.keepdim = axes, keepdim
        return y if keepdim else y.squeeze(axis=axes)

    @staticmethod
    def backward(ctx, gy):
        # y = max_i x_i  =>  gx_i = gy where x_i is the max (shared equally among ties)
        x, y = ctx.saved_tensors
        xp = ctx.xp
        winners = (x == y).astype(x.dtype)
        winners /= winners.sum(axis=ctx.axes, keepdims=True)
        return winners * _keep(gy, ctx.axes, ctx.keepdim, xp)


def sum(x, dim=None, keepdim: bool = False) -> Tensor:
    """The sum over ``dim`` (an int, a tuple, or None for all); ``keepdim``
    keeps the summed dimensions with size 1."""
    x = as_tensor(x)
    return Sum.apply(x, axes=normalize_dims(dim, x.ndim, "sum"), keepdim=keepdim)


def mean(x, dim=None, keepdim: bool = False) -> Tensor:
    """The mean over ``dim`` (an int, a tuple, or None for all); ``keepdim``
    keeps the reduced dimensions with size 1."""
    x = as_tensor(x)
    axes = normalize_dims(dim, x.ndim, "mean")
    count = 1
    for a in axes:
        count *= x.shape[a]
    return mul(sum(x, axes, keepdim), 1.0 / count)


def var(x, dim=None, keepdim: bool = False, unbiased: bool = True) -> Tensor:
    x = as_tensor(x)
    axes = normalize_dims(dim, x.ndim, "var")
    count = 1
    for a in axes:
        count *= x.shape[a]
    centered = sub(x, mean(x, axes, keepdim=True))
    return mul(sum(centered * centered, axes, keepdim), 1.0 / (count - int(unbiased)))


def max(x, dim=None, keepdim: bool = False):
    """``max(x)`` -> a scalar tensor; ``max(x, dim)`` -> ``(values, indices)`` as in PyTorch.
    ``dim`` is one dimension, as in PyTorch; ``amax`` takes several."""
    x = as_tensor(x)
    if dim is not None and not _is_int(dim):
        raise TypeError(f"max: dim must be an int, got {dim!r}: the indices of a maximum "
                        f"over several dims are not defined; use amax(x, dim={tuple(dim)!r}) "
                        f"for the values (x.amax(...))")
    if x.numel() == 0:
        raise ValueError(f"max: expected a non-empty tensor, got shape {x.shape}")
    axes = normalize_dims(dim, x.ndim, "max")
    values = Max.apply(x, axes=axes, keepdim=keepdim if dim is not None else False)
    if dim is None:
        return values
    return MaxResult(values, Tensor(argmax_array(x.data, dim, keepdim)))


def amax(x, dim=(), keepdim: bool = False) -> Tensor:
    """The maximum over one or several dims (all of them for ``dim=()``), like
    ``torch.amax``; the gradient is shared equally among tied maxima, as there."""
    x = as_tensor(x)
    dims = None if dim is None or dim == () or dim == [] else dim
    if x.numel() == 0:
        raise ValueError(f"amax: expected a non-empty tensor, got shape {x.shape}")
    axes = normalize_dims(dims, x.ndim, "amax")
    if len(set(axes)) != len(axes):
        raise ValueError(f"amax: dim {dim!r} lists a dimension twice")
    return Max.apply(x, axes=axes, keepdim=keepdim)


def _is_int(dim) -> bool:
    return isinstance(dim, int) or (hasattr(dim, "__index__") and not hasattr(dim, "__len__"))


def argmax_array(x, dim=None, keepdim: bool = False):
    xp = backend.array_module(x)
    if dim is None:
        return xp.argmax(x)
    if not _is_int(dim):
        raise TypeError(f"argmax: dim must be an int or None, got {dim!r}; for the position "
                        "over several dims, flatten them first (x.flatten(0, 1).argmax(0))")
    axis = normalize_dims(dim, x.ndim, "argmax")[0]
    indices = xp.argmax(x, axis=axis)
    return xp.expand_dims(indices, axis) if keepdim else indices
