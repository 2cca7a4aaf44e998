# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Gradient checking: proving a backward pass right
#
# **What you will build.** A finite-difference gradient checker, from scratch, and the
# reasons behind each of its three design choices: float64, central differences, and a
# *random* upstream gradient. Then you will watch it catch wrong backward passes, the
# kind everyone writes, including one that a naive checker lets through.
#
# **Which minires file it re-derives.** `minires/gradient_check.py`, the checker behind
# `mr.gradcheck`, which the test suite runs on every op (`tests/test_gradcheck_ops.py`)
# and whose own tests feed it deliberately wrong ops (`tests/test_bug_zoo.py`).
#
# Every op in tutorials 02, 05 and 06 has a hand-written backward pass. A wrong one
# rarely crashes: the network still trains, just worse, and nothing tells you why. The
# checker is how you *know*.

# %%
import _common  # fast mode, figures, and `import minires` from a source checkout
import matplotlib.pyplot as plt
import numpy as np

import minires as mr
import minires.nn.functional as F
from minires.autograd import Function

mr.manual_seed(0)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. How small should the step be? Why float64?
#
# Estimate the derivative of `tanh` at `x = 0.5` (exactly `1 - tanh(0.5)²`) with a
# step `eps`, in two ways:
#
# * forward difference `(f(x + eps) - f(x)) / eps`, whose truncation error shrinks
#   like `eps`;
# * central difference `(f(x + eps) - f(x - eps)) / (2 eps)`, whose error shrinks like
#   `eps²` (the `eps²` terms of the two Taylor expansions cancel).
#
# A smaller step is not always better: `f(x + eps) - f(x - eps)` subtracts two nearly
# equal numbers, each rounded to the precision of the dtype, and dividing by a tiny
# `eps` magnifies that rounding error. The best step balances the two errors.

# %%
x0 = 0.5
exact = 1 - np.tanh(x0) ** 2
epsilons = np.logspace(-12, -0.5, 60)
errors = {}
for dtype in (np.float32, np.float64):
    x = dtype(x0)
    for kind in ("forward", "central"):
        errs = []
        for eps in epsilons:
            e = dtype(eps)
            if kind == "forward":
                estimate = (np.tanh(x + e) - np.tanh(x)) / e
            else:
                estimate = (np.tanh(x + e) - np.tanh(x - e)) / (2 * e)
            errs.append(max(abs(float(estimate) - exact), 1e-17))
        errors[dtype.__name__, kind] = np.array(errs)

fig, ax = plt.subplots(figsize=(6.5, 4))
for (dtype, kind), errs in errors.items():
    ax.loglog(epsilons, errs, "-" if kind == "central" else "--", label=f"{dtype}, {kind}")
ax.set(xlabel="step eps", ylabel="|estimate - true derivative|",
       title="finite-difference error of d tanh/dx at 0.5")
ax.legend()
_common.show(fig, "03_error_vs_eps")

for dtype in ("float32", "float64"):
    errs = errors[dtype, "central"]
    best = int(np.argmin(errs))
    at_1e6 = errs[int(np.argmin(abs(epsilons - 1e-6)))]
    print(f"{dtype} central: best error {errs[best]:.1e} at eps={epsilons[best]:.0e}; "
          f"at eps=1e-6 the error is {at_1e6:.1e}")

# %% [markdown]
# The V shapes are the two errors meeting: on the right the truncation error (slope 1
# for forward, 2 for central differences), on the left the rounding error, which grows
# as the step shrinks. In float64 the central difference with `eps = 1e-6` is accurate
# to about ten digits (printed above), which is what lets a checker use tight
# tolerances. In float32 the bottom of the V is several orders of magnitude higher and
# sits at a large step, and at `eps = 1e-6` rounding dominates: a checker in float32
# would either flag correct code or need tolerances so loose that real bugs slip
# through. That is why `mr.gradcheck` refuses float32 inputs:

# %%
try:
    mr.gradcheck(lambda x: x.tanh(), [mr.randn(3, requires_grad=True)])
except TypeError as error:
    print("TypeError:", error)

# %% [markdown]
# ## 2. A checker in twenty lines
#
# An op `f` maps arrays to an array `y`; its backward computes `gx = J^T u` for the
# upstream gradient `u` it is given. That is the gradient of the *scalar*
# `L(x) = sum(u * f(x))`, and central differences can estimate the gradient of a
# scalar one coordinate at a time. So: pick `u`, run backward with it, and compare with
# `(L(x + eps e_i) - L(x - eps e_i)) / (2 eps)` for every coordinate `i`.


