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
# # 06 · Pooling and BatchNorm, train versus eval
#
# **What you will build.** Max pooling with its gradient routing, and batch
# normalisation with its full three-term backward pass, each as a `Function` checked by
# `mr.gradcheck`. Then the part that trips everyone up: BatchNorm behaves differently
# in training and in evaluation, and you will measure what goes wrong when a model is
# evaluated in the wrong mode.
#
# **Which minires files it re-derives.** `minires/ops/pool.py` (pooling windows as a
# strided view, `MaxPool2d`, `AvgPool2d`), `minires/ops/norm.py` (`BatchNorm` and
# `batch_norm_backward`) and `minires/nn/norm.py` (the running statistics of
# `nn.BatchNorm2d`).

# %%
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


def t64(*shape):
    return mr.tensor(rng.standard_normal(shape), dtype=mr.float64, requires_grad=True)


# %% [markdown]
# ## 1. Max pooling
#
# A `K × K` max pool with stride `K` keeps the largest value of each window: it halves
# the resolution (for `K = 2`) and makes the features a little insensitive to small
# shifts. The windows are the same strided view as im2col in tutorial 05, with the
# window axes last: `(N, C, OH, OW, KH, KW)`, no copy.
#
# The backward pass: `y = max(window)` depends only on the winning element, with slope
# 1. So each window's gradient goes **entirely to its argmax**, and every other element
# gets 0. Forward remembers where the winners were.


# %%
def windows(x, K, S):
    """(N, C, H, W) -> view (N, C, OH, OW, K, K) of every pooling window."""
    N, C, H, W = x.shape
    OH, OW = (H - K) // S + 1, (W - K) // S + 1
    sN, sC, sH, sW = x.strides
    return np.lib.stride_tricks.as_strided(x, (N, C, OH, OW, K, K),
                                           (sN, sC, sH * S, sW * S, sH, sW))


