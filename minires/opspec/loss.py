"""The specs of cross_entropy, nll_loss and mse_loss (``minires/ops/loss.py``)."""

from __future__ import annotations

import numpy as np

from ..nn import functional as F
from ..tensors import ones as _ones
from ..tensors import randn as _randn
from .inputs import class_weight, normal, scaled, small
from .kernels import Case
from .kernels import normal as kernel_normal
from .records import ErrorCase, OpSpec, Sample

TARGET = np.array([2, 0, 4, 1, 3, 3])  # for (6, 5) logits
SPATIAL_TARGET = np.random.default_rng(1).integers(0, 3, (2, 4, 5))  # for (2, 3, 4, 5)
IGNORED = np.array([2, -100, 4, 1, -100, 3])  # -100: PyTorch's default ignore_index
SPATIAL_IGNORED = np.where(np.random.default_rng(2).random((2, 4, 5)) < 0.2, 7,
                           SPATIAL_TARGET)  # with ignore_index=7
ALL_IGNORED = np.full(4, -100)  # 'mean' over no target: NaN, with a zero gradient

_COURSE = frozenset({"course"})


# --------------------------------------------------------------------------- references


def _rows(x, target):
    """(N, C, d1, ...) scores and (N, d1, ...) targets -> (M, C), (M,) and the shape of
    a 'none' result; an unbatched (C,) input takes a 0-d target."""
    target = np.asarray(target)
    if x.ndim == 1:
        return x[None], target.reshape(1), ()
    return np.moveaxis(x, 1, -1).reshape(-1, x.shape[1]), target.reshape(-1), target.shape


def _reduce(loss, total, shape, reduction):
    """Reduce per-row losses as nll_loss does: 'mean' divides by the total weight of
    the counted targets (0/0 = nan when every target is ignored, as in PyTorch)."""
    if reduction == "none":
        return loss.reshape(shape)
    if reduction == "sum":
        return np.array(loss.sum())
    with np.errstate(invalid="ignore"):
        return np.array(loss.sum() / total)


def nll_loss_reference(x, target, weight=None, ignore_index=-100, reduction="mean"):
    """loss_n = -weight[t_n] * x[n, t_n], 0 where t_n == ignore_index; 'mean' divides by
    the total weight of the counted targets (NaN when there is none), one row at a time."""
    rows, t, shape = _rows(x, target)
    w = np.ones(rows.shape[1]) if weight is None else np.asarray(weight, dtype=np.float64)
    loss, total = np.zeros(len(t)), 0.0
    for n in range(len(t)):
        if t[n] != ignore_index:
            loss[n] = -w[t[n]] * rows[n, t[n]]
            total += w[t[n]]
    return _reduce(loss, total, shape, reduction)


def cross_entropy_reference(x, target, weight=None, ignore_index=-100, reduction="mean",
                            label_smoothing=0.0):
    """PyTorch's definition: (1 - s) * nll_loss(log_softmax(x)) + s / C * the smoothing
    term -sum_c weight[c] * log_softmax(x)[n, c] of each counted row, reduced like
    nll_loss (its 'mean' divides by the same total weight of the counted targets)."""
    rows, t, shape = _rows(x, target)
    C = rows.shape[1]
    shifted = rows - rows.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    w = np.ones(C) if weight is None else np.asarray(weight, dtype=np.float64)
    nll = nll_loss_reference(logp, t, weight, ignore_index, "none")
    smooth, total = np.zeros(len(t)), 0.0
    for n in range(len(t)):
        if t[n] != ignore_index:
            smooth[n] = -(w * logp[n]).sum()
            total += w[t[n]]
    loss = (1 - label_smoothing) * nll + label_smoothing / C * smooth
    return _reduce(loss, total, shape, reduction)


# --------------------------------------------------------------------------- samples


