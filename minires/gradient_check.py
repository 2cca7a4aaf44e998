"""Check a hand-written backward pass against finite differences.

For a function f and a RANDOM upstream gradient u, backpropagation computes the
gradient of the scalar L(x) = sum(u * f(x)) with respect to every input. Central
differences estimate the same numbers from two evaluations of L per coordinate:

    dL/dx_i  ~=  (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)        error O(eps^2)

Three choices make the check hard to fool:

* float64: with eps = 1e-6 the float32 rounding error (1e-7 / 1e-6) would swamp the
  comparison, float64's (1e-16 / 1e-6) does not.
* a random u, never all ones: with u = 1 some wrong backward passes agree exactly with
  the right one (BatchNorm without its mean term, a softmax that ignores gy), because
  the terms they drop sum to zero.
* every coordinate of a small input (the whole gradient), and for a large input
  several random directions v, comparing (L(x + eps v) - L(x - eps v)) / (2 eps)
  with <grad, v>: a wrong entry anywhere changes that dot product.
"""

from __future__ import annotations

import numpy

from . import backend
from .autograd import no_grad
from .tensors import Tensor


class GradcheckError(AssertionError):
    """Raised when an analytic gradient disagrees with the numerical one."""


def gradcheck(fn, inputs, *, eps: float = 1e-6, atol: float = 1e-8, rtol: float = 1e-6,
              max_full: int = 512, n_directions: int = 8, seed: int = 0,
              raise_exception: bool = True) -> bool:
    """Compare ``fn``'s backward pass with central differences.

    ``inputs`` is a sequence of float64 tensors; those with ``requires_grad=True`` are
    checked. ``fn(*inputs)`` must return one tensor. An element passes when
    ``|analytic - numeric| <= atol + rtol * |numeric|``. Returns True, or raises
    ``GradcheckError`` naming the input, the worst element (or direction), both values
    and their absolute and relative error (returns False if ``raise_exception=False``).
    """
    inputs = list(inputs)
    checked = [k for k, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True, nothing to check")
    for k in checked:
        if inputs[k].dtype != numpy.float64:
            raise TypeError(f"gradcheck: input {k} has dtype {inputs[k].dtype}; finite "
                            "differences need float64 inputs (use .double())")
        # perturbations below write through a flat view, which needs contiguous data
        xp_k = backend.array_module(inputs[k].data)
        inputs[k].data = xp_k.ascontiguousarray(inputs[k].data)

    out = fn(*inputs)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return one Tensor, got {type(out).__name__}")
    xp = backend.array_module(out.data)
    rng = numpy.random.default_rng(seed)
    # random upstream gradient, kept away from zero so no output is silently ignored
    u = rng.standard_normal(out.shape) + numpy.sign(rng.standard_normal(out.shape)) * 0.1
    u = xp.asarray(u.astype(numpy.float64))

    for k in checked:
        inputs[k].grad = None
    out.backward(u)
    analytic = {k: (inputs[k].grad.data if inputs[k].grad is not None
                    else xp.zeros(inputs[k].shape, dtype=numpy.float64)) for k in checked}

    def loss() -> float:
        with no_grad():
            return float((fn(*inputs).data * u).sum())

    for k in checked:
        x = inputs[k].data
        if x.size <= max_full:
            failure = _check_coordinates(loss, x, analytic[k], eps, atol, rtol)
            where = "element"
        else:
            failure = _check_directions(loss, x, analytic[k], eps, atol, rtol, n_directions, rng)
            where = "random direction"
        if failure is not None:
            if not raise_exception:
                return False
            position, a, n = failure
            abs_err = abs(a - n)
            rel_err = abs_err / max(abs(n), abs(a), 1e-300)
            raise GradcheckError(
                f"gradcheck failed for input {k} (shape {tuple(x.shape)}): worst {where} "
                f"{position}: analytic {a:.10g}, numeric {n:.10g}, abs error {abs_err:.3g}, "
                f"rel error {rel_err:.3g} (allowed: {atol:g} + {rtol:g} * |numeric|)"
            )
    return True


def _worst(analytic, numeric, atol, rtol):
    """Index of the largest tolerance violation, or None if every entry passes."""
    excess = numpy.abs(analytic - numeric) - (atol + rtol * numpy.abs(numeric))
    worst = int(numpy.argmax(excess))
    return worst if excess.flat[worst] > 0 else None


def _check_coordinates(loss, x, analytic, eps, atol, rtol):
    numeric = numpy.empty(x.size)
    flat = x.reshape(-1)  # a view: perturbing it perturbs the input in place
    for i in range(x.size):
        original = flat[i].item()
        flat[i] = original + eps
        plus = loss()
        flat[i] = original - eps
        minus = loss()
        flat[i] = original
        numeric[i] = (plus - minus) / (2 * eps)
    analytic = backend.to_numpy(analytic).reshape(-1)
    worst = _worst(analytic, numeric, atol, rtol)
    if worst is None:
        return None
    index = tuple(int(i) for i in numpy.unravel_index(worst, x.shape))
    return index, float(analytic[worst]), float(numeric[worst])


def _check_directions(loss, x, analytic, eps, atol, rtol, n_directions, rng):
    xp = backend.array_module(x)
    original = x.copy()
    analytic = backend.to_numpy(analytic)
    a_dots, n_dots = numpy.empty(n_directions), numpy.empty(n_directions)
    for d in range(n_directions):
        v = rng.standard_normal(x.shape)
        v /= numpy.linalg.norm(v)
        v_xp = xp.asarray(v)
        x[...] = original + eps * v_xp
        plus = loss()
        x[...] = original - eps * v_xp
        minus = loss()
        x[...] = original
        n_dots[d] = (plus - minus) / (2 * eps)
        a_dots[d] = float((analytic * v).sum())
    worst = _worst(a_dots, n_dots, atol, rtol)
    if worst is None:
        return None
    return f"#{worst}", float(a_dots[worst]), float(n_dots[worst])