# %%
def check_grad(f, x, u, eps=1e-6, atol=1e-8, rtol=1e-6):
    """Compare the backward pass of f at x (float64 array) with central differences.

    Returns the largest violation of |analytic - numeric| <= atol + rtol |numeric|
    (<= 0 means every element passed).
    """
    xt = mr.tensor(x, requires_grad=True)
    f(xt).backward(u)  # analytic: J^T u
    analytic = xt.grad.data

    def L(values):
        with mr.no_grad():
            return float((f(mr.tensor(values)).data * u).sum())

    numeric = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[i] += eps
        minus[i] -= eps
        numeric[i] = (L(plus) - L(minus)) / (2 * eps)
    return float((np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))).max())


x = rng.standard_normal((3, 4))
u = rng.standard_normal((3, 4))
print("tanh: worst excess over tolerance", check_grad(lambda t: t.tanh(), x, u))
print("softmax: worst excess over tolerance", check_grad(lambda t: t.softmax(dim=1), x, u))

# %% [markdown]
# Both are negative: every element is inside the tolerance.
#
# ## 3. Why the upstream gradient must be random
#
# The lazy choice is `u = 1` everywhere (checking the gradient of `sum(f(x))`). It
# misses bugs. The classic victim is BatchNorm (tutorial 06): per channel,
# `xhat = (x - mean) / std` and `y = w * xhat + b`, and the correct gradient has three
# terms,
#
# `gx = w / std * (gy - mean(gy) - xhat * mean(gy * xhat))`.
#
# The last term is the path through the variance. Drop it and check with `u = 1`:
# then `mean(gy * xhat) = mean(xhat) = 0`, so the missing term was zero anyway, and the
# wrong backward returns exactly the right numbers.


# %%
class BatchNorm1dNoVarianceTerm(Function):
    """BatchNorm over (N, C) without affine parameters, with a BUG in backward."""

    @staticmethod
    def forward(ctx, x):
        mean, std = x.mean(axis=0), np.sqrt(x.var(axis=0) + 1e-5)
        xhat = (x - mean) / std
        ctx.save_for_backward(xhat, std)
        return xhat

    @staticmethod
    def backward(ctx, gy):
        xhat, std = ctx.saved_tensors
        return (gy - gy.mean(axis=0)) / std  # BUG: forgot "- xhat * mean(gy * xhat)"


def buggy_bn(t):
    return BatchNorm1dNoVarianceTerm.apply(t)


x = rng.standard_normal((6, 3))
ones = np.ones((6, 3))
random_u = rng.standard_normal((6, 3))
print(f"buggy BatchNorm, u = 1:      worst excess {check_grad(buggy_bn, x, ones):+.2e}"
      "   -> passes: the bug is invisible")
print(f"buggy BatchNorm, u = random: worst excess {check_grad(buggy_bn, x, random_u):+.2e}"
      "   -> fails: caught")

# %% [markdown]
# So `mr.gradcheck` always draws a random `u` (from a fixed seed, so a failure is
# reproducible), and keeps its entries away from zero so that no output is silently
# ignored.
#
# ## 4. `mr.gradcheck` catching real mistakes
#
# `mr.gradcheck(fn, inputs)` does what `check_grad` does, for every input with
# `requires_grad=True`, and raises `GradcheckError` naming the input, the worst element,
# both values and the errors. Here are three bugs from `tests/test_bug_zoo.py`, each
# one people really write.


# %%
class MulForgetsGy(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, gy):
        a, b = ctx.saved_tensors
        return b, a  # BUG: the local derivatives, without the chain rule's "* gy"


class AddAveragesBias(Function):
    @staticmethod
    def forward(ctx, a, b):
        return a + b

    @staticmethod
    def backward(ctx, gy):
        return gy, gy.mean(axis=0)  # BUG: b was broadcast over axis 0, must SUM


class ReluWithoutMask(Function):
    @staticmethod
    def forward(ctx, x):
        return np.maximum(x, 0)

    @staticmethod
    def backward(ctx, gy):
        return gy  # BUG: lets the gradient through where x < 0 too


def t64(*shape):
    """A random float64 leaf tensor: the kind of input gradcheck wants."""
    return mr.tensor(rng.standard_normal(shape), dtype=mr.float64, requires_grad=True)