def _draw_class_problem(rng, weighted):
    """Odd shapes, (N, C) or per-pixel (N, C, d1[, d2]) or unbatched (C,); some targets
    ignored (the default -100 or another index); class weights if ``weighted``."""
    C = int(rng.integers(2, 7))
    layout = rng.choice(["rows", "pixels", "unbatched"], p=[0.5, 0.35, 0.15])
    if layout == "unbatched":
        shape, tshape = (C,), ()
    elif layout == "rows":
        shape = (int(rng.integers(1, 8)), C)
        tshape = shape[:1]
    else:
        extra = tuple(int(s) for s in rng.integers(1, 4, int(rng.integers(1, 3))))
        shape = small((int(rng.integers(1, 3)), C) + extra)
        C, tshape = shape[1], shape[:1] + shape[2:]
    ignore_index = -100 if rng.random() < 0.5 else int(rng.integers(0, C + 3))
    t = rng.integers(0, C, tshape)
    t = np.where(rng.random(tshape) < 0.25, ignore_index, t)
    if t.size:  # at least one counted target: a mean over none is NaN (a sample of its own)
        t.reshape(-1)[0] = (ignore_index + 1) % C if 0 <= ignore_index < C else 0
    weight = np.round(rng.uniform(0.2, 3.0, C), 2) if weighted else None
    settings = {"ignore_index": ignore_index}
    if weight is not None:
        settings["weight"] = weight
    what = (f"{shape}, ignore_index={ignore_index}, "
            f"{'weights' if weight is not None else 'no weights'}")
    return shape, np.asarray(t), settings, what


def _cross_entropy_draws(rng):
    """Every reduction with and without label smoothing; each reduction once with class
    weights and once without (which of the two is drawn)."""
    out = []
    flip = bool(rng.random() < 0.5)
    for i, reduction in enumerate(("mean", "sum", "none")):
        for smoothed in (False, True):
            weighted = (i % 2 == smoothed) != flip
            shape, t, settings, what = _draw_class_problem(rng, weighted)
            s = float(np.round(rng.uniform(0.05, 0.5), 2)) if smoothed else 0.0
            scale = float(rng.choice([1.0, 3.0]))
            out.append(Sample(f"cross_entropy_random_{reduction}{'_smoothing' if smoothed else ''}",
                              (scaled(scale, *shape),), (t,),
                              {**settings, "reduction": reduction, "label_smoothing": s},
                              note=f"{what}, reduction={reduction!r}, label_smoothing={s}"))
    return out


def _nll_draws(rng):
    out = []
    flip = bool(rng.random() < 0.5)
    for i, reduction in enumerate(("mean", "sum", "none")):
        shape, t, settings, what = _draw_class_problem(rng, (i % 2 == 0) != flip)
        out.append(Sample(f"nll_loss_random_{reduction}", (normal(*shape),), (t,),
                          {**settings, "reduction": reduction},
                          note=f"{what}, reduction={reduction!r}"))
    return out


def _mse_draws(rng):
    shape = small(int(s) for s in rng.integers(1, 5, int(rng.integers(1, 4))))
    reduction = str(rng.choice(["mean", "sum", "none"]))
    return [Sample("mse_loss_random", (normal(*shape), normal(*shape)),
                   kwargs={"reduction": reduction}, note=f"{shape}, reduction={reduction!r}")]


# --------------------------------------------------------------------------- kernels


def _kernel_case(N, C, scale, smoothing):
    def make(xp, dtype, rng):
        x = kernel_normal(xp, dtype, rng, N, C) * dtype(scale)
        target = xp.asarray(rng.integers(0, C, N).astype(np.int64))
        return x, target, smoothing
    return Case("cross_entropy_forward", f"{N}x{C}-scale{scale}-smooth{smoothing}", make)


def kernel_cases() -> list:
    return [_kernel_case(7, 10, 3.0, 0.0), _kernel_case(7, 10, 3.0, 0.1),
            _kernel_case(5, 1000, 1.0, 0.0), _kernel_case(9, 3, 100.0, 0.2)]


