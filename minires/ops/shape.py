"""Ops that move numbers around without changing them: reshape, permute, index, cat, pad.

Their backward passes undo the movement: reshape back, permute by the inverse
permutation, scatter into zeros, split, crop.
"""

from __future__ import annotations

import itertools

from .. import backend
from ..autograd import Function
from ..tensors import Tensor, as_tensor
from .arguments import normalize_dim


class Reshape(Function):
    @staticmethod
    def forward(ctx, x, *, shape):
        ctx.in_shape = x.shape
        return x.reshape(shape)

    @staticmethod
    def backward(ctx, gy):
        # y = x viewed with another shape  =>  gx = gy viewed with x's shape
        return gy.reshape(ctx.in_shape)


class Permute(Function):
    @staticmethod
    def forward(ctx, x, *, dims):
        ctx.dims = dims
        return x.transpose(dims)

    @staticmethod
    def backward(ctx, gy):
        # y = x with axes permuted by p  =>  gx = gy permuted by p's inverse
        inverse = [0] * len(ctx.dims)
        for i, d in enumerate(ctx.dims):
            inverse[d] = i
        return gy.transpose(inverse)


class GetItem(Function):
    @staticmethod
    def forward(ctx, x, *, index):
        ctx.in_shape, ctx.index = x.shape, index
        return x[index]

    @staticmethod
    def backward(ctx, gy):
        # y = x[index]  =>  gx = zeros with gy added at index (repeats add up)
        gx = ctx.xp.zeros(ctx.in_shape, dtype=gy.dtype)
        if _is_basic(ctx.index):  # slices and ints never repeat an element: plain write
            gx[ctx.index] = gy
        else:
            backend.scatter_add(ctx.xp, gx, ctx.index, gy)
        return gx


def _is_basic(index) -> bool:
    """True for indices made of ints, slices, None and Ellipsis only (a view in NumPy)."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, (int, slice)) or i is None or i is Ellipsis for i in parts)


class Cat(Function):
    @staticmethod
    def forward(ctx, *xs, dim):
        ctx.dim = dim
        ctx.sizes = [x.shape[dim] for x in xs]
        return ctx.xp.concatenate(xs, axis=dim)

    @staticmethod
    def backward(ctx, gy):
        # y = [x1, x2, ...] along dim  =>  gxi = the slice of gy where xi landed
        edges = list(itertools.accumulate(ctx.sizes))[:-1]
        return tuple(ctx.xp.split(gy, edges, axis=ctx.dim))


class Pad(Function):
    @staticmethod
    def forward(ctx, x, *, widths, value):
        ctx.slices = tuple(slice(before, before + n) for (before, _), n in zip(widths, x.shape))
        return ctx.xp.pad(x, widths, mode="constant", constant_values=value)

    @staticmethod
    def backward(ctx, gy):
        # y = x surrounded by constants  =>  gx = the middle of gy
        return gy[ctx.slices]


# --------------------------------------------------------------------------- wrappers


def reshape(x, *shape) -> Tensor:
    x = as_tensor(x)
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    size = x.numel()
    known = 1
    for n in shape:
        known *= n if n != -1 else 1
    if shape.count(-1) > 1 or (-1 not in shape and known != size) or \
            (-1 in shape and (known == 0 or size % known)):
        raise ValueError(f"reshape: shape {tuple(shape)} is invalid for input of shape "
                         f"{x.shape} ({size} elements)")
    return Reshape.apply(x, shape=shape)


def flatten(x, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    x = as_tensor(x)
    if x.ndim == 0:
        return reshape(x, 1)
    start = normalize_dim(start_dim, x.ndim, "flatten")
    end = normalize_dim(end_dim, x.ndim, "flatten")
    if start > end:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    return reshape(x, *x.shape[:start], -1, *x.shape[end + 1:])


def permute(x, *dims) -> Tensor:
    x = as_tensor(x)
    dims = tuple(dims[0]) if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
    dims = tuple(normalize_dim(d, x.ndim, "permute") for d in dims)
    if sorted(dims) != list(range(x.ndim)):
        raise ValueError(f"permute: dims {dims} are not a permutation of the {x.ndim} dims of "
                         f"a tensor of shape {x.shape}")
    return Permute.apply(x, dims=dims)


def transpose(x, dim0: int, dim1: int) -> Tensor:
    x = as_tensor(x)
    dims = list(range(x.ndim))
    a, b = normalize_dim(dim0, x.ndim, "transpose"), normalize_dim(dim1, x.ndim, "transpose")
    dims[a], dims[b] = dims[b], dims[a]
    return Permute.apply(x, dims=tuple(dims))


def getitem(x, index) -> Tensor:
    x = as_tensor(x)
    # tensors used as indices become plain arrays (integer or boolean masks)
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    elif isinstance(index, list):
        index = backend.array_module(x.data).asarray(index)
    _check_integer_indices(x.shape, index)
    try:
        return GetItem.apply(x, index=index)
    except IndexError as error:
        raise IndexError(f"getitem: index {index!r} is invalid for a tensor of shape "
                         f"{x.shape}: {error}") from None


def _check_integer_indices(shape: tuple, index) -> None:
    """Integer arrays in an index are checked against the size of the axis they index:
    CuPy, like any GPU gather, wraps an index out of range around silently and returns a
    wrong element. The check raises at once on the CPU and at the next read on a GPU
    (backend.check_value), as PyTorch's deferred device-side asserts do."""
    parts = list(index) if isinstance(index, tuple) else [index]
    ellipsis = [k for k, p in enumerate(parts) if p is Ellipsis]  # `in` would compare arrays
    if ellipsis:  # the parts after ... index the last axes
        cut = ellipsis[0]
        after = sum(_axes_taken(p) for p in parts[cut + 1:])
        placed = _axes(parts[:cut], 0) + _axes(parts[cut + 1:], len(shape) - after)
    else:
        placed = _axes(parts, 0)
    for part, axis in placed:
        if axis < len(shape) and hasattr(part, "dtype") and part.dtype.kind in "iu" and part.size:
            size = shape[axis]
            bad = ((part < -size) | (part >= size)).any()
            backend.check_value(bad, lambda part=part, axis=axis, size=size: (
                f"getitem: index {_first_outside(part, size)} is out of bounds for dimension "
                f"{axis} with size {size}"))


