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
# # 01 · Scalar autograd: backpropagation in one page
#
# **What you will build.** A `Value` class that holds one number, remembers how it was
# computed, and can compute the derivative of a final result with respect to every
# number that went into it: reverse-mode automatic differentiation ("backprop"). With it
# you will train a small neural network on a toy data set, using nothing but Python
# floats.
#
# **Which minires file it re-derives.** `minires/autograd.py`: the graph node
# `Context`, `_topological_order` and `run_backward` (the `Tensor` itself is in
# `minires/tensors.py`). minires does the same thing on whole arrays instead of single
# numbers; at the end of this notebook we check that both give the same gradients.
#
# You need: Python and a little NumPy. No calculus beyond "the derivative of x² is 2x"
# and the chain rule, which we will use rather than prove.

# %%
import math
import random

import _common  # fast mode, figures, and `import minires` from a source checkout
import matplotlib.pyplot as plt
import numpy as np

import minires as mr

random.seed(0)
np.random.seed(0)

# %% [markdown]
# ## 1. A derivative is a slope
#
# The derivative of `f` at `x` says how much `f(x)` changes when `x` moves a tiny bit:
# `f'(x) ≈ (f(x + h) - f(x - h)) / (2h)` for a small `h`. We can always *estimate* a
# derivative this way (we will lean on this in tutorial 03), but it costs two
# evaluations of `f` per input. A network has millions of inputs (its weights), so we
# need something better: an exact derivative for *all* inputs from one backward sweep.


# %%
def f(x):
    return 3 * x**2 - 4 * x + 5


x0, h = 3.0, 1e-6
slope = (f(x0 + h) - f(x0 - h)) / (2 * h)
print(f"numerical slope of f at x={x0}: {slope:.6f}   (by hand: 6x - 4 = {6 * x0 - 4})")

xs = np.linspace(-2, 5, 100)
fig, ax = plt.subplots(figsize=(5, 3.5))
ax.plot(xs, f(xs), label="f(x) = 3x² - 4x + 5")
ax.plot(xs, f(x0) + slope * (xs - x0), "--", label=f"tangent at x={x0}, slope {slope:.1f}")
ax.plot([x0], [f(x0)], "o")
ax.set(xlabel="x", ylabel="f(x)", ylim=(-5, 60))
ax.legend()
_common.show(fig, "01_tangent")

# %% [markdown]
# ## 2. The `Value` class
#
# Every arithmetic operation on `Value`s creates a new `Value` that remembers
#
# * its inputs (`_prev`): the edges of the computation graph, and
# * a small function `_backward` that, given the gradient of the final result with
#   respect to *this* value (`self.grad`), adds the right amount to the gradients of
#   its inputs. That amount is the **chain rule**: if `out = a * b`, then
#   `d result / d a = d result / d out * d out / d a = out.grad * b`.
#
# Note the `+=` in every `_backward`: a value used twice (say `a * a`) receives a
# gradient from each use, and the contributions add up. Forgetting this is the
# classic bug of hand-written autograd; we will provoke it in section 4.


# %%
class Value:
    """One number, the graph that produced it, and its gradient."""

    def __init__(self, data, _prev=(), _op=""):
        self.data = float(data)
        self.grad = 0.0  # d(final result) / d(self), filled in by backward()
        self._prev = _prev  # the Values this one was computed from
        self._op = _op  # for printing only
        self._backward = lambda: None  # leaves have nothing to pass on

    def __repr__(self):
        return f"Value(data={self.data:.4f}, grad={self.grad:.4f})"

    # each operation: compute the result, then say how to send its gradient back
    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data + other.data, (self, other), "+")

        def _backward():  # d(a + b)/da = 1, d(a + b)/db = 1
            self.grad += out.grad
            other.grad += out.grad

        out._backward = _backward
        return out

    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data * other.data, (self, other), "*")

        def _backward():  # d(a * b)/da = b, d(a * b)/db = a
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad

        out._backward = _backward
        return out

    def __pow__(self, p):
        assert isinstance(p, (int, float)), "only constant exponents"
        out = Value(self.data**p, (self,), f"**{p}")

        def _backward():  # d(a^p)/da = p a^(p-1)
            self.grad += p * self.data ** (p - 1) * out.grad

        out._backward = _backward
        return out

    def exp(self):
        out = Value(math.exp(self.data), (self,), "exp")

        def _backward():  # d(e^a)/da = e^a, which is out itself
            self.grad += out.data * out.grad

        out._backward = _backward
        return out

    def tanh(self):
        t = math.tanh(self.data)
        out = Value(t, (self,), "tanh")

        def _backward():  # d tanh(a)/da = 1 - tanh(a)^2
            self.grad += (1 - t * t) * out.grad

        out._backward = _backward
        return out

    def relu(self):
        out = Value(max(self.data, 0.0), (self,), "relu")

        def _backward():  # 1 where a > 0, else 0
            self.grad += (self.data > 0) * out.grad

        out._backward = _backward
        return out

    # everything else is built from the operations above
    def __neg__(self):
        return self * -1

    def __sub__(self, other):
        return self + (-other)

    def __truediv__(self, other):
        return self * other**-1

    def __radd__(self, other):  # 2 + a
        return self + other

    def __rmul__(self, other):  # 2 * a
        return self * other

    def __rsub__(self, other):  # 2 - a
        return Value(other) - self

    def backward(self):
        """Fill in .grad of every Value this one depends on."""
        # Visit the graph so that every node comes after all the nodes it feeds into
        # (a reverse topological order). Iterative, not recursive: Python's recursion
        # limit (about 1000) would break on a long chain of operations.
        order, visited, stack = [], set(), [(self, False)]
        while stack:
            node, children_done = stack.pop()
            if children_done:
                order.append(node)
            elif id(node) not in visited:
                visited.add(id(node))
                stack.append((node, True))
                stack.extend((child, False) for child in node._prev)
        # d self / d self = 1, then each node passes its gradient to its inputs
        self.grad = 1.0
        for node in reversed(order):
            node._backward()


