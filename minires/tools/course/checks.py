"""The grader's checks, run as a script in a fresh interpreter on the student's minires.

``minires grade`` starts ``python checks.py`` with ``PYTHONPATH`` pointing at the
student's project, so ``import minires`` below imports the STUDENT's package, while
this file and the gradient checker come from the instructor's installation (the
checker's source is loaded by path and bound to the student's ``minires``). Every check
runs on the CPU in float64 unless it says otherwise, is worth one point, and turns any
exception into a message; the results go to a JSON file.

The sample inputs and the loop references come from the op specs (``minires/opspec``)
of the instructor's installation, loaded by path like the checker and bound to the
student's ``minires``: the gradient checks are the specs' samples tagged ``course``,
the tests compare with the specs' loops.
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

mr = F = gradcheck = opspec = None  # bound by bind() once the student's minires is imported

# assignment op -> the specs whose 'course' samples it grades (F.linear is built on matmul)
GRADED_SPECS = {"matmul": ("matmul", "linear")}


def bind(minires, checker, specs) -> None:
    """Use ``minires`` (the student's), ``checker`` (gradcheck) and ``specs`` (the op
    specs bound to that minires) in every check."""
    global mr, F, gradcheck, opspec
    mr, F, gradcheck, opspec = minires, minires.nn.functional, checker, specs


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


# --------------------------------------------------------------------------- checks


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


def _conv2d_reference():
    rng = np.random.default_rng(6)
    x, w, b = rng.standard_normal((2, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3)), \
        rng.standard_normal(3)
    stride, padding = (2, 1), (1, 1)
    xt, wt, bt = t64(x), t64(w), t64(b)
    y = F.conv2d(xt, wt, bt, stride=stride, padding=padding)
    gy = rng.standard_normal(y.shape)
    y.backward(gy)
    gx, gw, gb = opspec.conv.conv2d_grad_reference(gy, x, w, b, stride, padding)
    close(grad_of(xt, "x.grad"), gx, "conv2d x.grad vs loops")
    close(grad_of(wt, "w.grad"), gw, "conv2d w.grad vs loops")
    close(grad_of(bt, "b.grad"), gb, "conv2d b.grad vs loops")


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


def _conv2d_forward():
    rng = np.random.default_rng(8)
    x, w, b = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3, 3, 2)), \
        rng.standard_normal(4)
    y = F.conv2d(t64(x, False), t64(w, False), t64(b, False), stride=(2, 1), padding=(1, 0))
    close(y.numpy(), opspec.conv.conv2d_reference(x, w, b, (2, 1), (1, 0)),
          "conv2d forward vs loops")


def _max_pool_reference():
    rng = np.random.default_rng(9)
    for k, stride, padding in (((3, 3), (1, 1), (1, 1)), ((2, 3), (2, 1), (0, 1))):
        x = opspec.inputs.ramp(2, 2, 6, 5)(rng)
        xt = t64(x)
        y = F.max_pool2d(xt, k, stride, padding)
        gy = rng.standard_normal(y.shape)
        y.backward(gy)
        (expected,) = opspec.pool.max_pool2d_grad_reference(gy, x, k, stride, padding)
        close(grad_of(xt, "x.grad"), expected,
              f"max_pool2d x.grad vs loops (kernel {k}, stride {stride}, padding {padding})")


def _max_pool_forward():
    x = np.random.default_rng(10).standard_normal((2, 3, 7, 6))
    y = F.max_pool2d(t64(x, False), 3, 2, 1)
    close(y.numpy(), opspec.pool.max_pool2d_reference(x, 3, 2, 1), "max_pool2d forward vs "
          "loops", atol=0, rtol=0)


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
    expected_mean, expected_var = np.zeros(3), np.ones(3)
    opspec.norm.batch_norm_reference(x, expected_mean, expected_var, training=True,
                                     momentum=0.1)
    close(mean.numpy(), expected_mean, "running_mean after one training step")
    close(var.numpy(), expected_var, "running_var after one step")


def gradient_checks(op) -> list:
    """(op, 'gradcheck', name, check) for the samples tagged 'course' of the op's specs."""
    out = []
    for name in GRADED_SPECS.get(op, (op,)):
        spec = opspec.spec(name)
        out += [(op, "gradcheck", sample.describe(), sample_check(spec, sample))
                for sample in spec.samples if "course" in sample.tags]
    return out


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
        ],
        "conv2d": [
            ("x, w and b gradients equal a loop implementation", _conv2d_reference),
            ("only one of x and w requires grad", _conv2d_frozen),
            ("float32 in, float32 gradient out",
             float32_check(lambda x: F.conv2d(x, mr.tensor(np.ones((2, 3, 3, 3), np.float32)),
                                              padding=1), (2, 3, 4, 4))),
            ("forward still equals a loop implementation", _conv2d_forward),
        ],
        "max_pool2d": [
            ("overlapping windows: gradients add up, as in a loop implementation",
             _max_pool_reference),
            ("float32 in, float32 gradient out", float32_check(pool(2), (2, 2, 4, 4))),
            ("forward still equals a loop implementation", _max_pool_forward),
        ],
        "batch_norm": [
            ("equals autograd through BatchNorm built from elementwise ops",
             _batch_norm_reference),
            ("loss = y.sum() in training mode gives x.grad = 0", _batch_norm_all_ones),
            ("running statistics still update in training mode", _batch_norm_running_stats),
            ("float32 in, float32 gradient out",
             float32_check(lambda x: F.batch_norm(x, None, None, training=True), (4, 3, 2, 2))),
        ],
    }
    return [check for op, named in tests.items() for check in gradient_checks(op)
            + [(op, "test", name, fn) for name, fn in named]]


# --------------------------------------------------------------------------- running


def _explain(error: BaseException, project: str) -> str:
    """One line on what went wrong, and where in the student's files."""
    where, root = "", os.path.realpath(project) + os.sep
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        path = os.path.realpath(frame.filename)
        if path.startswith(root) and f"{os.sep}course{os.sep}" not in path \
                and f"{os.sep}opspec{os.sep}" not in path:
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


def run(ops, project: str, gradcheck_path: str | None, opspec_path: str | None = None) -> dict:
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
         specs)
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
    parser.add_argument("--gradcheck", default=None, help="path of gradcheck.py to use")
    parser.add_argument("--opspec", default=None, help="path of the opspec package to use")
    parser.add_argument("--out", required=True, help="JSON file for the results")
    args = parser.parse_args(argv)
    report = run(set(args.ops.split(",")), os.path.abspath(args.project), args.gradcheck,
                 args.opspec)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(report, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
