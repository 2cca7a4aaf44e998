"""The grader's checks, run as a script in a fresh interpreter on the student's minires.

``minires grade`` starts ``python checks.py`` with ``PYTHONPATH`` pointing at the
student's project, so ``import minires`` below imports the STUDENT's package, while
this file and the gradient checker come from the instructor's installation (the
checker's source is loaded by path and bound to the student's ``minires``). Every check
runs on the CPU in float64 unless it says otherwise, is worth one point, and turns any
exception into a message; the results go to a JSON file.

The sample inputs and the loop references come from the op specs (``minires/opspec``)
of the instructor's installation, loaded by path like the checker and bound to the
student's ``minires``: the gradient checks are the specs' samples tagged ``course``
plus settings drawn afresh for every run from ``--seed`` (asymmetric stride, padding
and dilation, every reduction with and without label smoothing, odd shapes); the tests
compare with the specs' loops.

Only the student's work scores: each graded op's ``Function.backward`` is wrapped
(``watch``), and a check that passes without running it earns no point. The wrapper
also compares gy and the arrays forward saved before and after each call, so an
in-place write is reported as such, naming the op, not as a wrong gradient.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
import traceback
import zlib

# This file runs by path: its folder (inside the instructor's package) must not shadow
# anything the student's code imports.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import numpy as np  # noqa: E402

mr = F = gradcheck = opspec = None  # bound by bind() once the student's minires is imported
SEED = 0  # the run's seed for every drawn setting (bind)

# assignment op -> the specs whose 'course' samples it grades (F.linear is built on matmul)
GRADED_SPECS = {"matmul": ("matmul", "linear")}

# assignment op -> (module, Function): the backward the student writes; every scored
# check of the op must run it
FUNCTIONS = {"matmul": ("minires.ops.basic", "Matmul"),
             "relu": ("minires.ops.activation", "ReLU"),
             "cross_entropy": ("minires.ops.loss", "CrossEntropy"),
             "conv2d": ("minires.ops.conv", "Conv2d"),
             "max_pool2d": ("minires.ops.pool", "MaxPool2d"),
             "batch_norm": ("minires.ops.norm", "BatchNorm")}


def bind(minires, checker, specs, seed: int = 0) -> None:
    """Use ``minires`` (the student's), ``checker`` (gradcheck), ``specs`` (the op specs
    bound to that minires) and ``seed`` (of the drawn settings) in every check."""
    global mr, F, gradcheck, opspec, SEED
    mr, F, gradcheck, opspec, SEED = minires, minires.nn.functional, checker, specs, seed


def t64(array, requires_grad=True):
    return mr.tensor(np.asarray(array, dtype=np.float64), dtype=mr.float64,
                     requires_grad=requires_grad)


def sample_check(spec, sample):
    """A check: the float64 gradient check of one sample of an op spec."""
    def check():
        inputs = [t64(a) for a in sample.arrays()]
        gradcheck(lambda *tensors: spec.run(sample, tensors), inputs)
    return check


def close(actual, expected, what, atol=1e-10, rtol=1e-8):
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    if actual.shape != expected.shape:
        raise AssertionError(f"{what}: shape {actual.shape}, expected {expected.shape}")
    if not np.allclose(actual, expected, atol=atol, rtol=rtol):
        worst = np.unravel_index(np.argmax(np.abs(actual - expected)), actual.shape)
        raise AssertionError(f"{what}: differs from the reference, worst at "
                             f"{tuple(int(i) for i in worst)}: {actual[worst]:.10g} vs "
                             f"{expected[worst]:.10g}")


def grad_of(tensor, what):
    if tensor.grad is None:
        raise AssertionError(f"{what}: no gradient arrived (.grad is None)")
    return tensor.grad.numpy()


def gradient_into(op, x, upstream):
    """The gradient ``op``'s backward hands to its input: caught by a hook on a non-leaf
    copy of ``x``, so its dtype is the backward's own (leaves are cast)."""
    seen = {}
    h = x * 1.0
    h.register_hook(lambda g: seen.setdefault("g", g))
    op(h).backward(upstream)
    if "g" not in seen:
        raise AssertionError("no gradient reached the input")
    return seen["g"]


