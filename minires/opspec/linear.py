"""The spec of linear (``minires/ops/linear.py``): a composite of matmul and add."""

from __future__ import annotations

from ..nn import functional as F
from ..tensors import randn as _randn
from .inputs import normal
from .records import ErrorCase, OpSpec, Sample


def linear_reference(x, w, b=None):
    y = x @ w.T
    return y if b is None else y + b


def _draws(rng):
    batch = tuple(int(s) for s in rng.integers(1, 4, int(rng.integers(0, 3))))
    n_in, n_out = (int(s) for s in rng.integers(1, 6, 2))
    bias = bool(rng.random() < 0.5)
    inputs = (normal(*batch, n_in), normal(n_out, n_in)) + ((normal(n_out),) if bias else ())
    return [Sample("linear_random", inputs, note=f"x {batch + (n_in,)}, weight "
                   f"{(n_out, n_in)}, {'bias' if bias else 'no bias'}")]


SPECS = [
    OpSpec("linear", F.linear, (
        Sample("linear", (normal(4, 3), normal(5, 3), normal(5)),
               note="F.linear (x @ w.T + b), which is built on matmul",
               tags=frozenset({"course"})),
        Sample("linear_no_bias_3d", (normal(2, 4, 3), normal(5, 3))),
    ), draw=_draws, torch="torch.nn.functional.linear", reference=linear_reference,
        errors=(ErrorCase("linear features",
                          lambda d: F.linear(_randn(2, 5, device=d), _randn(3, 4, device=d)),
                          r"linear: input of shape \(2, 5\) has 5 features.*\(3, 4\) expects 4"),)),
]
