"""Specs of the elementwise arithmetic, matmul, casts and moves (``minires/ops/basic.py``)."""

from __future__ import annotations

import numpy as np

from .. import ops
from ..tensors import Tensor
from ..tensors import randn as _randn
from .inputs import away_from_zero, normal, positive, small
from .records import ErrorCase, OpSpec, Sample


def _on(device, *shape):
    return _randn(*shape, device=device)


def _shapes(rng, ndim_max=3):
    """Two broadcastable shapes of odd sizes, some axes 1 on one side only."""
    ndim = int(rng.integers(1, ndim_max + 1))
    a = list(small(int(s) for s in rng.integers(2, 6, ndim)))
    b = [1 if rng.random() < 0.3 else s for s in a]
    a = [1 if (rng.random() < 0.3 and s != 1) else s for s in a]
    return tuple(a), tuple(b[int(rng.integers(0, ndim)):])  # b may have fewer axes


def _binary_draws(name, b_maker=normal):
    def draw(rng):
        a, b = _shapes(rng)
        return [Sample(f"{name}_random_broadcast", (normal(*a), b_maker(*b)),
                       note=f"{a} and {b}, broadcast")]
    return draw


def _matmul_draws(rng):
    batch = tuple(int(s) for s in rng.integers(1, 4, int(rng.integers(0, 3))))
    M, K, N = (int(s) for s in rng.integers(1, 5, 3))
    return [Sample("matmul_random", (normal(*batch, M, K), normal(K, N)),
                   note=f"{batch + (M, K)} @ {(K, N)}")]


SPECS = [
    OpSpec("add", Tensor.__add__, (
        Sample("add", (normal(3, 1, 4), normal(2, 4)), note="(3, 1, 4) + (2, 4), broadcast"),
    ), draw=_binary_draws("add"), torch="torch.Tensor.__add__",
        errors=(ErrorCase("add broadcast", lambda d: _on(d, 2, 3) + _on(d, 4),
                          r"add: shapes \(2, 3\) and \(4,\)"),
                ErrorCase("add across devices", lambda d: _on(d, 2, 3) + _on("cpu", 2, 3),
                          r"Add: expected all tensors to be on the same device", devices=True))),
    OpSpec("sub", Tensor.__sub__, (
        Sample("sub", (normal(2, 4), normal(3, 1, 4))),
    ), draw=_binary_draws("sub"), torch="torch.Tensor.__sub__"),
    OpSpec("mul", Tensor.__mul__, (
        Sample("mul", (normal(3, 1, 4), normal(1, 5, 4))),
    ), draw=_binary_draws("mul"), torch="torch.Tensor.__mul__"),
    OpSpec("div", Tensor.__truediv__, (
        Sample("div", (normal(3, 4), positive(4))),
    ), draw=_binary_draws("div", positive), torch="torch.Tensor.__truediv__",
        kinks="b = 0: the divisors are positive (0.5 to 2)"),
    OpSpec("neg", Tensor.__neg__, (Sample("neg", (normal(3, 4),)),),
           torch="torch.Tensor.__neg__"),
    OpSpec("pow", Tensor.__pow__, (
        Sample("pow", (positive(3, 4),), (2.5,), note="x ** 2.5, x > 0"),
        Sample("pow_int", (normal(3, 4),), (3,), note="x ** 3, any sign"),
    ), torch="torch.Tensor.__pow__",
        kinks="x = 0 for a fractional exponent: its inputs are positive (0.5 to 2)"),
    OpSpec("exp", ops.exp, (Sample("exp", (normal(3, 4),)),), torch="torch.exp"),
    OpSpec("log", ops.log, (Sample("log", (positive(3, 4),)),), torch="torch.log",
           kinks="x <= 0: the inputs are positive (0.5 to 2)"),
    OpSpec("sqrt", ops.sqrt, (Sample("sqrt", (positive(3, 4),)),), torch="torch.sqrt",
           kinks="x = 0: the inputs are positive (0.5 to 2)"),
    OpSpec("abs", ops.abs, (Sample("abs", (away_from_zero(3, 4),)),), torch="torch.abs",
           kinks="x = 0: |x| >= 0.1 (away_from_zero)"),
    OpSpec("matmul", ops.matmul, (
        Sample("matmul", (normal(3, 4), normal(4, 5)), note="(3, 4) @ (4, 5)",
               tags=frozenset({"course"})),
        Sample("matmul_batched_broadcast", (normal(2, 1, 3, 4), normal(5, 4, 2)),
               note="batched with broadcasting: (2, 1, 3, 4) @ (5, 4, 2)",
               tags=frozenset({"course"})),
        Sample("matmul_vec_mat", (normal(4), normal(2, 4, 3)),
               note="vector @ batched matrix: (4,) @ (2, 4, 3)", tags=frozenset({"course"})),
        Sample("matmul_mat_vec", (normal(2, 3, 4), normal(4)),
               note="batched matrix @ vector: (2, 3, 4) @ (4,)", tags=frozenset({"course"})),
        Sample("matmul_dot", (normal(4), normal(4)), note="dot product: (4,) @ (4,)",
               tags=frozenset({"course"})),
    ), draw=_matmul_draws, torch="torch.matmul",
        errors=(ErrorCase("matmul shapes", lambda d: _on(d, 2, 3) @ _on(d, 4, 5),
                          r"matmul: shapes \(2, 3\) and \(4, 5\)"),)),
    OpSpec("cast", ops.cast, (Sample("cast", (normal(3),), (np.float64,)),),
           torch="torch.Tensor.to", parity=False),  # PyTorch takes a torch.dtype
    OpSpec("Tensor.to", Tensor.to, (Sample("to_device", (normal(3),),
                                           note="to the tensor's own device"),),
           torch="torch.Tensor.to", call=lambda f, a: f(a, a.device),
           errors=(ErrorCase("device", lambda d: _on(d, 2).to("tpu"),
                             r"unknown device 'tpu'"),)),
    OpSpec("to_device", ops.to_device, (Sample("to_device_op", (normal(3),),
                                               note="to the tensor's own device"),),
           call=lambda f, a: f(a, a.device)),
]