# %% [markdown]
# ## 3. One neuron, by hand
#
# A neuron computes `tanh(w1*x1 + w2*x2 + b)`. We build it from `Value`s, call
# `backward()`, and compare every gradient with the finite-difference estimate of
# section 1.

# %%
def neuron(x1, x2, w1, w2, b):
    return (x1 * w1 + x2 * w2 + b).tanh()


inputs = dict(x1=2.0, x2=0.0, w1=-3.0, w2=1.0, b=6.8813735870195432)
leaves = {name: Value(v) for name, v in inputs.items()}
out = neuron(**leaves)
out.backward()
print("output:", out)
for name, leaf in leaves.items():
    plus = {k: Value(v + 1e-6 * (k == name)) for k, v in inputs.items()}
    minus = {k: Value(v - 1e-6 * (k == name)) for k, v in inputs.items()}
    numeric = (neuron(**plus).data - neuron(**minus).data) / 2e-6
    print(f"  d out / d {name:2s}: backprop {leaf.grad:+.6f}   finite difference {numeric:+.6f}")

# %% [markdown]
# Each node did one small local computation, and the chain rule stitched them together.
# The cost of `backward()` is about the cost of the forward computation, *whatever the
# number of inputs*: that is why reverse mode is the right choice for training, where
# one number (the loss) depends on very many inputs (the weights).
#
# ## 4. Why `+=`: a value used twice
#
# `b = a + a` should give `db/da = 2`. If `_backward` *assigned* the gradient instead
# of adding to it, the second use would overwrite the first. Here is that bug:

# %%
a = Value(3.0)
b = a + a
b.backward()
print(f"correct engine: d(a + a)/da = {a.grad}")


class BuggyValue(Value):
    def __add__(self, other):
        out = BuggyValue(self.data + other.data, (self, other), "+")

        def _backward():
            self.grad = out.grad  # BUG: '=' instead of '+='
            other.grad = out.grad

        out._backward = _backward
        return out


a = BuggyValue(3.0)
b = a + a
b.backward()
print(f"buggy engine:   d(a + a)/da = {a.grad}   <- wrong, should be 2")

# %% [markdown]
# minires has the same rule in `run_backward` (`minires/autograd.py`): gradients that
# reach a node along several paths are summed into a dictionary before the node's
# `backward` runs, and `.grad` of a leaf *accumulates* across `backward()` calls,
# which is why training loops call `zero_grad()`.
#
# ## 5. A tiny neural network, made of `Value`s
#
# A multi-layer perceptron is neurons stacked in layers. We train one to separate two
# interleaved half-moons in the plane, with gradient descent: compute the loss, call
# `backward()`, nudge every weight against its gradient, repeat.


# %%
class Neuron:
    def __init__(self, n_in, nonlinear=True):
        self.w = [Value(random.uniform(-1, 1)) for _ in range(n_in)]
        self.b = Value(0.0)
        self.nonlinear = nonlinear

    def __call__(self, x):
        act = sum((wi * xi for wi, xi in zip(self.w, x)), self.b)
        return act.tanh() if self.nonlinear else act

    def parameters(self):
        return self.w + [self.b]


class Layer:
    def __init__(self, n_in, n_out, **kwargs):
        self.neurons = [Neuron(n_in, **kwargs) for _ in range(n_out)]

    def __call__(self, x):
        out = [n(x) for n in self.neurons]
        return out[0] if len(out) == 1 else out

    def parameters(self):
        return [p for n in self.neurons for p in n.parameters()]


class MLP:
    def __init__(self, n_in, sizes):
        dims = [n_in] + sizes
        self.layers = [Layer(dims[i], dims[i + 1], nonlinear=i != len(sizes) - 1)
                       for i in range(len(sizes))]

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def parameters(self):
        return [p for layer in self.layers for p in layer.parameters()]