bugs = {
    "mul forgets gy": (lambda a, b: MulForgetsGy.apply(a, b), [t64(3, 4), t64(3, 4)]),
    "bias gradient averaged": (lambda a, b: AddAveragesBias.apply(a, b), [t64(4, 3), t64(3)]),
    "relu without mask": (lambda x: ReluWithoutMask.apply(x), [t64(3, 5)]),
    "batchnorm without variance term": (buggy_bn, [t64(6, 3)]),
}
caught = 0
for name, (fn, inputs) in bugs.items():
    try:
        mr.gradcheck(fn, inputs)
        print(f"{name}: passed (not caught!)")
    except mr.GradcheckError as error:
        caught += 1
        print(f"{name}: CAUGHT\n    {error}")
print(f"gradcheck caught {caught} of {len(bugs)} wrong backward passes")

# %% [markdown]
# Note the second bug: its gradient has the right *shape*, so the engine's shape check
# of tutorial 02 cannot see it. Only the values are wrong.
#
# ## 5. Kinks: when the checker is wrong
#
# ReLU has no derivative at 0. If an input sits exactly on (or within `eps` of) the
# kink, the central difference straddles it and returns a half-way slope, while
# backward returns 0 or 1: a false alarm. Test inputs are therefore drawn away from
# kinks: minires's op specs (`minires/opspec/`) keep ReLU inputs at least 0.1
# from zero and gives max and max-pool inputs distinct values, so no maximum is a
# near-tie.

# %%
x_kink = mr.tensor([-1.0, 0.0, 2.0], dtype=mr.float64, requires_grad=True)
try:
    mr.gradcheck(F.relu, [x_kink])
except mr.GradcheckError as error:
    print("x contains 0 -> false alarm:\n   ", error)
away = mr.tensor([-1.0, 0.3, 2.0], dtype=mr.float64, requires_grad=True)
print("inputs away from the kink pass:", mr.gradcheck(F.relu, [away]))

# %% [markdown]
# ## 6. Big inputs: random directions
#
# Checking every coordinate costs two forward passes per element: fine for a `4×3`
# matrix, too slow for a convolution weight of thousands of elements. For large inputs
# `mr.gradcheck` compares *directional* derivatives instead: for a random unit vector
# `v`, `(L(x + eps v) - L(x - eps v)) / (2 eps)` must equal `<gx, v>`. A wrong entry
# anywhere in `gx` changes that dot product, so a few directions catch what a full
# check would, at a fraction of the cost.
#
# With that, here are the checks minires's test suite runs on its core ops, in float64
# with a random upstream gradient:

# %%
size = _common.pick(8, 5)
checks = {
    "conv2d (stride 2, padding 1)": (lambda x, w: F.conv2d(x, w, stride=2, padding=1),
                                     [t64(2, 3, size, size), t64(4, 3, 3, 3)]),
    "batch_norm (training)": (lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
                              [t64(4, 3, size, size), t64(3), t64(3)]),
    "max_pool2d": (lambda x: F.max_pool2d(x, 2), [t64(2, 3, size - 1, size - 1)]),
    "cross_entropy": (lambda x: F.cross_entropy(x, np.array([1, 0, 3])), [t64(3, 5)]),
    "linear": (F.linear, [t64(5, 4), t64(3, 4), t64(3)]),
}
for name, (fn, inputs) in checks.items():
    n = sum(t.numel() for t in inputs)
    print(f"{name:30s} {n:5d} input elements: gradcheck passed = {mr.gradcheck(fn, inputs)}")

# %% [markdown]
# (max-pooling on random floats has no ties, so it has no kink to worry about here.)
#
# ## Exercises
#
# 1. Repeat the plot of section 1 with `f(x) = exp(10 x)` at `x = 1`. Where is the best
#    step now, and why does it move? (Hint: the rounding error is relative to `|f|`.)
# 2. Write the *other* BatchNorm bug, the one without the mean term
#    (`gx = (gy - xhat * mean(gy * xhat)) / std`). Is it caught with `u = 1`? Explain
#    with the formula.
# 3. Extend `check_grad` to random directions (section 6) and compare its running time
#    with the coordinate version on a `(64, 64)` input.
# 4. `mr.gradcheck(F.max_pool2d ...)` on an input with two equal values in a window:
#    does it pass? What does minires's max-pool backward do with ties, and what would
#    a better test input be?
# 5. The softmax backward `gy * y * (1 - y)` keeps only the diagonal of the Jacobian.
#    Write it as a Function and check it, first with `u = 1` (what happens, and why?)
#    and then with `mr.gradcheck`.
