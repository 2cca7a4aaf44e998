"""Specs of the shape ops: reshape, permute, indexing, cat, pad (``minires/ops/shape.py``)."""

from __future__ import annotations

import numpy as np

from .. import ops
from ..nn import functional as F
from ..tensors import Tensor
from ..tensors import randn as _randn
from .inputs import away_from_zero, normal, small
from .records import ErrorCase, OpSpec, Sample

_MASK = np.random.default_rng(3).random((4, 3)) < 0.5


def _on(device, *shape):
    return _randn(*shape, device=device)


def _odd_shape(rng, ndim):
    return small(int(s) for s in rng.integers(1, 6, ndim))


def _permute_draws(rng):
    shape = _odd_shape(rng, int(rng.integers(2, 5)))
    dims = tuple(int(d) for d in rng.permutation(len(shape)))
    return [Sample("permute_random", (normal(*shape),), dims, note=f"{shape}.permute{dims}")]


def _pad_draws(rng):
    shape = _odd_shape(rng, int(rng.integers(2, 5)))
    widths = tuple(int(p) for p in rng.integers(0, 3, 2 * int(rng.integers(1, len(shape) + 1))))
    value = float(np.round(rng.standard_normal(), 2))
    return [Sample("pad_random", (normal(*shape),), (widths,), {"value": value},
                   note=f"{shape} padded by {widths} with {value}")]


def _cat_draws(rng):
    shape = _odd_shape(rng, 3)
    dim = int(rng.integers(-3, 3))
    sizes = [int(s) for s in rng.integers(1, 4, int(rng.integers(2, 4)))]
    shapes = []
    for s in sizes:
        one = list(shape)
        one[dim] = s
        shapes.append(tuple(one))
    return [Sample("cat_random", tuple(normal(*s) for s in shapes), kwargs={"dim": dim},
                   note=f"{shapes} along dim {dim}")]


def _getitem_draws(rng):
    shape = _odd_shape(rng, 3)
    start = [int(rng.integers(0, s)) for s in shape]
    step = [int(rng.integers(1, 3)) for _ in shape]
    index = tuple(slice(a, None, b) for a, b in zip(start, step))
    return [Sample("getitem_random_slices", (normal(*shape),), (index,),
                   note=f"{shape}[{', '.join(f'{a}::{b}' for a, b in zip(start, step))}]")]


SPECS = [
    OpSpec("reshape", Tensor.reshape, (Sample("reshape", (normal(2, 3, 4),), (4, -1)),),
           torch="torch.Tensor.reshape",
           errors=(ErrorCase("reshape", lambda d: _on(d, 2, 3).reshape(4, 2),
                             r"reshape: shape \(4, 2\) is invalid.*6"),)),
    OpSpec("flatten", ops.flatten, (Sample("flatten", (normal(2, 3, 4),), (1,)),),
           torch="torch.flatten"),
    OpSpec("permute", Tensor.permute, (Sample("permute", (normal(2, 3, 4),), (2, 0, 1)),),
           draw=_permute_draws, torch="torch.Tensor.permute",
           errors=(ErrorCase("permute", lambda d: _on(d, 2, 3).permute(0, 0),
                             r"permute: dims"),)),
    OpSpec("transpose", Tensor.transpose, (Sample("transpose", (normal(2, 3, 4),), (0, 2)),),
           torch="torch.Tensor.transpose"),
    OpSpec("getitem", Tensor.__getitem__, (
        Sample("getitem_slice", (normal(3, 5),), ((slice(1, None), slice(None, None, 2)),),
               note="x[1:, ::2]"),
        Sample("getitem_repeated_index", (normal(3, 2),), ([0, 2, 0, 1],),
               note="x[[0, 2, 0, 1]]: gradients of repeated rows add up"),
        Sample("getitem_mask", (away_from_zero(4, 3),), (_MASK,), note="x[mask]"),
    ), draw=_getitem_draws, torch="torch.Tensor.__getitem__",
        errors=(ErrorCase("getitem", lambda d: _on(d, 2, 3)[5],
                          r"getitem: index 5 is invalid.*\(2, 3\)"),)),
    OpSpec("cat", ops.cat, (
        Sample("cat", (normal(2, 1, 3), normal(2, 4, 3), normal(2, 2, 3)), kwargs={"dim": 1}),
    ), draw=_cat_draws, torch="torch.cat", call=lambda f, *xs, **kw: f(list(xs), **kw),
        errors=(ErrorCase("cat", lambda d: ops.cat([_on(d, 2, 3), _on(d, 3, 2)], dim=0),
                          r"cat: sizes"),)),
    OpSpec("pad", F.pad, (
        Sample("pad", (normal(2, 2, 3, 3),), ((1, 2, 0, 1),), {"value": 0.5}),
    ), draw=_pad_draws, torch="torch.nn.functional.pad",
        errors=(ErrorCase("pad", lambda d: F.pad(_on(d, 2, 3), (1, 1, 1)), r"pad: padding"),)),
]
