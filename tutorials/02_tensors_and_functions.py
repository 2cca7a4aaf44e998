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
# # 02 · Tensors, Functions and broadcasting
#
# **What you will build.** Your own differentiable operations on whole arrays: an
# elementwise op, a matrix multiply and a broadcasting addition, each a `Function`
# subclass with its `forward` and `backward` side by side. Then a linear regression
# trained with nothing but your ops.
#
# **Which minires files it re-derives.** `minires/autograd.py` (`Function`, `Context`,
# `Function.apply`) and `minires/ops/basic.py` (`Mul`, `Matmul` and `sum_to`, the
# helper that makes broadcasting differentiable).
#
# Tutorial 01 differentiated single numbers. Real networks work on arrays of millions of
# numbers, and a Python object per number would be far too slow. The idea stays the
# same, one level up: a node of the graph is now a whole array operation, and its
# backward pass is written with array operations too.

# %%
import _common  # fast mode, figures, and `import minires` from a source checkout
import matplotlib.pyplot as plt
import numpy as np

import minires as mr
from minires.autograd import Function
from minires.ops.basic import sum_to as minires_sum_to

mr.manual_seed(0)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. A Tensor is an array that remembers where it came from
#
# `mr.tensor` wraps a NumPy array (`.data`; on a GPU it is a CuPy array, tutorial 09).
# Floats default to float32, as in PyTorch. `requires_grad=True` marks a leaf whose
# gradient we want; every result computed from it gets a `grad_fn`, the graph node
# that made it.

# %%
x = mr.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
y = (x * x).sum()
print("x.data is a", type(x.data).__name__, "of", x.dtype, "and shape", x.shape)
print("y =", y)
print("y.grad_fn:", y.grad_fn, " which points back to:", y.grad_fn.inputs[0].grad_fn)
y.backward()
print("dy/dx = 2x:\n", x.grad)

# %% [markdown]
# ## 2. Writing a `Function`
#
# An op in minires is a subclass of `Function` with two static methods:
#
# * `forward(ctx, *arrays, **settings)` gets **plain arrays** (not Tensors) and returns
#   an array. It stores what the backward pass will need on `ctx`, the `Context`:
#   arrays through `ctx.save_for_backward(...)`, anything else as an attribute.
# * `backward(ctx, gy)` gets `gy`, the gradient of the final loss with respect to the
#   op's output (same shape as the output), and returns one gradient per input, each of
#   the shape of that input.
#
# `MyOp.apply(tensor, ...)` unwraps the tensors, picks NumPy or CuPy once (`ctx.xp`),
# runs `forward`, and wraps the result in a Tensor whose `grad_fn` is the context.
# Here is softplus, `y = log(1 + e^x)`, a smooth ReLU. Its derivative is the sigmoid.


# %%
class Softplus(Function):
    @staticmethod
    def forward(ctx, x):
        xp = ctx.xp  # numpy or cupy: never import one of them inside an op
        # log(1 + e^x) overflows for large x; this form does not
        y = xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))
        ctx.save_for_backward(x)
        return y

    @staticmethod
    def backward(ctx, gy):
        # y = log(1 + e^x)  =>  gx = gy * sigmoid(x)
        (x,) = ctx.saved_tensors
        return gy / (1 + ctx.xp.exp(-x))


def softplus(x):
    return Softplus.apply(x)


x = mr.tensor([-30.0, -1.0, 0.0, 1.0, 30.0], requires_grad=True)
y = softplus(x)
y.sum().backward()
print("softplus(x)      =", y)
print("d sum / dx       =", x.grad)
print("sigmoid(x)       =", x.detach().sigmoid())

# %% [markdown]
# Three things to notice:
#
# 1. `backward` returns `gy * (local derivative)`, not the local derivative alone. The
#    engine hands each op the gradient flowing in from above; the op only applies the
#    chain rule for its own step.
# 2. The op never builds a Jacobian. For `y = f(x)` with `x` and `y` of `n` elements the
#    Jacobian is `n × n`, and for an elementwise op it is diagonal, so
#    `gx = J^T gy` is just `f'(x) * gy`. Every backward in minires computes such a
#    *vector-Jacobian product* directly.
# 3. Every subclass registers itself in `Function.registry`, so minires's tests can
#    list every op and fail when one has no gradient check (tutorial 03).
#
# Let us check point 2 numerically: build the full Jacobian column by column (one
# `backward` per output, with a one-hot `gy`) and compare `J^T gy` with what backward
# returns for a random `gy`.

# %%
x0 = rng.standard_normal(5)
jacobian = np.zeros((5, 5))
for i in range(5):
    xt = mr.tensor(x0, requires_grad=True)
    onehot = np.eye(5)[i]
    softplus(xt).backward(onehot)  # gradient of y_i with respect to x: row i of J
    jacobian[i] = xt.grad.data