def float32_check(op, shape):
    def check():
        rng = np.random.default_rng(3)
        x = mr.tensor(opspec.inputs.normal(*shape)(rng).astype(np.float32), requires_grad=True)
        y = op(x)
        g = gradient_into(op, x, rng.standard_normal(y.shape).astype(np.float32))
        if g.dtype != np.float32:
            raise AssertionError(f"a float32 input got a {g.dtype} gradient: keep the "
                                 "dtype of gy (a float64 constant or array slipped in?)")
        if g.shape != x.shape:
            raise AssertionError(f"gradient of shape {g.shape} for an input of shape "
                                 f"{x.shape}")
    return check


# --------------------------------------------------------------------------- watching


class InPlaceWrite(AssertionError):
    """A backward changed gy, or an array its forward saved, in place."""


CALLS: dict = {}  # Function name -> how often its backward ran during the current check


def _unchanged(now, before) -> bool:
    now = np.asarray(now)
    return now.shape == before.shape and np.array_equal(now, before, equal_nan=True)


def watch(cls) -> None:
    """Wrap ``cls.backward`` (the student's) so that every call is counted (a check that
    never runs it scores nothing) and a write into ``gy`` or into a saved array is caught
    even where the engine's read-only views would not see it."""
    original = cls.__dict__["backward"]
    fn = original.__func__ if isinstance(original, staticmethod) else original
    name = cls.__name__

    def backward(ctx, gy):
        CALLS[name] = CALLS.get(name, 0) + 1
        gy_before = np.array(gy, copy=True)
        saved = [a for a in getattr(ctx, "_saved", ()) if isinstance(a, np.ndarray)]
        saved_before = [a.copy() for a in saved]
        out = fn(ctx, gy)
        if not _unchanged(gy, gy_before):
            raise InPlaceWrite(
                f"{name}.backward wrote into gy (the upstream gradient it was given) in "
                "place. The engine hands one gy to every op that used the same tensor, so "
                "another op's gradient is now wrong: compute a new array (gx = gy * mask, "
                "not gy *= mask).")
        for k, (array, before) in enumerate(zip(saved, saved_before)):
            if not _unchanged(array, before):
                raise InPlaceWrite(
                    f"{name}.backward changed an array that forward saved (saved array {k}, "
                    f"shape {tuple(array.shape)}) in place. A second backward "
                    "(retain_graph=True) reads it again: compute a new array instead.")
        return out

    cls.backward = staticmethod(backward)


# --------------------------------------------------------------------------- random settings


def _rng(op: str):
    """This run's generator for ``op``'s drawn settings: from the run seed and the op's
    name, so the draws of one op do not depend on which others are graded."""
    return np.random.default_rng([SEED, zlib.crc32(op.encode())])


def _two_different(rng, values=(1, 2, 3)) -> tuple:
    a, b = rng.choice(values, 2, replace=False)
    return int(a), int(b)


def _conv_asymmetric(rng, dilation) -> tuple:
    """A conv2d sample with the given (unequal) dilation, unequal strides and paddings,
    a kernel of 2 or 3 per axis and odd sizes: height and width differ in every setting."""
    K = tuple(int(k) for k in rng.integers(2, 4, 2))
    S = _two_different(rng)
    P = tuple(int(p) for p in rng.permutation([0, 1]))
    size = [max(1, d * (k - 1) + 1 - 2 * p) + int(rng.integers(0, 3)) * s
            for k, s, p, d in zip(K, S, P, dilation)]
    N, C, Fo = (int(v) for v in rng.integers(1, 4, 3))
    bias = bool(rng.random() < 0.5)
    normal = opspec.inputs.normal
    inputs = (normal(N, C, *size), normal(Fo, C, *K)) + ((normal(Fo),) if bias else ())
    settings = {"stride": S, "padding": P, "dilation": tuple(dilation)}
    return opspec.Sample(
        f"conv2d_drawn_dilation{dilation[0]}x{dilation[1]}", inputs, kwargs=settings,
        note=f"drawn: x {(N, C, *size)}, kernel {K}, stride {S}, padding {P}, dilation "
        f"{tuple(dilation)}, {'bias' if bias else 'no bias'}")