def _first_outside(part, size: int) -> int:
    """The first index in ``part`` outside [-size, size) (read only to build an error)."""
    values = backend.to_numpy(part).ravel()
    return int(values[(values < -size) | (values >= size)][0])


def _axes_taken(part) -> int:
    """How many axes of the indexed tensor one part of an index consumes."""
    if part is None:
        return 0
    if hasattr(part, "ndim") and part.dtype == bool:
        return part.ndim
    return 1


def _axes(parts, first: int) -> list:
    """(part, the axis it starts at) for consecutive parts from axis ``first``."""
    placed, axis = [], first
    for part in parts:
        placed.append((part, axis))
        axis += _axes_taken(part)
    return placed


def cat(tensors, dim: int = 0) -> Tensor:
    """Join tensors of equal shape but along ``dim``: two (N, C1, H, W) and
    (N, C2, H, W) give (N, C1 + C2, H, W), as ``torch.cat``."""
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("cat: expected a non-empty list of tensors")
    ndim = tensors[0].ndim
    axis = normalize_dim(dim, ndim, "cat")
    for t in tensors:
        if t.ndim != ndim or any(a != b for i, (a, b) in enumerate(zip(t.shape, tensors[0].shape))
                                 if i != axis):
            raise ValueError(f"cat: sizes of tensors must match except in dimension {dim}; "
                             f"got shapes {[t.shape for t in tensors]}")
    return Cat.apply(*tensors, dim=axis)


def pad(x, pad, mode: str = "constant", value: float = 0.0) -> Tensor:
    """Pad with a constant, PyTorch-style: ``pad`` lists (before, after) pairs starting
    from the LAST dimension, e.g. ``(left, right, top, bottom)`` for an image."""
    x = as_tensor(x)
    if mode != "constant":
        raise ValueError(f"pad: only mode='constant' is supported, got {mode!r}")
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ValueError(f"pad: padding {tuple(pad)} must have an even length of at most "
                         f"2 * ndim = {2 * x.ndim} for input of shape {x.shape}")
    if any(p < 0 for p in pad):
        raise ValueError(f"pad: negative padding {tuple(pad)} is not supported")
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        widths[x.ndim - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
    return Pad.apply(x, widths=tuple(widths), value=value)
