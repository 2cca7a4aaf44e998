"""The grader's checks, run as a script in a fresh interpreter on the student's minires.

``minires grade`` starts ``python checks.py`` with ``PYTHONPATH`` pointing at the
student's project, so ``import minires`` below imports the STUDENT's package, while
this file and the gradient checker come from the instructor's installation (the
checker's source is loaded by path and bound to the student's ``minires``). Every check
runs on the CPU in float64 unless it says otherwise, is worth one point, and turns any
exception into a message; the results go to a JSON file.

The sample inputs are the grader's own (``tests/`` is not shipped with the package):
a few shapes per op, placed away from kinks like the project's op registry.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import traceback

# This file runs by path: its folder (inside the instructor's package) must not shadow
# anything the student's code imports.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import numpy as np  # noqa: E402

mr = F = gradcheck = None  # bound in main() once the student's minires is imported


# --------------------------------------------------------------------------- inputs


def normal(*shape):
    return lambda rng: rng.standard_normal(shape)


def away_from_zero(*shape, margin=0.1):
    def make(rng):
        x = rng.standard_normal(shape)
        return np.where(np.abs(x) < margin, np.where(x < 0, -margin, margin), x)
    return make


def ramp(*shape):
    """A shuffled ramp: distinct values 0.01 apart, so no max is a near-tie."""
    def make(rng):
        n = int(np.prod(shape))
        return (rng.permutation(n) * 0.01 - n * 0.005).reshape(shape)
    return make


def t64(array, requires_grad=True):
    return mr.tensor(np.asarray(array, dtype=np.float64), dtype=mr.float64,
                     requires_grad=requires_grad)


def grad_check(fn, *makers, seed=0):
    """A check: the float64 gradient check of ``fn`` on inputs from ``makers``."""
    def check():
        rng = np.random.default_rng(seed)
        gradcheck(fn, [t64(m(rng)) for m in makers])
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


def float32_check(op, shape, maker=normal):
    def check():
        rng = np.random.default_rng(3)
        x = mr.tensor(maker(*shape)(rng).astype(np.float32), requires_grad=True)
        y = op(x)
        g = gradient_into(op, x, rng.standard_normal(y.shape).astype(np.float32))
        if g.dtype != np.float32:
            raise AssertionError(f"a float32 input got a {g.dtype} gradient: keep the "
                                 "dtype of gy (a float64 constant or array slipped in?)")
        if g.shape != x.shape:
            raise AssertionError(f"gradient of shape {g.shape} for an input of shape "
                                 f"{x.shape}")
    return check


# --------------------------------------------------------------------------- references


def conv2d_loops(x, w, b, stride, padding):
    N, C, H, W = x.shape
    Fo, _, KH, KW = w.shape
    (SH, SW), (PH, PW) = stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)))
    OH, OW = (H + 2 * PH - KH) // SH + 1, (W + 2 * PW - KW) // SW + 1
    y = np.zeros((N, Fo, OH, OW))
    for n in range(N):
        for f in range(Fo):
            for oh in range(OH):
                for ow in range(OW):
                    patch = xp[n, :, oh * SH:oh * SH + KH, ow * SW:ow * SW + KW]
                    y[n, f, oh, ow] = (patch * w[f]).sum() + (0 if b is None else b[f])
    return y


def conv2d_backward_loops(x, w, gy, stride, padding):
    """d/dx, d/dw, d/db of sum(gy * conv2d(x, w, b)), one multiply-add at a time."""
    N, C, H, W = x.shape
    Fo, _, KH, KW = w.shape
    (SH, SW), (PH, PW) = stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)))
    gxp, gw = np.zeros_like(xp), np.zeros_like(w)
    _, _, OH, OW = gy.shape
    for n in range(N):
        for f in range(Fo):
            for oh in range(OH):
                for ow in range(OW):
                    rows = slice(oh * SH, oh * SH + KH)
                    cols = slice(ow * SW, ow * SW + KW)
                    gxp[n, :, rows, cols] += gy[n, f, oh, ow] * w[f]
                    gw[f] += gy[n, f, oh, ow] * xp[n, :, rows, cols]
    return gxp[:, :, PH:PH + H, PW:PW + W], gw, gy.sum(axis=(0, 2, 3))


def max_pool_loops(x, k, stride, padding, gy=None):
    """-> y, or (with gy) the input gradient: each window's gy goes to its maximum."""
    N, C, H, W = x.shape
    (KH, KW), (SH, SW), (PH, PW) = k, stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)), constant_values=-np.inf)
    OH, OW = (H + 2 * PH - KH) // SH + 1, (W + 2 * PW - KW) // SW + 1
    y, gxp = np.zeros((N, C, OH, OW)), np.zeros_like(xp)
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    window = xp[n, c, oh * SH:oh * SH + KH, ow * SW:ow * SW + KW]
                    y[n, c, oh, ow] = window.max()
                    i, j = np.unravel_index(np.argmax(window), window.shape)
                    if gy is not None:
                        gxp[n, c, oh * SH + i, ow * SW + j] += gy[n, c, oh, ow]
    return y if gy is None else gxp[:, :, PH:PH + H, PW:PW + W]