def _pool_asymmetric(rng):
    K = tuple(int(k) for k in rng.permutation([2, 3]))
    S = _two_different(rng, (1, 2))
    P = tuple(int(p) for p in rng.permutation([0, 1]))
    size = [k - 2 * p + int(rng.integers(1, 4)) * s for k, s, p in zip(K, S, P)]
    N, C = (int(v) for v in rng.integers(1, 4, 2))
    shape = (N, C, *size)
    return opspec.Sample("max_pool2d_drawn", (opspec.inputs.ramp(*shape),), (K, S, P),
                         note=f"drawn: {shape}, kernel {K}, stride {S}, padding {P}")


def _cross_entropy_drawn(rng) -> list:
    """Every reduction, without and with label smoothing, on drawn odd shapes (rows,
    pixels or one unbatched row) with some targets ignored; no class weights (those
    run through log_softmax, not through the backward the student writes)."""
    out = []
    for reduction in ("mean", "sum", "none"):
        for smoothed in (False, True):
            shape, t, settings, what = opspec.loss._draw_class_problem(rng, False)
            s = float(np.round(rng.uniform(0.05, 0.5), 2)) if smoothed else 0.0
            out.append(opspec.Sample(
                f"cross_entropy_drawn_{reduction}{'_smoothing' if smoothed else ''}",
                (opspec.inputs.scaled(float(rng.choice([1.0, 3.0])), *shape),), (t,),
                {**settings, "reduction": reduction, "label_smoothing": s},
                note=f"drawn: {what}, reduction={reduction!r}, label_smoothing={s}"))
    return out


def drawn_samples(op) -> list:
    """(spec, sample) for this run's random settings of ``op``: the spec's own random
    samples (not for cross_entropy, whose draws may take the weighted path) and the
    grader's draws of what the fixed samples cannot cover (asymmetric geometry, every
    reduction with and without smoothing)."""
    rng = _rng(op)
    if op == "cross_entropy":
        spec = opspec.spec(op)
        return [(spec, s) for s in _cross_entropy_drawn(rng)]
    out = [(opspec.spec(name), s) for name in GRADED_SPECS.get(op, (op,))
           for s in opspec.spec(name).random_samples(SEED)]
    if op == "conv2d":
        out += [(opspec.spec(op), _conv_asymmetric(rng, d)) for d in ((1, 2), (2, 1))]
    if op == "max_pool2d":
        out.append((opspec.spec(op), _pool_asymmetric(rng)))
    return out


def gradient_checks(op) -> list:
    """(op, 'gradcheck', name, check) for the samples tagged 'course' of the op's specs,
    then this run's drawn samples."""
    out = []
    for name in GRADED_SPECS.get(op, (op,)):
        spec = opspec.spec(name)
        out += [(op, "gradcheck", sample.describe(), sample_check(spec, sample))
                for sample in spec.samples if "course" in sample.tags]
    for spec, sample in drawn_samples(op):
        name = sample.describe()
        out.append((op, "gradcheck", name if name.startswith("drawn") else f"drawn: {name}",
                    sample_check(spec, sample)))
    return out


# --------------------------------------------------------------------------- checks


def shared_gy_check(build, *shapes, maker=None):
    """The gradient check of ``build(*tensors)``, an expression in which two ops of the
    graded kind read the same upstream gradient (``f(x) + g(x)``): a backward that
    writes into gy spoils the other's gradient."""
    def check():
        rng = _rng("shared gy")
        make = maker or opspec.inputs.normal
        gradcheck(build, [t64(make(*shape)(rng)) for shape in shapes])
    return check


