"""Specs of the activations, softmax and dropout (``minires/ops/activation.py``)."""

from __future__ import annotations

import numpy as np

from ..backend import manual_seed
from ..nn import functional as F
from ..tensors import randn as _randn
from .inputs import away_from_zero, normal, scaled, small
from .records import ErrorCase, OpSpec, Sample

_RELU_KINKS = "x = 0: |x| >= 0.1 (away_from_zero)"


def _on(device, *shape):
    return _randn(*shape, device=device)


def softmax_reference(x, dim):
    """exp(x) / sum(exp(x)) along ``dim``, shifted by the maximum so exp cannot overflow."""
    e = np.exp(x - x.max(axis=dim, keepdims=True))
    return e / e.sum(axis=dim, keepdims=True)


def log_softmax_reference(x, dim):
    shifted = x - x.max(axis=dim, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=dim, keepdims=True))


def _shape(rng):
    return small(int(s) for s in rng.integers(1, 6, int(rng.integers(1, 5))))


def _elementwise_draws(name, maker, *args):
    def draw(rng):
        shape = _shape(rng)
        return [Sample(f"{name}_random_shape", (maker(*shape),), args, note=f"{shape}")]
    return draw


def _softmax_draws(name):
    def draw(rng):
        shape = _shape(rng)
        dim = int(rng.integers(-len(shape), len(shape)))
        return [Sample(f"{name}_random_dim", (scaled(3, *shape),), (dim,),
                       note=f"{shape}, dim={dim}")]
    return draw


def _leaky_draws(rng):
    shape, slope = _shape(rng), float(np.round(rng.uniform(0.01, 0.5), 3))
    return [Sample("leaky_relu_random", (away_from_zero(*shape),), (slope,),
                   note=f"{shape}, negative_slope={slope}")]


def _dropout_call(f, x, **kwargs):
    # dropout draws a mask per call: reseeding makes every call of the check draw the same
    manual_seed(0)
    return f(x, **kwargs)


SPECS = [
    OpSpec("relu", F.relu, (
        Sample("relu", (away_from_zero(3, 4),), note="(3, 4)", tags=frozenset({"course"})),
        Sample("relu_4d", (away_from_zero(2, 3, 4, 4),), note="(2, 3, 4, 4)",
               tags=frozenset({"course"})),
    ), draw=_elementwise_draws("relu", away_from_zero), torch="torch.nn.functional.relu",
        kinks=_RELU_KINKS, reference=lambda x: np.maximum(x, 0)),
    OpSpec("leaky_relu", F.leaky_relu, (
        Sample("leaky_relu", (away_from_zero(3, 4),), (0.2,)),
    ), draw=_leaky_draws, torch="torch.nn.functional.leaky_relu", kinks=_RELU_KINKS,
        reference=lambda x, slope=0.01: np.where(x > 0, x, slope * x)),
    OpSpec("sigmoid", F.sigmoid, (Sample("sigmoid", (normal(3, 4),)),),
           draw=_elementwise_draws("sigmoid", normal), torch="torch.nn.functional.sigmoid",
           reference=lambda x: 1 / (1 + np.exp(-x))),
    OpSpec("tanh", F.tanh, (Sample("tanh", (normal(3, 4),)),),
           draw=_elementwise_draws("tanh", normal), torch="torch.nn.functional.tanh",
           reference=np.tanh),
    OpSpec("softmax", F.softmax, (
        Sample("softmax", (normal(3, 5),), kwargs={"dim": 1}),
        Sample("softmax_dim0", (normal(3, 2, 2),), kwargs={"dim": 0}),
    ), draw=_softmax_draws("softmax"), torch="torch.nn.functional.softmax",
        reference=softmax_reference,
        errors=(ErrorCase("softmax dim", lambda d: F.softmax(_on(d, 2, 3), dim=3),
                          r"softmax: dimension 3"),)),
    OpSpec("log_softmax", F.log_softmax, (
        Sample("log_softmax", (normal(3, 5),), kwargs={"dim": -1}),
    ), draw=_softmax_draws("log_softmax"), torch="torch.nn.functional.log_softmax",
        reference=log_softmax_reference),
    OpSpec("dropout", F.dropout, (
        Sample("dropout", (normal(4, 5),), kwargs={"p": 0.3}, note="p=0.3, one mask"),
    ), torch="torch.nn.functional.dropout", parity=False, call=_dropout_call,
        kinks="none for a fixed mask: every call of the check reseeds to draw the same one",
        errors=(ErrorCase("dropout p", lambda d: F.dropout(_on(d, 2, 3, 8, 8), p=1.5),
                          r"dropout: probability"),)),
]