# --------------------------------------------------------------------------- errors


def _logits(d):
    return _randn(3, 4, device=d)


def _t(d, *values):
    return np.array(values)  # targets as a NumPy array, as a user may pass them


CROSS_ENTROPY_ERRORS = (
    ErrorCase("cross_entropy range", lambda d: F.cross_entropy(_logits(d), _t(d, 0, 4, 1)),
              r"cross_entropy: target values must be in \[0, 3\]"),
    ErrorCase("cross_entropy negative", lambda d: F.cross_entropy(_logits(d), _t(d, 0, -1, 1)),
              r"cross_entropy: target values"),
    ErrorCase("cross_entropy float target",
              lambda d: F.cross_entropy(_logits(d), _randn(3, device=d)),
              r"cross_entropy: expected integer class indices.*float32"),
    ErrorCase("cross_entropy shape", lambda d: F.cross_entropy(_logits(d), _t(d, 0, 1)),
              r"cross_entropy: target of shape \(2,\) does not match logits of shape \(3, 4\)"),
    ErrorCase("cross_entropy reduction",
              lambda d: F.cross_entropy(_logits(d), _t(d, 0, 1, 2), reduction="avg"),
              r"reduction"),
    ErrorCase("cross_entropy weight shape",
              lambda d: F.cross_entropy(_logits(d), _t(d, 0, 1, 2), weight=_ones(3, device=d)),
              r"cross_entropy: weight should be defined for all 4 classes .*shape \(3,\)"),
    ErrorCase("cross_entropy ignore_index type",
              lambda d: F.cross_entropy(_logits(d), _t(d, 0, 1, 2), ignore_index=1.5),
              r"ignore_index must be an int"),
    ErrorCase("cross_entropy weight on another device",
              lambda d: F.cross_entropy(_logits(d), _t(d, 0, 1, 2), weight=_ones(4)),
              r"cross_entropy: weight is on cpu but the input is on cuda", devices=True),
)

NLL_LOSS_ERRORS = (
    ErrorCase("nll_loss range", lambda d: F.nll_loss(_logits(d), _t(d, 0, 4, 1)),
              r"nll_loss: target values must be in \[0, 3\] for 4 classes \(or equal "
              r"ignore_index=-100\), got 4 at position 1"),
    ErrorCase("nll_loss -1 is not ignored", lambda d: F.nll_loss(_logits(d), _t(d, 0, -1, 1)),
              r"nll_loss: target values .* got -1 at position 1"),
    ErrorCase("nll_loss -100 with another ignore_index",
              lambda d: F.nll_loss(_randn(3, 200, device=d), _t(d, 0, -100, 1), ignore_index=3),
              r"got -100 at position 1"),
    ErrorCase("nll_loss spatial shape",
              lambda d: F.nll_loss(_randn(2, 3, 4, 4, device=d),
                                   np.zeros((2, 4, 5), int)),
              r"nll_loss: target of shape \(2, 4, 5\) does not match input of shape "
              r"\(2, 3, 4, 4\) \(expected \(2, 4, 4\)\)"),
    ErrorCase("nll_loss float target", lambda d: F.nll_loss(_logits(d), _randn(3, device=d)),
              r"nll_loss: expected integer class indices"),
)

_W5, _W3 = class_weight(5), class_weight(3)