class MyMaxPool2d(Function):
    @staticmethod
    def forward(ctx, x, *, K):
        flat = windows(x, K, K).reshape(*x.shape[:2], x.shape[2] // K, x.shape[3] // K, K * K)
        argmax = flat.argmax(axis=-1)  # (N, C, OH, OW): offset i*K + j of each winner
        ctx.save_for_backward(argmax)
        ctx.x_shape, ctx.K = x.shape, K
        return flat.max(axis=-1)

    @staticmethod
    def backward(ctx, gy):
        # y = max of each window  =>  gx = gy at the window's argmax, 0 elsewhere
        (argmax,) = ctx.saved_tensors
        K = ctx.K
        gx = np.zeros(ctx.x_shape, dtype=gy.dtype)
        for i in range(K):  # K*K strided slabs, as col2im in tutorial 05
            for j in range(K):
                gx[:, :, i::K, j::K] = gy * (argmax == i * K + j)
        return gx


x = t64(2, 3, 6, 6)
print("max |MyMaxPool2d - F.max_pool2d| =",
      np.abs(MyMaxPool2d.apply(x, K=2).data - F.max_pool2d(x, 2).data).max())
print("gradcheck MyMaxPool2d:", mr.gradcheck(lambda x: MyMaxPool2d.apply(x, K=2), [x]))

# %% [markdown]
# A picture of the routing: a 4×4 input, its 2×2 max pool, and the gradient that
# comes back when the upstream gradient is 1 everywhere: exactly one 1 per window,
# where the maximum was. (These are small integers, so a window may hold a tie; then
# `argmax` picks the first of the equal values, as minires's max pool does.)

# %%
small = mr.tensor(rng.integers(0, 10, (1, 1, 4, 4)).astype(np.float64), requires_grad=True)
pooled = MyMaxPool2d.apply(small, K=2)
pooled.backward(np.ones(pooled.shape))
fig, axes = plt.subplots(1, 3, figsize=(8, 2.8))
for ax, values, title in zip(axes, [small.data[0, 0], pooled.data[0, 0], small.grad.data[0, 0]],
                             ["input", "max pool 2×2", "gradient w.r.t. input"]):
    ax.imshow(values, cmap="Blues")
    for (r, c), v in np.ndenumerate(values):
        ax.text(c, r, f"{v:g}", ha="center", va="center")
    ax.set(title=title, xticks=[], yticks=[])
_common.show(fig, "06_maxpool_routing")

# %% [markdown]
# Average pooling is simpler still: every element of a window contributed `1/K²` of
# the output, so each gets `gy / K²`. Global average pooling (the last layer of every
# ResNet before the classifier) is the mean over the whole feature map,
# `adaptive_avg_pool2d(x, 1)`.
#
# ## 2. Batch normalisation, forward
#
# Deep networks train faster and more reliably when the inputs of each layer keep a
# steady scale. BatchNorm (Ioffe & Szegedy, 2015) enforces it: for each channel, over
# the `M = N·H·W` values of the batch,
#
# `mean = Σ x / M`,  `var = Σ (x - mean)² / M`,  `xhat = (x - mean) / sqrt(var + eps)`,
# `y = w · xhat + b`
#
# with a learnable scale `w` and shift `b` per channel, so the layer can still undo
# the normalisation if that is what the loss wants.
#
# ## 3. Batch normalisation, backward
#
# Every output of a channel depends on every input of that channel, through `mean` and
# `var`. Write `std = sqrt(var + eps)` and `g = gy · w` (the gradient reaching `xhat`).
# Three paths lead from `x_k` to the loss: directly through `xhat_k`, through the mean,
# and through the variance. Adding them up (a page of algebra, worth doing once) gives
#
# `gx = (g - mean(g) - xhat · mean(g · xhat)) / std`
#
# and `gw = Σ gy · xhat`, `gb = Σ gy`. Tutorial 03 showed that dropping the last term
# (the path through the variance) goes unnoticed with an all-ones upstream gradient.


# %%
class MyBatchNorm(Function):
    """Training-mode batch norm over (N, C, H, W), statistics per channel."""

    @staticmethod
    def forward(ctx, x, w, b, *, eps=1e-5):
        axes = (0, 2, 3)  # every axis but the channel axis
        mean = x.mean(axis=axes, keepdims=True)  # (1, C, 1, 1)
        var = x.var(axis=axes, keepdims=True)  # biased: divides by M
        std = np.sqrt(var + eps)
        xhat = (x - mean) / std
        w4, b4 = w.reshape(1, -1, 1, 1), b.reshape(1, -1, 1, 1)
        ctx.save_for_backward(xhat, std, w4)
        return w4 * xhat + b4

    @staticmethod
    def backward(ctx, gy):
        # g = gy * w  =>  gx = (g - mean(g) - xhat * mean(g * xhat)) / std,
        #                 gw = sum(gy * xhat), gb = sum(gy)
        xhat, std, w4 = ctx.saved_tensors
        axes = (0, 2, 3)
        g = gy * w4
        gx = (g - g.mean(axis=axes, keepdims=True)
              - xhat * (g * xhat).mean(axis=axes, keepdims=True)) / std
        return gx, (gy * xhat).sum(axis=axes), gy.sum(axis=axes)


x, w, b = t64(4, 3, 5, 5), t64(3), t64(3)
ours = MyBatchNorm.apply(x, w, b).data
theirs = F.batch_norm(x, None, None, w, b, training=True).data
print("max |MyBatchNorm - F.batch_norm| =", np.abs(ours - theirs).max())
print("gradcheck MyBatchNorm:", mr.gradcheck(lambda x, w, b: MyBatchNorm.apply(x, w, b), [x, w, b]))
y = MyBatchNorm.apply(x, mr.ones(3, dtype=mr.float64), mr.zeros(3, dtype=mr.float64)).data
print("per-channel mean of the output:", np.round(y.mean(axis=(0, 2, 3)), 6),
      " std:", np.round(y.std(axis=(0, 2, 3)), 4))

# %% [markdown]
# minires's `batch_norm_backward` computes the same formula, reorganised to reuse one
# buffer (`gx = scale · (gy - gb/M - xhat · gw/M)` with `scale = w / std`: the same
# thing, since `gb/M = mean(gy)` and `gw/M = mean(gy · xhat)`).
#
# ## 4. Running statistics: what eval mode uses
#
# At test time there may be no batch at all (one image at a time), and a prediction
# must not depend on which other images happen to share the batch. So during training
# `nn.BatchNorm2d` also keeps exponential moving averages of the batch statistics,
#
# `running_mean = (1 - momentum) · running_mean + momentum · mean`
#
# (and the same for the variance, with the unbiased `M / (M - 1)` correction), and in
# eval mode it normalises with those instead. Here is that update by hand, next to the
# layer's own buffers, on batches drawn from data with channel means 3, -1 and 0.5:

# %%
bn = nn.BatchNorm2d(3, momentum=0.1)
true_mean = np.array([3.0, -1.0, 0.5], dtype=np.float32)
running_mean = np.zeros(3, dtype=np.float32)
history = []
steps = _common.pick(60, 30)
for _ in range(steps):
    batch = (rng.standard_normal((16, 3, 4, 4)) + true_mean[None, :, None, None]).astype(
        np.float32)
    bn(mr.tensor(batch))  # train mode (the default): normalise, update the buffers
    running_mean = 0.9 * running_mean + 0.1 * batch.mean(axis=(0, 2, 3))
    history.append(bn.running_mean.data.copy())
print("running_mean by hand:      ", np.round(running_mean, 4))
print("bn.running_mean (buffer):  ", np.round(bn.running_mean.data, 4))
print("num_batches_tracked:", bn.num_batches_tracked.item())

fig, ax = plt.subplots(figsize=(6, 3.2))
ax.plot(np.array(history))
for m in true_mean:
    ax.axhline(m, color="gray", ls=":")
ax.set(xlabel="training step", ylabel="running_mean", title="momentum 0.1: the running "
       "mean forgets its start (0) geometrically")
_common.show(fig, "06_running_mean")

# %% [markdown]
# ## 5. Train versus eval: measuring the difference
#
# A small CNN with BatchNorm (`BatchNorm2d` after each convolution, normalising each
# channel over the batch and the pixels; `BatchNorm1d` in the hidden fully connected
# layer, normalising each feature over the batch), trained briefly on the MNIST sample:

# %%
normalize = T.Normalize(T.MNIST_MEAN, T.MNIST_STD)
train_loader = DataLoader(MNIST(sample=True), 64, shuffle=True, seed=0, transform=normalize)
test_set = MNIST(train=False, sample=True)


def small_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.MaxPool2d(2),  # (N, 8, 14, 14)
        nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.MaxPool2d(2),  # (N, 16, 7, 7)
        nn.Flatten(),
        nn.Linear(16 * 7 * 7, 64, bias=False), nn.BatchNorm1d(64), nn.ReLU(),
        nn.Linear(64, 10))