print("Jacobian of softplus (diagonal, as promised):\n", np.round(jacobian, 3))
gy = rng.standard_normal(5)
xt = mr.tensor(x0, requires_grad=True)
softplus(xt).backward(gy)
print("max |J^T gy - backward(gy)| =", np.abs(jacobian.T @ gy - xt.grad.data).max())

# %% [markdown]
# ## 3. Matrix multiply: let the shapes guide you
#
# For `y = a @ b` with `a` of shape `(N, K)` and `b` of shape `(K, M)`, `gy` has the
# shape of `y`, `(N, M)`. The gradient of `a` must be `(N, K)` and is linear in `gy`
# and `b`; the only product of those with that shape is `gy @ b.T`. Likewise `gb`
# must be `(K, M)`: `a.T @ gy`. (Write out one element, `y_nm = Σ_k a_nk b_km`, to
# see that this is exactly the chain rule.)
#
# `ctx.needs_input_grad` says which inputs need a gradient, so the op can skip work:
# the gradient of a data batch is rarely needed.


# %%
class MyMatmul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a @ b  # (N, K) @ (K, M) -> (N, M)

    @staticmethod
    def backward(ctx, gy):
        # y = a @ b  =>  ga = gy @ b^T, gb = a^T @ gy
        a, b = ctx.saved_tensors
        ga = gy @ b.T if ctx.needs_input_grad[0] else None  # (N, M) @ (M, K) -> (N, K)
        gb = a.T @ gy if ctx.needs_input_grad[1] else None  # (K, N) @ (N, M) -> (K, M)
        return ga, gb


a_np, b_np = rng.standard_normal((4, 3)), rng.standard_normal((3, 2))
gy = rng.standard_normal((4, 2))
a1, b1 = mr.tensor(a_np, requires_grad=True), mr.tensor(b_np, requires_grad=True)
MyMatmul.apply(a1, b1).backward(gy)
a2, b2 = mr.tensor(a_np, requires_grad=True), mr.tensor(b_np, requires_grad=True)
mr.matmul(a2, b2).backward(gy)
print("MyMatmul vs minires matmul, max difference of ga:",
      np.abs(a1.grad.data - a2.grad.data).max(),
      " of gb:", np.abs(b1.grad.data - b2.grad.data).max())

# %% [markdown]
# ## 4. Broadcasting, and the step everyone forgets
#
# NumPy lets you add a bias of shape `(C,)` to a batch of shape `(N, C)`: the bias is
# *broadcast*, copied along the batch axis. In the graph, each bias element was used
# `N` times, so (tutorial 01, section 4) its gradient is the **sum** of the `N`
# gradients that reach it. In general: sum `gy` over every axis that broadcasting
# added or stretched, so the gradient gets the input's shape back.
#
# Here is that helper, written from scratch:


# %%
def sum_to(g, shape):
    """Sum g over the axes broadcasting created, so that it has `shape`."""
    # axes that broadcasting prepended: (C,) against (N, C) gains a leading axis
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    # axes of size 1 that were stretched: (N, 1) against (N, C)
    for axis, n in enumerate(shape):
        if n == 1 and g.shape[axis] != 1:
            g = g.sum(axis=axis, keepdims=True)
    return g


for target_shape, g_shape in [((3,), (5, 3)), ((5, 1), (5, 3)), ((1, 3), (4, 5, 3)),
                              ((2, 1, 3), (2, 4, 3)), ((), (2, 3))]:
    g = rng.standard_normal(g_shape)
    ours, theirs = sum_to(g, target_shape), minires_sum_to(np, g, target_shape)
    assert ours.shape == target_shape and np.allclose(ours, theirs)
    print(f"sum_to {g_shape} -> {target_shape}: matches minires.ops.basic.sum_to")


