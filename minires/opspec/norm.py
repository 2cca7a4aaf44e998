"""The spec of batch_norm (``minires/ops/norm.py``): samples, formula, errors, kernels."""

from __future__ import annotations

import numpy as np

from ..nn import functional as F
from ..tensors import ones as _ones
from ..tensors import randn as _randn
from ..tensors import zeros as _zeros
from .inputs import normal, scaled, small
from .kernels import Case
from .kernels import normal as kernel_normal
from .records import ErrorCase, OpSpec, Sample

_RUNNING_MEAN = np.array([0.1, -0.2, 0.3])
_RUNNING_VAR = np.array([0.5, 1.5, 2.0])


def call(f, x, weight=None, bias=None, *, running_mean=None, running_var=None, **kwargs):
    """The samples' tensors are (x, weight, bias); F.batch_norm takes the running
    statistics between x and the weight."""
    return f(x, running_mean, running_var, weight, bias, **kwargs)


# --------------------------------------------------------------------------- references


def batch_norm_reference(x, running_mean, running_var, weight=None, bias=None, training=False,
                         momentum=0.1, eps=1e-5):
    """(x - mean) / sqrt(var + eps) * weight + bias per channel (axis 1), with the batch's
    statistics in training (and the running ones updated in place, the variance
    unbiased, as in PyTorch) or the running ones in evaluation."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    if training:
        mean, var = x.mean(axis=axes), x.var(axis=axes)
        if running_mean is not None:
            M = x.size // x.shape[1]
            running_mean *= 1 - momentum
            running_mean += momentum * mean
            running_var *= 1 - momentum
            running_var += momentum * var * M / (M - 1)
    else:
        mean, var = running_mean, running_var
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    if weight is not None:
        y = y * weight.reshape(shape)
    return y if bias is None else y + bias.reshape(shape)


def batch_norm_composite(x, w, b, eps=1e-5):
    """Training-mode BatchNorm from minires's elementwise ops and reductions only (on
    tensors), so its gradient comes from their backward passes, not from BatchNorm's."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean = x.mean(dim=axes, keepdim=True)
    xc = x - mean
    var = (xc * xc).mean(dim=axes, keepdim=True)
    return xc / (var + eps).sqrt() * w.reshape(*shape) + b.reshape(*shape)


# --------------------------------------------------------------------------- samples


def _draws(rng):
    out = []
    for training in (True, False):
        shape = small((int(rng.integers(2, 6)), int(rng.integers(1, 4))) +
                      tuple(int(s) for s in rng.integers(1, 5, int(rng.integers(0, 3)))))
        C = shape[1]
        affine = bool(rng.random() < 0.7)
        momentum = float(np.round(rng.uniform(0.05, 0.5), 2))
        eps = float(10.0 ** -rng.integers(2, 6))
        stats = {"running_mean": np.round(rng.standard_normal(C), 2),
                 "running_var": np.round(rng.uniform(0.5, 2.0, C), 2)}
        inputs = (scaled(2, *shape),) + ((normal(C), normal(C)) if affine else ())
        out.append(Sample(f"batch_norm_random_{'train' if training else 'eval'}", inputs,
                          kwargs={**stats, "training": training, "momentum": momentum,
                                  "eps": eps},
                          note=f"{shape}, {'training' if training else 'evaluation'}, "
                          f"{'affine' if affine else 'no weight and bias'}, "
                          f"momentum {momentum}, eps {eps:g}"))
    return out


# --------------------------------------------------------------------------- kernels


def _kernel_case(shape, training):
    def make(xp, dtype, rng):
        axes = (0,) + tuple(range(2, len(shape)))
        x = rng.standard_normal(shape) * 3 + 1
        xhat = (x - x.mean(axis=axes, keepdims=True)) / x.std(axis=axes, keepdims=True)
        param = (1, shape[1]) + (1,) * (len(shape) - 2)
        scale = rng.uniform(0.5, 2, param)
        return (kernel_normal(xp, dtype, rng, *shape), xp.asarray(xhat.astype(dtype)),
                xp.asarray(scale.astype(dtype)), training)
    label = "x".join(map(str, shape)) + ("-train" if training else "-eval")
    return Case("batch_norm_backward", label, make)


def kernel_cases() -> list:
    return [_kernel_case(shape, training) for shape in ((4, 5, 3, 3), (6, 5), (3, 4, 7))
            for training in (True, False)]


def _x4(d):
    return _randn(2, 3, 8, 8, device=d)


SPECS = [
    OpSpec("batch_norm", F.batch_norm, (
        Sample("batch_norm_train_4d", (normal(4, 3, 3, 3), normal(3), normal(3)),
               kwargs={"training": True}, note="training, (4, 3, 3, 3) images",
               tags=frozenset({"course"})),
        Sample("batch_norm_train_2d_running_stats", (normal(6, 3), normal(3), normal(3)),
               kwargs={"running_mean": np.zeros(3), "running_var": np.ones(3),
                       "training": True},
               note="training, (6, 3) features (BatchNorm1d)", tags=frozenset({"course"})),
        Sample("batch_norm_eval", (normal(4, 3, 2, 2), normal(3), normal(3)),
               kwargs={"running_mean": _RUNNING_MEAN, "running_var": _RUNNING_VAR,
                       "training": False},
               note="evaluation mode (running statistics)", tags=frozenset({"course"})),
        Sample("batch_norm_no_affine", (normal(5, 2, 3),), kwargs={"training": True},
               note="no weight and bias, (5, 2, 3)", tags=frozenset({"course"})),
        Sample("batch_norm_devices", (normal(8, 16, 7, 6), normal(16), normal(16)),
               kwargs={"training": True}, gradcheck=False, tags=frozenset({"devices"}),
               note="(8, 16, 7, 6), training"),
    ), draw=_draws, torch="torch.nn.functional.batch_norm", call=call,
        reference=batch_norm_reference, kernel_cases=kernel_cases,
        kinks="none: smooth for any input with more than one value per channel",
        errors=(
            ErrorCase("batch_norm channels",
                      lambda d: F.batch_norm(_x4(d), _zeros(4, device=d), _ones(4, device=d),
                                             training=True),
                      r"batch_norm: running_mean has shape \(4,\) .*\(2, 3, 8, 8\) has 3 "
                      r"channels"),
            ErrorCase("batch_norm one value",
                      lambda d: F.batch_norm(_randn(1, 3, device=d), None, None, training=True),
                      r"batch_norm: expected more than 1 value per channel.*\(1, 3\)"),
            ErrorCase("batch_norm eval no stats", lambda d: F.batch_norm(_x4(d), None, None),
                      r"batch_norm: running"),
            ErrorCase("batch_norm running statistics on another device",
                      lambda d: F.batch_norm(_x4(d), _zeros(3), _ones(3), training=True),
                      r"BatchNorm: expected all tensors to be on the same device",
                      devices=True),
        )),
]