def twice_check(build, *shapes, maker=None):
    """backward twice through one graph (``retain_graph=True``) gives the same gradients:
    the first must not change gy or what forward saved."""
    def check():
        rng = _rng("twice")
        make = maker or opspec.inputs.normal
        arrays = [make(*shape)(rng) for shape in shapes]
        tensors = [t64(a) for a in arrays]
        y = build(*tensors)
        gy = rng.standard_normal(y.shape)
        y.backward(mr.tensor(gy.copy(), dtype=mr.float64), retain_graph=True)
        first = [grad_of(t, f"input {k}").copy() for k, t in enumerate(tensors)]
        for t in tensors:
            t.grad = None
        y.backward(mr.tensor(gy.copy(), dtype=mr.float64))
        for k, (t, g1) in enumerate(zip(tensors, first)):
            g2 = grad_of(t, f"input {k}")
            if g2.shape != g1.shape or not np.allclose(g2, g1, atol=1e-12, rtol=1e-10):
                worst = np.unravel_index(np.argmax(np.abs(g2 - g1)), g1.shape)
                raise InPlaceWrite(
                    "a second backward (retain_graph=True) through the same graph gave a "
                    f"different gradient for input {k}: at {tuple(int(i) for i in worst)} "
                    f"{g2[worst]:.10g} the second time, {g1[worst]:.10g} the first. The "
                    "first backward changed something the second reads (gy or an array "
                    "forward saved) in place.")
    return check


def _matmul_needs_input_grad():
    rng = np.random.default_rng(4)
    a, b = t64(rng.standard_normal((3, 4))), t64(rng.standard_normal((4, 5)), False)
    gy = rng.standard_normal((3, 5))
    mr.matmul(a, b).backward(gy)
    close(grad_of(a, "a.grad"), gy @ b.numpy().T, "a.grad with b frozen")
    if b.grad is not None:
        raise AssertionError("b does not require grad but got a .grad")


def _relu_mask():
    x = mr.tensor(np.array([[-2.0, -0.5, 0.5, 3.0]], dtype=np.float32), requires_grad=True)
    g = gradient_into(F.relu, x, np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32))
    close(g.numpy(), [[0.0, 0.0, 3.0, 4.0]], "relu gradient (zero where x < 0, gy where "
          "x > 0)", atol=0)


def _cross_entropy_reference(scale):
    def check():
        rng = np.random.default_rng(5)
        logits = scale * rng.standard_normal((6, 5))
        target = opspec.loss.TARGET
        x = t64(logits)
        F.cross_entropy(x, target).backward()
        expected = opspec.activation.softmax_reference(logits, 1)
        expected[np.arange(6), target] -= 1
        g = grad_of(x, "logits.grad")
        if not np.all(np.isfinite(g)):
            raise AssertionError(f"gradient is not finite for logits of size {scale:g} "
                                 "(compute with the saved probabilities, not exp(logits))")
        close(g, expected / 6, f"(softmax - onehot) / N for logits of size {scale:g}")
    return check


def _cross_entropy_every_reduction():
    """(softmax - q) * gy, q the smoothed one-hot, 'mean' dividing by the counted rows:
    every reduction with and without smoothing, against that formula."""
    rng = _rng("cross_entropy formula")
    N, C = int(rng.integers(3, 8)), int(rng.integers(2, 7))
    logits = rng.standard_normal((N, C))
    target = rng.integers(0, C, N)
    target[int(rng.integers(0, N))] = -100  # one ignored row
    counted = target != -100
    p = opspec.activation.softmax_reference(logits, 1)
    for reduction in ("mean", "sum", "none"):
        for s in (0.0, float(np.round(rng.uniform(0.05, 0.5), 2))):
            q = np.full((N, C), s / C)
            q[np.arange(N)[counted], target[counted]] += 1 - s
            gy = rng.standard_normal(N) if reduction == "none" else np.array(1.7)
            scale = gy[:, None] if reduction == "none" else gy / (
                counted.sum() if reduction == "mean" else 1)
            expected = (p - q) * counted[:, None] * scale
            x = t64(logits)
            F.cross_entropy(x, target, reduction=reduction, label_smoothing=s).backward(
                mr.tensor(gy, dtype=mr.float64))
            close(grad_of(x, "logits.grad"), expected,
                  f"reduction={reduction!r}, label_smoothing={s}: (softmax - q) * gy, q = "
                  f"(1 - s) onehot + s / C ({'/ counted rows' if reduction == 'mean' else ''})")