class MyAdd(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = a.shape, b.shape  # shapes only: the backward needs no values
        return a + b

    @staticmethod
    def backward(ctx, gy):
        # y = a + b  =>  ga = gy, gb = gy, each summed back to its input's shape
        sa, sb = ctx.shapes
        return sum_to(gy, sa), sum_to(gy, sb)


# %% [markdown]
# What happens without `sum_to`? The engine checks that every gradient has the shape of
# its input and stops with an error that names the op, rather than silently corrupting
# the gradient:


# %%
class AddWithoutSumTo(Function):
    @staticmethod
    def forward(ctx, a, b):
        return a + b

    @staticmethod
    def backward(ctx, gy):
        return gy, gy  # BUG: b was broadcast, its gradient needs summing


batch, bias = mr.randn(5, 3), mr.zeros(3, requires_grad=True)
try:
    AddWithoutSumTo.apply(batch, bias).sum().backward()
except RuntimeError as error:
    print("RuntimeError:", error)

MyAdd.apply(batch, bias).sum().backward()
print("with sum_to the bias gradient is", bias.grad, "(each element was used 5 times)")

# %% [markdown]
# A subtler bug passes the shape check: averaging instead of summing
# (`gy.mean(axis=0)`) gives the right shape and the wrong values. Tutorial 03 builds
# the tool that catches that kind of bug.
#
# ## 5. Training with your own ops
#
# A linear regression `y = x @ w + b` fitted by gradient descent, where the matmul and
# the broadcasting addition are the two Functions above. The loss uses minires's own
# ops (`-`, `**`, `mean`): your Functions and minires's compose into one graph.

# %%
n = _common.pick(200, 50)
steps = _common.pick(200, 60)
x_data = rng.uniform(-3, 3, (n, 1)).astype(np.float32)
y_data = (2.0 * x_data + 1.0 + rng.normal(0, 0.5, (n, 1))).astype(np.float32)
X_t, Y_t = mr.tensor(x_data), mr.tensor(y_data)
w = mr.zeros(1, 1, requires_grad=True)
b = mr.zeros(1, requires_grad=True)
losses = []
for _ in range(steps):
    prediction = MyAdd.apply(MyMatmul.apply(X_t, w), b)  # (n, 1) @ (1, 1) + (1,)
    loss = ((prediction - Y_t) ** 2).mean()
    w.grad = b.grad = None
    loss.backward()
    with mr.no_grad():  # the update itself must not become part of any graph
        w.data -= 0.05 * w.grad.data
        b.data -= 0.05 * b.grad.data
    losses.append(loss.item())
print(f"fitted y = {w.item():.3f} x + {b.item():.3f}   (true: y = 2 x + 1, plus noise)")
print(f"loss fell from {losses[0]:.3f} to {losses[-1]:.3f}")

fig, (ax_fit, ax_loss) = plt.subplots(1, 2, figsize=(10, 3.5))
ax_fit.scatter(x_data[:, 0], y_data[:, 0], s=8, alpha=0.5, label="data")
line = np.linspace(-3, 3, 2)
ax_fit.plot(line, w.item() * line + b.item(), "r", label="fit")
ax_fit.legend()
ax_fit.set(xlabel="x", ylabel="y", title="linear regression with MyMatmul and MyAdd")
ax_loss.semilogy(losses)
ax_loss.set(xlabel="step", ylabel="mean squared error", title="loss")
_common.show(fig, "02_regression")

# %% [markdown]
# ## 6. Three rules every op in minires follows
#
# * **Never modify an input or `gy` in place.** Another op may hold the same array:
#   `gy` is often shared by both inputs of an addition.
# * **Free what you saved.** After backward the engine drops the saved arrays
#   (`Context.release`); a second `backward()` through the same graph raises an error
#   unless the first one passed `retain_graph=True`:

# %%
x = mr.tensor([1.0, 2.0], requires_grad=True)
y = softplus(x).sum()
y.backward()
try:
    y.backward()
except RuntimeError as error:
    print("RuntimeError:", str(error).split(";")[0])

# %% [markdown]
# * **Pick the array module from the inputs** (`ctx.xp`), never with an `if gpu:`.
#   The same `Softplus` above runs unchanged on a GPU (tutorial 09).
#
# Open `minires/ops/basic.py` now: `Mul`, `Div`, `Matmul` and `sum_to` are the code of
# this notebook, plus a few more cases (vectors in `Matmul`, Python numbers in
# `binary_operands`).
#
# ## Exercises
#
# 1. Write `MyMul` (`y = a * b` with broadcasting) and check it against `mr.tensor`'s
#    `*` for shapes `(4, 3)` and `(3,)`, and for `(4, 1)` and `(1, 3)`.
# 2. Write `LogSumExp(x, dim)` as a single Function, stable for large `x` (subtract the
#    max first). Its backward is a softmax: derive it.
# 3. `MyMatmul` fails for a batched `a` of shape `(B, N, K)` with `b` of shape `(K, M)`.
#    Why? Fix `ga` and `gb` (hint: `sum_to` again, and `swapaxes`), then compare with
#    `Matmul.backward` in `minires/ops/basic.py`.
# 4. Replace `sum_to` by the averaging bug `gy.mean(axis=0)` in `MyAdd`. The regression
#    still trains. Why? What is wrong with the bias it finds, and how would you notice?
# 5. Time `MyMatmul` on `(512, 512)` matrices against a version that loops over rows in
#    Python. By how much is one array operation faster than 512 small ones?