def batch_norm_composite(x, w, b, eps=1e-5):
    """Training-mode BatchNorm from minires's elementwise ops and reductions only, so its
    gradient comes from their backward passes, not from BatchNorm's."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean = x.mean(dim=axes, keepdim=True)
    xc = x - mean
    var = (xc * xc).mean(dim=axes, keepdim=True)
    return xc / (var + eps).sqrt() * w.reshape(*shape) + b.reshape(*shape)


def softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------- checks

_TARGET = np.array([2, 0, 4, 1, 3, 3])
_SPATIAL_TARGET = np.random.default_rng(1).integers(0, 3, (2, 4, 5))


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
        x = t64(logits)
        F.cross_entropy(x, _TARGET).backward()
        expected = softmax(logits)
        expected[np.arange(6), _TARGET] -= 1
        g = grad_of(x, "logits.grad")
        if not np.all(np.isfinite(g)):
            raise AssertionError(f"gradient is not finite for logits of size {scale:g} "
                                 "(compute with the saved probabilities, not exp(logits))")
        close(g, expected / 6, f"(softmax - onehot) / N for logits of size {scale:g}")
    return check


def _conv2d_reference():
    rng = np.random.default_rng(6)
    x, w, b = rng.standard_normal((2, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3)), \
        rng.standard_normal(3)
    stride, padding = (2, 1), (1, 1)
    xt, wt, bt = t64(x), t64(w), t64(b)
    y = F.conv2d(xt, wt, bt, stride=stride, padding=padding)
    gy = rng.standard_normal(y.shape)
    y.backward(gy)
    gx, gw, gb = conv2d_backward_loops(x, w, gy, stride, padding)
    close(grad_of(xt, "x.grad"), gx, "conv2d x.grad vs loops")
    close(grad_of(wt, "w.grad"), gw, "conv2d w.grad vs loops")
    close(grad_of(bt, "b.grad"), gb, "conv2d b.grad vs loops")


def _conv2d_frozen():
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal((1, 2, 4, 4)), rng.standard_normal((2, 2, 3, 3))
    gy = rng.standard_normal((1, 2, 4, 4))
    gx, gw, _ = conv2d_backward_loops(x, w, gy, (1, 1), (1, 1))
    images, weight = t64(x, False), t64(w)  # a first layer: images need no gradient
    F.conv2d(images, weight, padding=1).backward(gy)
    close(grad_of(weight, "w.grad"), gw, "w.grad when x does not require grad")
    images, weight = t64(x), t64(w, False)  # frozen weights
    F.conv2d(images, weight, padding=1).backward(gy)
    close(grad_of(images, "x.grad"), gx, "x.grad when w does not require grad")


def _conv2d_forward():
    rng = np.random.default_rng(8)
    x, w, b = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3, 3, 2)), \
        rng.standard_normal(4)
    y = F.conv2d(t64(x, False), t64(w, False), t64(b, False), stride=(2, 1), padding=(1, 0))
    close(y.numpy(), conv2d_loops(x, w, b, (2, 1), (1, 0)), "conv2d forward vs loops")


def _max_pool_reference():
    rng = np.random.default_rng(9)
    for k, stride, padding in (((3, 3), (1, 1), (1, 1)), ((2, 3), (2, 1), (0, 1))):
        x = ramp(2, 2, 6, 5)(rng)
        xt = t64(x)
        y = F.max_pool2d(xt, k, stride, padding)
        gy = rng.standard_normal(y.shape)
        y.backward(gy)
        close(grad_of(xt, "x.grad"), max_pool_loops(x, k, stride, padding, gy),
              f"max_pool2d x.grad vs loops (kernel {k}, stride {stride}, padding {padding})")


def _max_pool_forward():
    x = np.random.default_rng(10).standard_normal((2, 3, 7, 6))
    y = F.max_pool2d(t64(x, False), 3, 2, 1)
    close(y.numpy(), max_pool_loops(x, (3, 3), (2, 2), (1, 1)), "max_pool2d forward vs "
          "loops", atol=0, rtol=0)


def _batch_norm_reference():
    rng = np.random.default_rng(11)
    x, w, b = rng.standard_normal((4, 3, 2, 3)), rng.standard_normal(3), rng.standard_normal(3)
    gy = rng.standard_normal(x.shape)
    grads = []
    for fn in (lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
               batch_norm_composite):
        ts = [t64(x), t64(w), t64(b)]
        fn(*ts).backward(gy)
        grads.append([grad_of(t, "grad") for t in ts])
    for name, mine, ref in zip(("x.grad", "weight.grad", "bias.grad"), *grads):
        close(mine, ref, f"batch_norm {name} vs the same BatchNorm built from elementwise "
              "ops", atol=1e-9, rtol=1e-7)


def _batch_norm_all_ones():
    x = t64(np.random.default_rng(12).standard_normal((5, 2, 3)))
    F.batch_norm(x, None, None, training=True).sum().backward()
    g = grad_of(x, "x.grad")
    if np.abs(g).max() > 1e-9:
        raise AssertionError(
            "training mode, loss = y.sum(): every output sums to a constant per channel, "
            f"so x.grad must be 0, but its largest entry is {np.abs(g).max():.3g} "
            "(the path through the batch mean is missing?)")


def _batch_norm_running_stats():
    x = np.random.default_rng(13).standard_normal((8, 3)) * 2 + 1
    mean, var = mr.zeros(3, dtype=mr.float64), mr.ones(3, dtype=mr.float64)
    F.batch_norm(t64(x, False), mean, var, training=True, momentum=0.1)
    close(mean.numpy(), 0.1 * x.mean(axis=0), "running_mean after one training step")
    close(var.numpy(), 0.9 + 0.1 * x.var(axis=0, ddof=1), "running_var after one step")


def _bn(training):
    def fn(x, w, b):
        if training:
            return F.batch_norm(x, None, None, w, b, training=True)
        return F.batch_norm(x, mr.tensor([0.1, -0.2, 0.3], dtype=mr.float64),
                            mr.tensor([0.5, 1.5, 2.0], dtype=mr.float64), w, b,
                            training=False)
    return fn


def all_checks() -> list:
    """(op, kind, name, check) for every check; ``kind`` is 'gradcheck' or 'test'."""
    relu = lambda x: F.relu(x)
    pool = lambda k, s=None, p=0: (lambda x: F.max_pool2d(x, k, s, p))
    return [
        # ------------------------------------------------------------ matmul
        ("matmul", "gradcheck", "(3, 4) @ (4, 5)",
         grad_check(mr.matmul, normal(3, 4), normal(4, 5))),
        ("matmul", "gradcheck", "batched with broadcasting: (2, 1, 3, 4) @ (5, 4, 2)",
         grad_check(mr.matmul, normal(2, 1, 3, 4), normal(5, 4, 2))),
        ("matmul", "gradcheck", "vector @ batched matrix: (4,) @ (2, 4, 3)",
         grad_check(mr.matmul, normal(4), normal(2, 4, 3))),
        ("matmul", "gradcheck", "batched matrix @ vector: (2, 3, 4) @ (4,)",
         grad_check(mr.matmul, normal(2, 3, 4), normal(4))),
        ("matmul", "gradcheck", "dot product: (4,) @ (4,)",
         grad_check(mr.matmul, normal(4), normal(4))),
        ("matmul", "gradcheck", "F.linear (x @ w.T + b), which is built on matmul",
         grad_check(F.linear, normal(4, 3), normal(5, 3), normal(5))),
        ("matmul", "test", "b frozen: a.grad = gy @ b.T and b gets no .grad",
         _matmul_needs_input_grad),
        ("matmul", "test", "float32 in, float32 gradient out",
         float32_check(lambda a: a @ mr.tensor(np.ones((4, 2), dtype=np.float32)), (3, 4))),
        # ------------------------------------------------------------ relu
        ("relu", "gradcheck", "(3, 4)", grad_check(relu, away_from_zero(3, 4))),
        ("relu", "gradcheck", "(2, 3, 4, 4)", grad_check(relu, away_from_zero(2, 3, 4, 4))),
        ("relu", "test", "gradient is gy where x > 0 and 0 where x < 0", _relu_mask),
        ("relu", "test", "float32 in, float32 gradient out", float32_check(relu, (3, 5))),
        # ------------------------------------------------------------ cross_entropy
        ("cross_entropy", "gradcheck", "mean over (6, 5) logits",
         grad_check(lambda x: F.cross_entropy(x, _TARGET), normal(6, 5))),
        ("cross_entropy", "gradcheck", "reduction='sum', label_smoothing=0.2",
         grad_check(lambda x: F.cross_entropy(x, _TARGET, reduction="sum",
                                              label_smoothing=0.2), normal(6, 5))),
        ("cross_entropy", "gradcheck", "reduction='none'",
         grad_check(lambda x: F.cross_entropy(x, _TARGET, reduction="none"), normal(6, 5))),
        ("cross_entropy", "gradcheck", "per-pixel logits (2, 3, 4, 5)",
         grad_check(lambda x: F.cross_entropy(x, _SPATIAL_TARGET), normal(2, 3, 4, 5))),
        ("cross_entropy", "test", "equals (softmax - onehot) / N",
         _cross_entropy_reference(1.0)),
        ("cross_entropy", "test", "large logits (size 1000): finite and right",
         _cross_entropy_reference(1000.0)),
        # ------------------------------------------------------------ conv2d
        ("conv2d", "gradcheck", "3x3 kernel, padding 1, bias",
         grad_check(lambda x, w, b: F.conv2d(x, w, b, padding=1),
                    normal(2, 3, 5, 5), normal(4, 3, 3, 3), normal(4))),
        ("conv2d", "gradcheck", "3x2 kernel, stride (2, 1), padding (1, 0), no bias",
         grad_check(lambda x, w: F.conv2d(x, w, stride=(2, 1), padding=(1, 0)),
                    normal(2, 2, 6, 5), normal(3, 2, 3, 2))),
        ("conv2d", "gradcheck", "1x1 kernel, stride 2 (a ResNet shortcut)",
         grad_check(lambda x, w: F.conv2d(x, w, stride=2),
                    normal(2, 3, 5, 5), normal(2, 3, 1, 1))),
        ("conv2d", "gradcheck", "dilation 2, padding 2",
         grad_check(lambda x, w: F.conv2d(x, w, padding=2, dilation=2),
                    normal(1, 2, 5, 5), normal(2, 2, 3, 3))),
        ("conv2d", "test", "x, w and b gradients equal a loop implementation",
         _conv2d_reference),
        ("conv2d", "test", "only one of x and w requires grad", _conv2d_frozen),
        ("conv2d", "test", "float32 in, float32 gradient out",
         float32_check(lambda x: F.conv2d(x, mr.tensor(np.ones((2, 3, 3, 3), np.float32)),
                                          padding=1), (2, 3, 4, 4))),
        ("conv2d", "test", "forward still equals a loop implementation", _conv2d_forward),
        # ------------------------------------------------------------ max_pool2d
        ("max_pool2d", "gradcheck", "2x2 windows", grad_check(pool(2), ramp(2, 2, 4, 4))),
        ("max_pool2d", "gradcheck", "overlapping 3x3 windows, stride 2, padding 1",
         grad_check(pool(3, 2, 1), ramp(2, 2, 5, 5))),
        ("max_pool2d", "gradcheck", "2x3 windows, stride 1",
         grad_check(pool((2, 3), 1), ramp(1, 2, 4, 5))),
        ("max_pool2d", "test", "overlapping windows: gradients add up, as in a loop "
         "implementation", _max_pool_reference),
        ("max_pool2d", "test", "float32 in, float32 gradient out",
         float32_check(pool(2), (2, 2, 4, 4))),
        ("max_pool2d", "test", "forward still equals a loop implementation",
         _max_pool_forward),
        # ------------------------------------------------------------ batch_norm
        ("batch_norm", "gradcheck", "training, (4, 3, 3, 3) images",
         grad_check(_bn(True), normal(4, 3, 3, 3), normal(3), normal(3))),
        ("batch_norm", "gradcheck", "training, (6, 3) features (BatchNorm1d)",
         grad_check(_bn(True), normal(6, 3), normal(3), normal(3))),
        ("batch_norm", "gradcheck", "evaluation mode (running statistics)",
         grad_check(_bn(False), normal(4, 3, 2, 2), normal(3), normal(3))),
        ("batch_norm", "gradcheck", "no weight and bias, (5, 2, 3)",
         grad_check(lambda x: F.batch_norm(x, None, None, training=True), normal(5, 2, 3))),
        ("batch_norm", "test", "equals autograd through BatchNorm built from elementwise ops",
         _batch_norm_reference),
        ("batch_norm", "test", "loss = y.sum() in training mode gives x.grad = 0",
         _batch_norm_all_ones),
        ("batch_norm", "test", "running statistics still update in training mode",
         _batch_norm_running_stats),
        ("batch_norm", "test", "float32 in, float32 gradient out",
         float32_check(lambda x: F.batch_norm(x, None, None, training=True), (4, 3, 2, 2))),
    ]


# --------------------------------------------------------------------------- running


def _explain(error: BaseException, project: str) -> str:
    """One line on what went wrong, and where in the student's files."""
    where, root = "", os.path.realpath(project) + os.sep
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        path = os.path.realpath(frame.filename)
        if path.startswith(root) and f"{os.sep}course{os.sep}" not in path:
            where = f" ({os.path.relpath(path, project)}, line {frame.lineno})"
            break
    if isinstance(error, NotImplementedError):
        return f"not written yet: {error}"
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