model = small_cnn()
optimizer = mr.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
epochs = _common.pick(3, 1)
for epoch in range(epochs):
    model.train()  # BatchNorm: batch statistics, and update the running ones
    for images, labels in train_loader:
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"epoch {epoch + 1}: last training loss {loss.item():.3f}")

# %% [markdown]
# In train mode an image's output depends on the rest of its batch. In eval mode it
# does not. Take one test image, put it in two different batches, and compare its
# logits:

# %%
snapshot = {k: v.data.copy() for k, v in model.state_dict().items()}  # weights + buffers
test_images = normalize(test_set.data.astype(np.float32) / 255)
batch_a, batch_b = test_images[0:32], np.concatenate([test_images[0:1], test_images[500:531]])
for mode in ("train", "eval"):
    model.train(mode == "train")
    with mr.no_grad():
        la, lb = model(mr.tensor(batch_a)).data[0], model(mr.tensor(batch_b)).data[0]
    print(f"{mode:5s} mode: image 0's logits differ between the two batches by up to "
          f"{np.abs(la - lb).max():.4f}")
model.load_state_dict(snapshot)  # the train-mode passes moved the running statistics

# %% [markdown]
# Evaluating in train mode also *changes the model*: every forward pass in train mode
# updates the running statistics, here with test data (`no_grad` does not stop that).
# So these experiments save the weights and buffers first and restore them afterwards.
# In a real loop, call `model.eval()` before evaluating and `model.train()` after, as
# `minires.train.evaluate` does.
#
# How much does it matter for accuracy? Three ways to evaluate the same weights:
#
# * **eval mode**, the right way: running statistics;
# * **train mode, shuffled batches** of 100: batch statistics, from batches that look
#   like the training batches, so often only slightly worse;
# * **train mode, batches of a single class** (the test set sorted by label, as data
#   often arrives in practice): each batch is normalised by its own, very different,
#   statistics, and the features that told the classes apart are partly subtracted away.

# %%
def accuracy_in_train_mode(order):
    """Accuracy with batch statistics, on batches of 100 taken in the given order."""
    model.load_state_dict(snapshot)  # undo the running-stat updates of earlier calls
    model.train()
    correct = 0
    with mr.no_grad():
        for start in range(0, len(order), 100):
            idx = order[start:start + 100]
            logits = model(mr.tensor(test_images[idx])).data
            correct += int((logits.argmax(1) == test_set.targets[idx]).sum())
    model.load_state_dict(snapshot)
    return correct / len(order)


results = {
    "eval mode": evaluate(model, DataLoader(test_set, 100, transform=normalize))["acc"],
    "train mode,\nshuffled batches": accuracy_in_train_mode(rng.permutation(len(test_set))),
    "train mode,\none class per batch": accuracy_in_train_mode(
        np.argsort(test_set.targets, kind="stable")),
}
for name, acc in results.items():
    print(f"{name.replace(chr(10), ' '):35s} test accuracy {acc:.1%}")

fig, ax = plt.subplots(figsize=(6, 3))
ax.bar(list(results), [100 * a for a in results.values()], color=["C2", "C1", "C3"])
ax.set(ylabel="test accuracy (%)", ylim=(0, 100), title="the same weights, three ways")
_common.show(fig, "06_train_vs_eval")

# %% [markdown]
# The lesson: `model.eval()` before evaluating or predicting, `model.train()` before
# training. In minires (as in PyTorch) the mode is a flag on each module, set
# recursively by `train()`/`eval()` and passed to `F.batch_norm` as the `training`
# argument: never a global switch.
#
# ## Exercises
#
# 1. Add padding to `MyMaxPool2d` (padded elements must never win: pad with `-inf`)
#    and compare with `F.max_pool2d(x, 3, stride=2, padding=1)`.
# 2. Write `MyAvgPool2d` and check it with `mr.gradcheck`.
# 3. Derive the BatchNorm backward yourself: write `xhat` as a function of `x` through
#    `mean` and `var`, apply the chain rule along the three paths, and simplify.
# 4. Evaluate with train-mode batch statistics on batches of size 2, 8 and 32 (shuffled).
#    How does accuracy depend on the batch size, and why?
# 5. Set `momentum=None` in `nn.BatchNorm2d` (a cumulative average) and redo the plot
#    of section 4. When would you prefer it?