def make_moons(n, noise=0.1, seed=0):
    """Two interleaving half circles; labels -1 and +1."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, math.pi, n)
    upper = rng.random(n) < 0.5
    x = np.where(upper, np.cos(t), 1 - np.cos(t))
    y = np.where(upper, np.sin(t), 0.5 - np.sin(t))
    points = np.stack([x, y], axis=1) + rng.normal(0, noise, (n, 2))
    return points, np.where(upper, -1.0, 1.0)


n_points = _common.pick(80, 30)
steps = _common.pick(80, 20)
X, Y = make_moons(n_points)
model = MLP(2, [8, 8, 1])
print(f"{len(model.parameters())} parameters, {n_points} points, {steps} steps")


def loss_and_accuracy(model):
    scores = [model(list(map(float, x))) for x in X]
    # hinge loss: zero once a point is on the right side with margin 1
    losses = [(1 - yi * si).relu() for yi, si in zip(Y, scores)]
    weights_l2 = sum(p * p for p in model.parameters())
    loss = sum(losses) * (1.0 / len(losses)) + 1e-4 * weights_l2
    accuracy = np.mean([(si.data > 0) == (yi > 0) for yi, si in zip(Y, scores)])
    return loss, accuracy


history = []
for step in range(steps):
    loss, acc = loss_and_accuracy(model)
    for p in model.parameters():
        p.grad = 0.0  # gradients accumulate (section 4): reset them every step
    loss.backward()
    lr = 1.0 - 0.9 * step / steps  # a decaying step size
    for p in model.parameters():
        p.data -= lr * p.grad
    history.append((loss.data, acc))
    if step % max(1, steps // 8) == 0 or step == steps - 1:
        print(f"step {step:3d}  loss {loss.data:.4f}  accuracy {acc:.0%}")

first_loss, final_loss = history[0][0], history[-1][0]
print(f"loss fell from {first_loss:.3f} to {final_loss:.3f}; "
      f"final training accuracy {history[-1][1]:.0%}")

# %% [markdown]
# A picture says more than the numbers: the loss curve, and what the network learned
# (the colour is the network's score at each point of the plane).

# %%
fig, (ax_loss, ax_map) = plt.subplots(1, 2, figsize=(10, 4))
ax_loss.plot([h[0] for h in history])
ax_loss.set(xlabel="step", ylabel="loss", title="training loss")
grid = _common.pick(25, 10)
gx, gy = np.meshgrid(np.linspace(-1.5, 2.5, grid), np.linspace(-1, 1.5, grid))
scores = np.array([[model([float(a), float(b)]).data for a, b in zip(row_x, row_y)]
                   for row_x, row_y in zip(gx, gy)])
ax_map.contourf(gx, gy, scores, levels=20, cmap="RdBu", alpha=0.6)
ax_map.contour(gx, gy, scores, levels=[0], colors="k")
ax_map.scatter(X[:, 0], X[:, 1], c=Y, cmap="RdBu", edgecolors="k", s=20)
ax_map.set(title="decision boundary (black line)")
_common.show(fig, "01_moons")

# %% [markdown]
# ## 6. The same thing in minires
#
# minires works on whole arrays: a `Tensor` is our `Value` with an array inside, and
# each operation is a `Function` subclass whose `backward` is our `_backward` closure
# (tutorial 02 writes one). The engine in `minires/autograd.py` is the loop above:
# `_topological_order` (iterative, like ours) and `run_backward` (which calls each
# node's `backward` and sums gradients that meet). Let us run the neuron of section 3
# through it and compare.

# %%
t = {name: mr.tensor(v, dtype=mr.float64, requires_grad=True) for name, v in inputs.items()}
out_t = neuron(**t)
out_t.backward()
print("minires output:", out_t.item())
for name in inputs:
    print(f"  d out / d {name:2s}: minires {t[name].grad.item():+.6f}   "
          f"Value {leaves[name].grad:+.6f}")
assert all(abs(t[n].grad.item() - leaves[n].grad) < 1e-12 for n in inputs)
print("minires and the Value engine agree on every gradient")

# %% [markdown]
# `out_t.grad_fn` is the node that made `out_t`; its `inputs` are the edges we called
# `_prev`. Walking them prints the graph:

# %%
node, depth = out_t.grad_fn, 0
while node is not None:
    print("  " * depth + node.name())
    parents = [x.grad_fn for x in node.inputs if x.grad_fn is not None]
    node, depth = (parents[0] if parents else None), depth + 1

# %% [markdown]
# ## Exercises
#
# 1. Add `Value.log()` and `Value.sigmoid()` with their `_backward`, and check both
#    against finite differences as in section 3.
# 2. Build `x = Value(0.5)` and apply `y = y * 1.0001` 5,000 times. Does `backward()`
#    still work? Now replace the iterative sort by the recursive one found in most
#    tutorials (`def build(v): for c in v._prev: build(c); topo.append(v)`) and try
#    again. What happens, and why does `minires/autograd.py` avoid recursion?
# 3. Call `loss.backward()` twice in a row without resetting `.grad`. By how much are
#    the gradients off? What does minires do on a second `backward()` through the same
#    graph (try it: `out_t.backward()` again), and why?
# 4. Replace the hinge loss by a mean squared error `(s - y)**2`. Does training still
#    reach the same accuracy? Which loss gives a cleaner boundary?
# 5. Count how many `Value` objects one training step creates for the 2-8-8-1 network
#    and 80 points. Why is a framework that works on arrays (tutorial 02) so much faster?