def run(ops, project: str, gradcheck_path: str | None) -> dict:
    global mr, F, gradcheck
    try:
        import minires
        import minires.nn.functional as functional
    except BaseException as error:  # a syntax error in a student file lands here
        return {"error": "could not import minires from the project:\n"
                + "".join(traceback.format_exception(error)).rstrip()}
    where = os.path.dirname(os.path.dirname(os.path.realpath(minires.__file__)))
    if os.path.normcase(where) != os.path.normcase(os.path.realpath(project)):
        return {"error": f"imported minires from {where}, not from the project {project}"}
    mr, F = minires, functional
    gradcheck = _load_gradcheck(gradcheck_path) if gradcheck_path else minires.gradcheck
    mr.use_kernels(False)
    results = []
    for op, kind, name, check in all_checks():
        if op not in ops:
            continue
        mr.manual_seed(0)
        try:
            check()
            passed, message = True, ""
        except Exception as error:
            passed, message = False, _explain(error, project)
        results.append({"op": op, "kind": kind, "name": name, "passed": passed,
                        "message": message})
    return {"minires": where, "results": results}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="minires grader checks (run by "
                                     "`minires grade`)")
    parser.add_argument("--ops", required=True, help="comma-separated op names")
    parser.add_argument("--project", required=True)
    parser.add_argument("--gradcheck", default=None, help="path of gradient_check.py to use")
    parser.add_argument("--out", required=True, help="JSON file for the results")
    args = parser.parse_args(argv)
    report = run(set(args.ops.split(",")), os.path.abspath(args.project), args.gradcheck)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(report, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