def _conv2d_reference():
    rng = np.random.default_rng(6)
    x, w, b = rng.standard_normal((2, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3)), \
        rng.standard_normal(3)
    cases = [((2, 1), (1, 1), (1, 1))]
    drawn = _rng("conv2d loops")
    for dilation in ((1, 2), (2, 1)):
        cases.append((_two_different(drawn), tuple(int(p) for p in drawn.permutation([0, 1])),
                      dilation))
    for stride, padding, dilation in cases:
        xt, wt, bt = t64(x), t64(w), t64(b)
        y = F.conv2d(xt, wt, bt, stride=stride, padding=padding, dilation=dilation)
        gy = rng.standard_normal(y.shape)
        y.backward(gy)
        grads = opspec.conv.conv2d_grad_reference(gy, x, w, b, stride, padding, dilation)
        where = f"(stride {stride}, padding {padding}, dilation {dilation})"
        for name, t, g in zip(("x.grad", "w.grad", "b.grad"), (xt, wt, bt), grads):
            close(grad_of(t, name), g, f"conv2d {name} vs loops {where}")


def _conv2d_frozen():
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal((1, 2, 4, 4)), rng.standard_normal((2, 2, 3, 3))
    gy = rng.standard_normal((1, 2, 4, 4))
    gx, gw = opspec.conv.conv2d_grad_reference(gy, x, w, None, 1, 1)
    images, weight = t64(x, False), t64(w)  # a first layer: images need no gradient
    F.conv2d(images, weight, padding=1).backward(gy)
    close(grad_of(weight, "w.grad"), gw, "w.grad when x does not require grad")
    images, weight = t64(x), t64(w, False)  # frozen weights
    F.conv2d(images, weight, padding=1).backward(gy)
    close(grad_of(images, "x.grad"), gx, "x.grad when w does not require grad")


def _max_pool_reference():
    rng = np.random.default_rng(9)
    drawn = _rng("max_pool2d loops")
    geometries = [((3, 3), (1, 1), (1, 1)), ((2, 3), (2, 1), (0, 1)),
                  (tuple(int(k) for k in drawn.permutation([2, 3])), _two_different(drawn, (1, 2)),
                   tuple(int(p) for p in drawn.permutation([0, 1])))]
    for k, stride, padding in geometries:
        x = opspec.inputs.ramp(2, 2, 6, 5)(rng)
        _max_pool_grad_vs_loops(rng, x, k, stride, padding,
                                f"max_pool2d x.grad vs loops (kernel {k}, stride {stride}, "
                                f"padding {padding})")


def _max_pool_grad_vs_loops(rng, x, k, stride, padding, what: str) -> None:
    """max_pool2d's x.grad for a random upstream gradient against the loop reference."""
    xt = t64(x)
    y = F.max_pool2d(xt, k, stride, padding)
    gy = rng.standard_normal(y.shape)
    y.backward(gy)
    (expected,) = opspec.pool.max_pool2d_grad_reference(gy, x, k, stride, padding)
    close(grad_of(xt, "x.grad"), expected, what)


def _max_pool_ties():
    """Equal values in a window: only the first maximum gets the gradient (as the
    forward's argmax says), not every tied element."""
    rng = np.random.default_rng(10)
    x = np.round(rng.standard_normal((2, 2, 5, 6)), 0)  # whole numbers: many ties
    for k, stride, padding in (((2, 2), (2, 2), (0, 0)), ((3, 2), (1, 2), (1, 0))):
        _max_pool_grad_vs_loops(rng, x, k, stride, padding,
                                f"max_pool2d x.grad with tied maxima (kernel {k}, stride "
                                f"{stride}, padding {padding}): each window's gradient goes "
                                "to its first maximum only")