SPECS = [
    OpSpec("cross_entropy", F.cross_entropy, (
        Sample("cross_entropy", (normal(6, 5),), (TARGET,), note="mean over (6, 5) logits",
               tags=_COURSE),
        Sample("cross_entropy_sum_smoothing", (normal(6, 5),), (TARGET,),
               {"reduction": "sum", "label_smoothing": 0.2},
               note="reduction='sum', label_smoothing=0.2", tags=_COURSE),
        Sample("cross_entropy_none", (normal(6, 5),), (TARGET,), {"reduction": "none"},
               note="reduction='none'", tags=_COURSE),
        Sample("cross_entropy_spatial", (normal(2, 3, 4, 5),), (SPATIAL_TARGET,),
               note="per-pixel logits (2, 3, 4, 5)", tags=_COURSE),
        Sample("cross_entropy_ignore_index_smoothing", (normal(6, 5),), (IGNORED,),
               {"label_smoothing": 0.3}),
        Sample("cross_entropy_ignore_index_none", (normal(6, 5),), (IGNORED,),
               {"reduction": "none"}),
        Sample("cross_entropy_weight", (normal(6, 5),), (TARGET,), {"weight": _W5}),
        Sample("cross_entropy_weight_smoothing_ignore_index", (normal(6, 5),), (IGNORED,),
               {"weight": _W5, "label_smoothing": 0.2}),
        Sample("cross_entropy_weight_smoothing_none", (normal(6, 5),), (IGNORED,),
               {"weight": _W5, "label_smoothing": 0.2, "reduction": "none"}),
        Sample("cross_entropy_spatial_weight_ignore_index", (normal(2, 3, 4, 5),),
               (SPATIAL_IGNORED,), {"weight": _W3, "ignore_index": 7, "label_smoothing": 0.1,
                                    "reduction": "sum"}),
        Sample("cross_entropy_unbatched_weight", (normal(5),), (np.array(3),), {"weight": _W5},
               note="one (5,) prediction, a 0-d target"),
        Sample("cross_entropy_all_ignored", (normal(4, 5),), (ALL_IGNORED,),
               {"label_smoothing": 0.1}, gradcheck=False,
               note="every target ignored: NaN, a zero gradient and no warning"),
        Sample("cross_entropy_all_ignored_weight", (normal(4, 5),), (ALL_IGNORED,),
               {"weight": _W5, "label_smoothing": 0.1}, gradcheck=False),
        Sample("cross_entropy_devices", (normal(32, 10),), (np.arange(32) % 10,),
               {"label_smoothing": 0.1}, gradcheck=False, tags=frozenset({"devices"}),
               note="(32, 10) logits, label_smoothing=0.1"),
    ), draw=_cross_entropy_draws, torch="torch.nn.functional.cross_entropy",
        reference=cross_entropy_reference, errors=CROSS_ENTROPY_ERRORS,
        kernel_cases=kernel_cases, kinks="none: smooth in the logits"),
    OpSpec("nll_loss", F.nll_loss, (
        Sample("nll_loss", (normal(6, 5),), (TARGET,)),
        Sample("nll_loss_weight_ignore_index", (normal(6, 5),), (IGNORED,), {"weight": _W5}),
        Sample("nll_loss_spatial_ignore_index", (normal(2, 3, 4, 5),), (SPATIAL_IGNORED,),
               {"ignore_index": 7}),
        Sample("nll_loss_spatial_weight_none", (normal(2, 3, 4, 5),), (SPATIAL_TARGET,),
               {"weight": _W3, "reduction": "none"}),
        Sample("nll_loss_unbatched_none", (normal(5),), (np.array(1),), {"reduction": "none"},
               note="one (5,) prediction, a 0-d target"),
        Sample("nll_loss_all_ignored", (normal(4, 5),), (ALL_IGNORED,), gradcheck=False,
               note="every target ignored: NaN, a zero gradient and no warning"),
        Sample("nll_loss_all_ignored_weight", (normal(4, 5),), (ALL_IGNORED,), {"weight": _W5},
               gradcheck=False),
    ), draw=_nll_draws, torch="torch.nn.functional.nll_loss", reference=nll_loss_reference,
        errors=NLL_LOSS_ERRORS, kinks="none: linear in the input"),
    OpSpec("mse_loss", F.mse_loss, (Sample("mse_loss", (normal(3, 4), normal(3, 4))),),
           draw=_mse_draws, torch="torch.nn.functional.mse_loss"),
]
