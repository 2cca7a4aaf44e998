"""Specs of the reductions: sum, mean, var, max, amax (``minires/ops/reduce.py``)."""

from __future__ import annotations

from .. import ops
from ..tensors import Tensor
from ..tensors import randn as _randn
from .inputs import normal, ramp, small, ties
from .records import ErrorCase, OpSpec, Sample

_MAX_KINKS = ("two equal values: the inputs are a shuffled ramp (values 0.01 apart); the "
              "tie samples (forward and parity only) check that tied maxima share the "
              "gradient equally, as in PyTorch")


def _on(device, *shape):
    return _randn(*shape, device=device)


def _dims(rng, ndim):
    """A random non-empty set of dims, written with negative numbers at times."""
    chosen = sorted(int(d) for d in rng.choice(ndim, int(rng.integers(1, ndim + 1)),
                                               replace=False))
    return tuple(d - ndim if rng.random() < 0.3 else d for d in chosen)


def _reduction_draws(name, maker, one_dim=False):
    def draw(rng):
        shape = small(int(s) for s in rng.integers(2, 5, int(rng.integers(2, 4))))
        dim = _dims(rng, len(shape))
        dim = dim[0] if one_dim else dim
        keepdim = bool(rng.random() < 0.5)
        return [Sample(f"{name}_random_dims", (maker(*shape),),
                       kwargs={"dim": dim, "keepdim": keepdim},
                       note=f"{shape}, dim={dim}, keepdim={keepdim}")]
    return draw


def _max_call(f, x, **kwargs):
    # max(x, dim) returns (values, indices) in both frameworks: the values are the op
    return f(x, **kwargs).values if "dim" in kwargs else f(x, **kwargs)


SPECS = [
    OpSpec("sum", Tensor.sum, (
        Sample("sum_all", (normal(3, 4),)),
        Sample("sum_dim_keepdim", (normal(2, 3, 4),), kwargs={"dim": (0, 2), "keepdim": True}),
    ), draw=_reduction_draws("sum", normal), torch="torch.Tensor.sum",
        errors=(ErrorCase("sum dim", lambda d: _on(d, 2, 3).sum(dim=2),
                          r"sum: dimension 2 is out of range"),)),
    OpSpec("mean", Tensor.mean, (Sample("mean_dim", (normal(2, 3, 4),), kwargs={"dim": 1}),),
           draw=_reduction_draws("mean", normal), torch="torch.Tensor.mean"),
    OpSpec("var", Tensor.var, (Sample("var", (normal(5, 3),), kwargs={"dim": 0}),),
           draw=_reduction_draws("var", normal), torch="torch.Tensor.var"),
    OpSpec("max", Tensor.max, (
        Sample("max_all", (ramp(3, 4),)),
        Sample("max_dim", (ramp(3, 4, 2),), kwargs={"dim": 1}),
        Sample("max_dim_keepdim", (ramp(3, 4),), kwargs={"dim": -1, "keepdim": True}),
    ), draw=_reduction_draws("max", ramp, one_dim=True), torch="torch.Tensor.max",
        call=_max_call, kinks=_MAX_KINKS,
        errors=(ErrorCase("max over a tuple of dims", lambda d: _on(d, 2, 3, 4).max(dim=(0, 2)),
                          r"max: dim must be an int, got \(0, 2\).*use amax\(x, dim=\(0, 2\)\)"),)),
    OpSpec("amax", ops.amax, (
        Sample("amax_dims", (ramp(3, 4, 2),), kwargs={"dim": (0, 2)}),
        Sample("amax_dims_keepdim", (ramp(2, 3, 4),), kwargs={"dim": (-1, 1), "keepdim": True}),
        Sample("amax_ties_dims", (ties(3, 4, 2),), kwargs={"dim": (0, 2)}, gradcheck=False,
               note="many ties: the gradient is shared equally"),
        Sample("amax_ties_dims_keepdim", (ties(3, 4, 2),),
               kwargs={"dim": (-1, 1), "keepdim": True}, gradcheck=False),
        Sample("amax_ties_all", (ties(3, 4, 2),), kwargs={"dim": ()}, gradcheck=False),
    ), draw=_reduction_draws("amax", ramp), torch="torch.amax", kinks=_MAX_KINKS,
        errors=(ErrorCase("amax repeated dim", lambda d: ops.amax(_on(d, 2, 3), dim=(1, -1)),
                          r"amax: dim \(1, -1\) lists a dimension twice"),)),
]