def batch_norm_hint(x, w, gy, g, eps=1e-5) -> str:
    """What a wrong training-mode BatchNorm x.grad ``g`` matches, in words ('' if none):
    the formula without the path through the mean, without the one through the
    variance, the evaluation-mode formula, or the right one with a wrong count M."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    M = x.size // x.shape[1]
    mean, var = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
    xhat = (x - mean) / np.sqrt(var + eps)
    scale = (np.ones(x.shape[1]) if w is None else w).reshape(shape) / np.sqrt(var + eps)
    gb = gy.sum(axis=axes, keepdims=True)
    gw = (gy * xhat).sum(axis=axes, keepdims=True)
    variants = [
        (scale * (gy - xhat * gw / M), "the path through the batch mean is missing (the "
         "-sum(gy) / M term)"),
        (scale * (gy - gb / M), "the path through the batch variance is missing (the "
         "-xhat * sum(gy * xhat) / M term)"),
        (scale * gy, "this is the evaluation-mode formula: in training mode the batch mean "
         "and variance depend on x too"),
    ]
    for candidate, hint in variants:
        if np.allclose(g, candidate, atol=1e-9, rtol=1e-7):
            return hint
    # the right formula with another count: g / scale - gy = -(gb + xhat * gw) / M'
    r = np.broadcast_to(gb + xhat * gw, x.shape)
    d = g / scale - gy
    if np.vdot(r, r) > 0:
        inverse = -np.vdot(r, d) / np.vdot(r, r)
        if inverse > 0 and np.allclose(d, -r * inverse, atol=1e-9, rtol=1e-7):
            other = 1 / inverse
            if abs(other - M) > 1e-6 * M:
                return (f"the count M is wrong: x.grad matches M = {other:.6g}, but each "
                        f"channel's mean and variance are over M = {M} values (every axis "
                        "but the channel axis 1)")
    return ""


def _batch_norm_reference():
    rng = np.random.default_rng(11)
    x, w, b = rng.standard_normal((4, 3, 2, 3)), rng.standard_normal(3), rng.standard_normal(3)
    gy = rng.standard_normal(x.shape)
    grads = []
    for fn in (lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
               opspec.norm.batch_norm_composite):
        ts = [t64(x), t64(w), t64(b)]
        fn(*ts).backward(gy)
        grads.append([grad_of(t, "grad") for t in ts])
    for name, mine, ref in zip(("x.grad", "weight.grad", "bias.grad"), *grads):
        try:
            close(mine, ref, f"batch_norm {name} vs the same BatchNorm built from "
                  "elementwise ops", atol=1e-9, rtol=1e-7)
        except AssertionError as error:
            hint = batch_norm_hint(x, w, gy, mine) if name == "x.grad" else ""
            raise AssertionError(f"{error} ({hint})" if hint else str(error)) from None


def _batch_norm_all_ones():
    x = np.random.default_rng(12).standard_normal((5, 2, 3))
    xt = t64(x)
    F.batch_norm(xt, None, None, training=True).sum().backward()
    g = grad_of(xt, "x.grad")
    if np.abs(g).max() > 1e-9:
        hint = batch_norm_hint(x, None, np.ones_like(x), g)
        raise AssertionError(
            "training mode, loss = y.sum(): every output sums to a constant per channel, "
            f"so x.grad must be 0, but its largest entry is {np.abs(g).max():.3g}"
            + (f" ({hint})" if hint else ""))


def _composites():
    """op -> (build, shapes, maker): an expression in which two ops of the graded kind
    read one upstream gradient."""
    t = opspec.loss.TARGET
    t2 = np.roll(t, 1)
    kw = {"stride": (2, 1), "padding": (1, 0)}
    inputs = opspec.inputs
    return {
        "matmul": (lambda a, b, c: mr.matmul(a, b) + mr.matmul(a, c), ((3, 4), (4, 2), (4, 2)),
                   None, "a @ b + a @ c"),
        "relu": (lambda x: F.relu(x) + F.relu(-x), ((3, 5),), inputs.away_from_zero,
                 "relu(x) + relu(-x)"),
        "cross_entropy": (lambda x: F.cross_entropy(x, t, reduction="none")
                          + F.cross_entropy(x, t2, reduction="none", label_smoothing=0.2),
                          ((6, 5),), None,
                          "cross_entropy(x, t) + cross_entropy(x, t2, label_smoothing=0.2), "
                          "reduction='none'"),
        "conv2d": (lambda x, w, v: F.conv2d(x, w, **kw) + F.conv2d(x, v, **kw),
                   ((2, 2, 5, 4), (3, 2, 3, 2), (3, 2, 3, 2)), None,
                   "conv2d(x, w) + conv2d(x, v), stride (2, 1), padding (1, 0)"),
        "max_pool2d": (lambda x: F.max_pool2d(x, 2, 1) + F.max_pool2d(-x, 2, 1), ((2, 2, 4, 5),),
                       inputs.ramp, "max_pool2d(x) + max_pool2d(-x), 2x2 windows, stride 1"),
        "batch_norm": (lambda x, w, b, v: F.batch_norm(x, None, None, w, b, training=True)
                       + F.batch_norm(x, None, None, v, b, training=True),
                       ((4, 3, 2, 3), (3,), (3,), (3,)), None,
                       "batch_norm(x, w, b) + batch_norm(x, v, b), training"),
    }


def structural_checks(op) -> list:
    """The shared-gy gradient check and the backward-twice test of ``op``."""
    build, shapes, maker, what = _composites()[op]
    return [(op, "gradcheck", f"shared gy: {what}", shared_gy_check(build, *shapes, maker=maker)),
            (op, "test", f"backward twice (retain_graph=True) gives the same gradient: {what}",
             twice_check(build, *shapes, maker=maker))]


def all_checks() -> list:
    """(op, kind, name, check) for every check; ``kind`` is 'gradcheck' or 'test'."""
    relu = lambda x: F.relu(x)
    pool = lambda k, s=None, p=0: (lambda x: F.max_pool2d(x, k, s, p))
    tests = {
        "matmul": [
            ("b frozen: a.grad = gy @ b.T and b gets no .grad", _matmul_needs_input_grad),
            ("float32 in, float32 gradient out",
             float32_check(lambda a: a @ mr.tensor(np.ones((4, 2), dtype=np.float32)), (3, 4))),
        ],
        "relu": [
            ("gradient is gy where x > 0 and 0 where x < 0", _relu_mask),
            ("float32 in, float32 gradient out", float32_check(relu, (3, 5))),
        ],
        "cross_entropy": [
            ("equals (softmax - onehot) / N", _cross_entropy_reference(1.0)),
            ("large logits (size 1000): finite and right", _cross_entropy_reference(1000.0)),
            ("every reduction, with and without label smoothing, equals (softmax - q) * gy",
             _cross_entropy_every_reduction),
        ],
        "conv2d": [
            ("x, w and b gradients equal a loop implementation (stride (2, 1); drawn "
             "strides and paddings with dilation (1, 2) and (2, 1))", _conv2d_reference),
            ("only one of x and w requires grad", _conv2d_frozen),
            ("float32 in, float32 gradient out",
             float32_check(lambda x: F.conv2d(x, mr.tensor(np.ones((2, 3, 3, 3), np.float32)),
                                              padding=1), (2, 3, 4, 4))),
        ],
        "max_pool2d": [
            ("overlapping windows: gradients add up, as in a loop implementation",
             _max_pool_reference),
            ("tied maxima: only the first gets the gradient", _max_pool_ties),
            ("float32 in, float32 gradient out", float32_check(pool(2), (2, 2, 4, 4))),
        ],
        "batch_norm": [
            ("equals autograd through BatchNorm built from elementwise ops",
             _batch_norm_reference),
            ("loss = y.sum() in training mode gives x.grad = 0", _batch_norm_all_ones),
            ("float32 in, float32 gradient out",
             float32_check(lambda x: F.batch_norm(x, None, None, training=True), (4, 3, 2, 2))),
        ],
    }
    return [check for op, named in tests.items()
            for check in gradient_checks(op) + structural_checks(op)
            + [(op, "test", name, fn) for name, fn in named]]


# --------------------------------------------------------------------------- running


def _where(error: BaseException, project: str) -> str:
    """' (minires/FILE, line N)' of the innermost frame of ``error`` in the student's
    files (not the grader's), preferring the ops (``minires/ops/``), where the
    assignments are; or ''."""
    root = os.path.realpath(project) + os.sep
    frames = []
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        path = os.path.realpath(frame.filename)
        if path.startswith(root) and f"{os.sep}course{os.sep}" not in path \
                and f"{os.sep}opspec{os.sep}" not in path \
                and not path.endswith(f"{os.sep}autograd_safety.py"):
            frames.append((os.path.relpath(path, project), frame.lineno))
    ops = [f for f in frames if f[0].startswith(os.path.join("minires", "ops", ""))]
    if not frames:
        return ""
    path, line = (ops or frames)[0]
    return f" ({path}, line {line})"


def _explain(error: BaseException, project: str) -> str:
    """One line on what went wrong, and where in the student's files."""
    where = _where(error, project)
    if isinstance(error, NotImplementedError):
        return f"not written yet: {error}"
    if isinstance(error, InPlaceWrite):  # found after the call: the message names the op
        return f"in-place write: {error}"
    if isinstance(error, RuntimeError) and "in place" in str(error) and \
            "modified gy" in str(error):
        # the engine's read-only views caught it: the write itself is in the cause
        cause = error.__cause__
        where = _where(cause, project) if cause is not None else where
        return f"in-place write{where}: {error}"
    name = type(error).__name__
    if name == "GradcheckError":
        return f"wrong gradient: {error}"
    if isinstance(error, AssertionError):
        return f"{error}"
    return f"{name}{where}: {error}"


def _load_gradcheck(path: str):
    """The instructor's gradcheck source, its relative imports bound to the student's
    minires (so a student cannot loosen the checker the grader uses)."""
    spec = importlib.util.spec_from_file_location("minires._grader_gradcheck", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.gradcheck


def _load_opspec(folder: str):
    """The instructor's op specs, loaded by path as ``minires._grader_opspec``: their
    relative imports reach the student's minires, so the samples run the student's ops
    while a student cannot change the inputs or references the grader uses."""
    name = "minires._grader_opspec"
    spec = importlib.util.spec_from_file_location(name, os.path.join(folder, "__init__.py"),
                                                  submodule_search_locations=[folder])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def run(ops, project: str, gradcheck_path: str | None, opspec_path: str | None = None,
        seed: int = 0) -> dict:
    try:
        import minires
        import minires.nn.functional  # noqa: F401
    except BaseException as error:  # a syntax error in a student file lands here
        return {"error": "could not import minires from the project:\n"
                + "".join(traceback.format_exception(error)).rstrip()}
    where = os.path.dirname(os.path.dirname(os.path.realpath(minires.__file__)))
    if os.path.normcase(where) != os.path.normcase(os.path.realpath(project)):
        return {"error": f"imported minires from {where}, not from the project {project}"}
    try:
        specs = _load_opspec(opspec_path) if opspec_path else importlib.import_module(
            "minires.opspec")
    except BaseException as error:  # the student's minires lacks what the specs import
        return {"error": "could not load the op specs on the project's minires:\n"
                + "".join(traceback.format_exception(error)).rstrip()}
    bind(minires, _load_gradcheck(gradcheck_path) if gradcheck_path else minires.gradcheck,
         specs, seed)
    mr.use_kernels(False)
    for op in ops:
        module, name = FUNCTIONS[op]
        watch(getattr(importlib.import_module(module), name))
    results = []
    for op, kind, name, check in all_checks():
        if op not in ops:
            continue
        mr.manual_seed(0)
        CALLS.clear()
        try:
            check()
            passed, message = True, ""
        except Exception as error:
            passed, message = False, _explain(error, project)
        function = FUNCTIONS[op][1]
        scored = not passed or CALLS.get(function, 0) > 0
        if not scored:
            message = (f"not scored: the check passed without running {function}.backward "
                       "(the part you write)")
        results.append({"op": op, "kind": kind, "name": name, "passed": passed,
                        "scored": scored, "message": message})
    return {"minires": where, "seed": seed, "results": results}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="minires grader checks (run by "
                                     "`minires grade`)")
    parser.add_argument("--ops", required=True, help="comma-separated op names")
    parser.add_argument("--project", required=True)
    parser.add_argument("--gradcheck", default=None, help="path of gradcheck.py to use")
    parser.add_argument("--opspec", default=None, help="path of the opspec package to use")
    parser.add_argument("--seed", type=int, default=0, help="seed of the drawn settings")
    parser.add_argument("--out", required=True, help="JSON file for the results")
    args = parser.parse_args(argv)
    report = run(set(args.ops.split(",")), os.path.abspath(args.project), args.gradcheck,
                 args.opspec, args.seed)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(report, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
