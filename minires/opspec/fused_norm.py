"""The spec of the fast path's fused BatchNorm (+ residual) (+ ReLU)
(``minires/ops/fused_norm.py``)."""

from __future__ import annotations

import numpy as np

from ..ops import fast_conv, fused_norm
from .inputs import normal
from .norm import batch_norm_reference
from .records import OpSpec, Sample


def call(f, x, weight=None, bias=None, residual=None, *, running_mean=None, running_var=None,
         **kwargs):
    return f(x, running_mean, running_var, weight, bias, residual=residual, **kwargs)


def batch_norm_act_reference(x, running_mean, running_var, weight=None, bias=None,
                             training=False, momentum=0.1, eps=1e-5, residual=None, relu=True):
    """relu(batch_norm(x) + residual), each part optional."""
    y = batch_norm_reference(x, running_mean, running_var, weight, bias, training, momentum,
                             eps)
    y = y if residual is None else y + residual
    return np.maximum(y, 0) if relu else y


def _between_fast_convs(f, x, w1, b, w2):
    # conv -> BatchNorm (no weight) + the block's input -> ReLU -> conv: gradients arrive
    # on grids from both sides
    return fast_conv.conv2d(f(fast_conv.conv2d(x, w1, padding=1), None, None, None, b, True,
                              residual=x), w2, padding=1)


SPECS = [
    OpSpec("batch_norm_act", fused_norm.batch_norm_act, (
        Sample("batch_norm_act_train_residual_relu",
               (normal(3, 2, 4, 3), normal(2), normal(2), normal(3, 2, 4, 3)),
               kwargs={"training": True}),
        Sample("batch_norm_act_train_running_stats_no_relu",
               (normal(2, 3, 3, 4), normal(3), normal(3)),
               kwargs={"running_mean": np.zeros(3), "running_var": np.ones(3),
                       "training": True, "relu": False}),
        Sample("batch_norm_act_eval_relu", (normal(3, 2, 3, 3), normal(2), normal(2)),
               kwargs={"running_mean": np.array([0.1, -0.2]),
                       "running_var": np.array([0.5, 1.5]), "training": False}),
        Sample("batch_norm_act_eval_residual_relu",
               (normal(4, 3, 3, 5), normal(3), normal(3), normal(4, 3, 3, 5)),
               kwargs={"running_mean": np.array([0.2, -0.1, 0.3]),
                       "running_var": np.array([0.5, 1.5, 2.0]), "training": False}),
        Sample("batch_norm_act_between_fast_convs",
               (normal(2, 2, 4, 4), normal(2, 2, 3, 3), normal(2), normal(2, 2, 3, 3)),
               call=_between_fast_convs, mixed=True),
    ), call=call, reference=batch_norm_act_reference,
        kinks="the ReLU at 0: the fixed samples' values before the ReLU keep clear of it "
              "(at least 0.01 away in the samples without convolutions); no random draws, "
              "which could land next to it"),
]
