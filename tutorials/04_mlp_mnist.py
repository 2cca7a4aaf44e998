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
# # 04 · A multi-layer perceptron on MNIST
#
# **What you will build.** A classifier of handwritten digits: first from bare tensors
# (weights you create, a loss you write, an update you apply by hand), then the same
# network with `nn.Module`, `nn.Linear` and `optim.SGD`, so you can see exactly what
# those classes do for you.
#
# **Which minires files it re-derives.** `minires/ops/loss.py` (softmax cross-entropy
# and its famously simple gradient), `minires/nn/linear.py` and `minires/nn/module.py`
# (how a Module finds its parameters), and `minires/optim/sgd.py` (the update rule).
#
# The data is the MNIST sample that ships with minires (2,000 training and 1,000 test
# images of the official files), so this runs offline. The same code trains on the
# full data set (60,000 images) with `minires.data.MNIST(download=True)`.

# %%
import time

import _common  # fast mode, figures, and `import minires` from a source checkout
import matplotlib.pyplot as plt
import numpy as np

import minires as mr
import minires.nn as nn
import minires.nn.functional as F
from minires.autograd import Function
from minires.data import MNIST, DataLoader
from minires.data import transforms as T
from minires.train import evaluate

mr.manual_seed(0)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. The data
#
# A minires dataset holds a whole split as two arrays: `data`, uint8 images of shape
# `(N, C, H, W)`, and `targets`, int64 labels.

# %%
train_set, test_set = MNIST(sample=True), MNIST(train=False, sample=True)
print(train_set, "|", test_set)
print("data", train_set.data.shape, train_set.data.dtype, "| targets",
      train_set.targets.shape, "| class counts", np.bincount(train_set.targets))

fig, axes = plt.subplots(2, 8, figsize=(8, 2.4))
for ax, image, label in zip(axes.flat, train_set.data, train_set.targets):
    ax.imshow(image[0], cmap="gray")
    ax.set_title(str(label))
    ax.axis("off")
_common.show(fig, "04_digits")

# %% [markdown]
# The `DataLoader` serves shuffled batches as Tensors: images scaled to floats in
# `[0, 1]`, then normalised to mean 0 and standard deviation 1 (with MNIST's
# published statistics), which keeps the first layer's inputs in a range where
# gradient descent behaves.

# %%
batch_size = 64
normalize = T.Normalize(T.MNIST_MEAN, T.MNIST_STD)
train_loader = DataLoader(train_set, batch_size, shuffle=True, seed=0, transform=normalize)
test_loader = DataLoader(test_set, 500, transform=normalize)
images, labels = next(iter(train_loader))
print("one batch:", images.shape, images.dtype, labels.shape, labels.dtype,
      f"mean {images.data.mean():.2f}, std {images.data.std():.2f}")

# %% [markdown]
# ## 2. Softmax cross-entropy, and why its gradient is so simple
#
# The network outputs one score ("logit") `z_c` per class. Softmax turns them into
# probabilities `p_c = exp(z_c) / Σ_k exp(z_k)`; the loss is the negative log of the
# probability of the true class `t`: `loss = -log p_t = -z_t + log Σ_k exp(z_k)`.
#
# Differentiate that last form: `d loss / d z_c = p_c - [c == t]`. The gradient is
# "predicted probabilities minus the one-hot target": push the true class up, every
# other class down, in proportion to how much probability it stole. That is why
# frameworks fuse softmax and the loss into one op: the backward is one subtraction,
# and computing `log(softmax(z))` in two steps would overflow for large logits.


# %%
class SoftmaxCrossEntropy(Function):
    @staticmethod
    def forward(ctx, z, *, target):
        xp = ctx.xp
        z = z - z.max(axis=1, keepdims=True)  # same softmax, no overflow in exp
        log_p = z - xp.log(xp.exp(z).sum(axis=1, keepdims=True))  # (N, C)
        N = z.shape[0]
        ctx.save_for_backward(xp.exp(log_p), target)
        return -log_p[xp.arange(N), target].mean()

    @staticmethod
    def backward(ctx, gy):
        # loss = mean_n (-log p[n, t_n])  =>  gz = (p - onehot(t)) / N * gy
        p, target = ctx.saved_tensors
        N = p.shape[0]
        gz = p.copy()
        gz[ctx.xp.arange(N), target] -= 1
        return gz * (gy / N)


def my_cross_entropy(logits, target):
    return SoftmaxCrossEntropy.apply(logits, target=target.data)


z = mr.randn(4, 10, dtype=mr.float64, requires_grad=True)
t = mr.tensor([3, 1, 4, 1])
print(f"ours {my_cross_entropy(z, t).item():.6f}",
      f"  F.cross_entropy {F.cross_entropy(z, t).item():.6f}")
print("gradcheck:", mr.gradcheck(lambda z: my_cross_entropy(z, t), [z]))

# %% [markdown]
# ## 3. An MLP from bare tensors
#
# Two layers: `h = relu(x @ w1 + b1)`, `logits = h @ w2 + b2`. The weights start
# random, scaled by `sqrt(2 / fan_in)` (He initialisation: it keeps the size of the
# activations roughly constant from layer to layer through ReLUs; tutorial 07 shows
# what happens otherwise). Each step: forward, loss, backward, and
# `w -= lr * w.grad` for every weight.

# %%
hidden = 128


def he(*shape):
    return (mr.randn(*shape) * np.sqrt(2 / shape[0])).requires_grad_()


w1, b1 = he(784, hidden), mr.zeros(hidden, requires_grad=True)
w2, b2 = he(hidden, 10), mr.zeros(10, requires_grad=True)
params = [w1, b1, w2, b2]


def forward(images):
    x = images.reshape(images.shape[0], -1)  # (N, 1, 28, 28) -> (N, 784)
    h = (x @ w1 + b1).relu()  # (N, hidden)
    return h @ w2 + b2  # (N, 10)


epochs = _common.pick(10, 2)
lr = 0.1
bare_curve = []
start = time.perf_counter()
for epoch in range(epochs):
    for images, labels in train_loader:
        loss = my_cross_entropy(forward(images), labels)
        for p in params:
            p.grad = None  # .grad accumulates: clear it before each backward
        loss.backward()
        with mr.no_grad():
            for p in params:
                p.data -= lr * p.grad.data
        bare_curve.append(loss.item())
    with mr.no_grad():
        correct = sum(int((forward(x).argmax(1) == y).data.sum()) for x, y in test_loader)
    print(f"epoch {epoch + 1}: last batch loss {bare_curve[-1]:.3f}, "
          f"test accuracy {correct / len(test_set):.1%}")
bare_acc = correct / len(test_set)
print(f"bare-tensor MLP: test accuracy {bare_acc:.1%} after {epochs} epochs "
      f"({time.perf_counter() - start:.1f} s)")

# %% [markdown]
# ## 4. The same network with `nn.Module`
#
# Nothing new happens in the math. `nn.Linear` holds `weight` (shape `(out, in)`, as
# PyTorch stores it, so the layer computes `x @ weight.T + bias`) and `bias` as
# `nn.Parameter`s. Assigning a Parameter or a Module as an attribute registers it
# (`Module.__setattr__` in `minires/nn/module.py`), so `model.parameters()` can find
# every weight, in order, without you listing them.


# %%
class MLP(nn.Module):
    def __init__(self, hidden=128):
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(784, hidden)
        self.fc2 = nn.Linear(hidden, 10)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(self.flatten(x))))


model = MLP(hidden)
for name, p in model.named_parameters():
    print(f"{name:12s} {str(p.shape):12s} requires_grad={p.requires_grad}")
print(model)

# %% [markdown]
# `optim.SGD` is the loop `p.data -= lr * p.grad.data` plus momentum: a running sum of
# past gradients, `b = momentum * b + g`, that speeds up progress along directions the
# gradients agree on (see the formula at the top of `minires/optim/sgd.py`).

# %%
optimizer = mr.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
module_curve, test_accs = [], []
for epoch in range(epochs):
    model.train()
    for images, labels in train_loader:
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        module_curve.append(loss.item())
    result = evaluate(model, test_loader)  # eval mode, no graph: minires/train/loop.py
    test_accs.append(result["acc"])
    print(f"epoch {epoch + 1}: test loss {result['loss']:.3f}, accuracy {result['acc']:.1%}")
print(f"nn.Module MLP with momentum: test accuracy {test_accs[-1]:.1%} after {epochs} epochs")

# %% [markdown]
# ## 5. Looking at the results
#
# Loss curves of both versions (plain SGD, and SGD with momentum), and the test digits
# the model gets wrong, with its guess and its confidence.


# %%
def smooth(values, k=10):
    k = max(1, min(k, len(values)))
    return np.convolve(values, np.ones(k) / k, mode="valid")


fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(smooth(bare_curve), label="bare tensors, SGD")
ax.plot(smooth(module_curve), label="nn.Module, SGD + momentum")
ax.set(xlabel="step", ylabel="training loss (smoothed)", yscale="log")
ax.legend()
_common.show(fig, "04_loss_curves")

model.eval()
with mr.no_grad():
    images, labels = next(iter(test_loader))
    probs = model(images).softmax(dim=1).data
predicted = probs.argmax(1)
wrong = np.flatnonzero(predicted != labels.data)
print(f"{len(wrong)} of the first {len(labels)} test digits are misclassified")
fig, axes = plt.subplots(2, 6, figsize=(8, 3.2))
for ax, i in zip(axes.flat, wrong):
    ax.imshow(images.data[i, 0], cmap="gray")
    ax.set_title(f"{labels.data[i]} → {predicted[i]} ({probs[i, predicted[i]]:.0%})", fontsize=9)
for ax in axes.flat:
    ax.axis("off")
fig.suptitle("true label → prediction (confidence)")
_common.show(fig, "04_mistakes")

# %% [markdown]
# ## Exercises
#
# 1. Add a third layer (784-256-128-10). Does test accuracy improve on 2,000 training
#    images? Compare training and test accuracy: what do you see?
# 2. Initialise `w1` with `mr.randn(784, hidden)` (no scaling) and train the bare-tensor
#    version again. What happens to the first losses, and why?
# 3. Remove the normalisation (`transform=None`) and retrain. Which layer's gradients
#    change most, and why does it matter for the learning rate?
# 4. Write the gradient of `SoftmaxCrossEntropy` with `reduction='sum'` instead of the
#    mean, and check it with `mr.gradcheck`. How should the learning rate change?
# 5. Implement momentum by hand in the bare-tensor loop (one buffer per parameter) and
#    check that it matches `optim.SGD(..., momentum=0.9)` step for step.
