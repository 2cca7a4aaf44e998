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
# # 07 · Residual blocks and the vanishing gradient
#
# **What you will build.** An instrument that measures how large the gradient is at
# every depth of a network, first by hand with hooks, then with `minires.inspect`. With
# it you will *see* the gradient vanish in a deep network of sigmoids, see which
# remedies help (ReLU with He initialisation, BatchNorm, shortcuts), and watch a deep
# plain network fail to train where the same network with residual connections learns.
#
# **Which minires files it re-derives.** The residual blocks of `minires/models/mlps.py`
# (`MLPBlock` with `residual=True`) and `minires/models/resnet.py` (`BasicBlock`), and
# the hooks that `minires/inspect/monitor.py` (`GradientMonitor`) and
# `minires/inspect/flow.py` (`gradient_flow`) are built on:
# `Module.register_forward_hook` and `Tensor.register_hook`.

# %%
import _common  # fast mode, figures, and `import minires` from a source checkout
import matplotlib.pyplot as plt
import numpy as np

import minires as mr
import minires.nn as nn
import minires.nn.functional as F
from minires.data import CIFAR10, MNIST, DataLoader
from minires.data import transforms as T
from minires.inspect import GradientMonitor, gradient_flow
from minires.models import mlp, plain20, resnet20

mr.manual_seed(0)

normalize = T.Normalize(T.MNIST_MEAN, T.MNIST_STD)
mnist = MNIST(sample=True)
batch = next(iter(DataLoader(mnist, 128, shuffle=True, seed=0, transform=normalize)))
images, labels = batch
print("an MNIST batch:", images.shape, labels.shape)

# %% [markdown]
# ## 1. Why gradients vanish: a product of many factors
#
# Backpropagation multiplies: the gradient that reaches layer 1 of a 20-layer network is
# the gradient at the top times 20 Jacobians, one per layer. For a chain of scalar
# layers `h_k = σ(w_k · h_{k-1})` each factor is `w_k · σ'(·)`. The sigmoid's slope is
# at most 0.25, so unless the weights are large, every layer shrinks the gradient by a
# factor of 4 or more, and 20 layers shrink it by `4^20`, a factor of a trillion. The
# layers near the input then barely learn.

# %%
z = np.linspace(-5, 5, 201)
sigmoid = 1 / (1 + np.exp(-z))
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(z, sigmoid * (1 - sigmoid), label="sigmoid'  (max 0.25)")
ax.plot(z, 1 - np.tanh(z) ** 2, label="tanh'  (max 1)")
ax.plot(z, (z > 0).astype(float), label="relu'  (0 or 1)")
ax.set(xlabel="pre-activation", ylabel="slope", title="the local factors backprop multiplies")
ax.legend()
_common.show(fig, "07_activation_slopes")
print(f"0.25 ** 20 = {0.25 ** 20:.1e}")

# %% [markdown]
# ## 2. Measuring the gradient at every depth, by hand
#
# Two hooks are all it takes:
#
# * `module.register_forward_hook(fn)` calls `fn(module, args, output)` after each
#   forward pass of the module: we get hold of the layer's output tensor;
# * `tensor.register_hook(fn)` calls `fn(grad)` when backward computes the gradient of
#   the loss with respect to that tensor.
#
# Together: on every layer's output, register a tensor hook that records the norm of
# its gradient `d loss / d output`. Each `register_*` returns a handle; `remove()`
# detaches the hook again.


# %%
def gradient_norms(model, layer_names, images, labels):
    """||d loss / d output|| of each named layer, for one forward/backward pass."""
    modules = dict(model.named_modules())
    norms, handles = {}, []
    for name in layer_names:
        def record(grad, name=name):
            norms[name] = float(np.linalg.norm(grad.data))

        def on_forward(module, args, output, record=record):
            output.register_hook(record)

        handles.append(modules[name].register_forward_hook(on_forward))
    loss = F.cross_entropy(model(images), labels)
    model.zero_grad()
    loss.backward()
    for handle in handles:
        handle.remove()
    return np.array([norms[name] for name in layer_names])


# %% [markdown]
# The subject: `minires.models.mlp(depth, width, activation, ...)`, a stack of hidden
# layers (`layers.0`, `layers.1`, ...: each a Linear layer, optional BatchNorm, and the
# activation) and a classifier. First, twenty sigmoid layers with Glorot ("Xavier")
# initialisation, the standard deep network of the 2000s:

# %%
depth = 20
mr.manual_seed(0)
sigmoid_net = mlp(depth=depth, width=64, activation="sigmoid", init="xavier")
hidden = [f"layers.{i}" for i in range(depth)]
by_hand = gradient_norms(sigmoid_net, hidden, images, labels)
for i in [0, 5, 10, 15, 19]:
    print(f"layer {i:2d}: ||d loss / d output|| = {by_hand[i]:.2e}")
print(f"first / last layer: {by_hand[0] / by_hand[-1]:.1e}")

# %% [markdown]
# ## 3. The same with `minires.inspect`
#
# `minires.inspect.gradient_flow(model, (images, labels))` runs this measurement (and
# more: activation statistics, dead ReLUs, weight-gradient norms) on a model's blocks,
# in depth order, and puts the model back as it was (gradients, and BatchNorm's running
# statistics). `GradientMonitor` does the same at chosen steps of a training run
# (section 6). Both are built on exactly the two hooks above.

# %%
profile = gradient_flow(sigmoid_net, batch)
print("layers:", profile.layers[:3], "...", profile.layers[-1])
print("inspect agrees with the hand-written hooks:",
      np.allclose(profile["act_grad_norm"], by_hand, rtol=1e-5))
print(f"profile.ratio() (first / last): {profile.ratio():.1e}")

# %% [markdown]
# ## 4. What helps?
#
# Four 20-layer networks, measured at initialisation on the same batch:
#
# * **sigmoid + Xavier**: the network above;
# * **ReLU + He init**: ReLU's slope is 1 where it is active, and He initialisation
#   (weights with variance `2 / fan_in`) compensates for the half of the units that
#   are off, so the size of the signal is preserved layer to layer, in both directions;
# * **sigmoid + BatchNorm**: each layer's inputs are renormalised, so the sigmoids sit
#   in their steep middle part;
# * **sigmoid + shortcuts**: each hidden layer computes `x + f(x)`. Its Jacobian is
#   `I + f'(x)`: even when `f'` is tiny, the identity carries the gradient through
#   unchanged. That is the residual connection.

# %%
configs = {
    "sigmoid + Xavier": dict(activation="sigmoid", init="xavier"),
    "ReLU + He init": dict(activation="relu", init="he"),
    "sigmoid + BatchNorm": dict(activation="sigmoid", init="xavier", batch_norm=True),
    "sigmoid + shortcuts": dict(activation="sigmoid", init="xavier", residual=True),
}
flows = {}
for name, kwargs in configs.items():
    mr.manual_seed(0)
    flows[name] = gradient_flow(mlp(depth=depth, width=64, **kwargs), batch)
    print(f"{name:22s} gradient first / last layer: {flows[name].ratio():.2e}")

fig, ax = plt.subplots(figsize=(6.5, 4))
for name, flow in flows.items():
    ax.semilogy(range(depth), flow["act_grad_norm"], "o-", ms=3, label=name)
ax.set(xlabel="layer (0 = next to the input)", ylabel="||d loss / d layer output||",
       title=f"gradient at every depth of a {depth}-layer MLP, at initialisation")
ax.legend()
_common.show(fig, "07_mlp_gradient_flow")

# %% [markdown]
# ## 5. A residual block, written out
#
# The shortcut is one addition in `forward`. Here is the block `mlp(residual=True)`
# uses (`MLPBlock` in `minires/models/mlps.py`), and the backward pass of the addition
# makes the gradient's two routes explicit: `Add.backward` hands `gy` *unchanged* to
# the shortcut, and to `f`'s branch.


# %%
class ResidualBlock(nn.Module):
    def __init__(self, width, activation=nn.Sigmoid):
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.activation = activation()

    def forward(self, x):
        return x + self.activation(self.fc(x))  # d out / d x = I + f'(x)


x = mr.randn(4, 8, requires_grad=True)
block = ResidualBlock(8)
with mr.no_grad():
    block.fc.weight.data[...] = 0  # make f's branch contribute no gradient at all
block(x).sum().backward()
print("f's branch switched off: the gradient still reaches x through the shortcut:",
      np.allclose(x.grad.data, 1.0))

# %% [markdown]
# In ResNets (`BasicBlock` in `minires/models/resnet.py`) `f` is two 3×3 convolutions
# with BatchNorm, and the shortcut is the identity, or a subsampling with zero channels
# appended where the shape changes (tutorial 08). He et al. point out that with
# BatchNorm the plain nets' gradients do not vanish at initialisation; their problem
# is that they get *harder to optimise* as they deepen. Measure ResNet-20 and its plain
# twin, with and without BatchNorm, on a batch of CIFAR images, block by block:

# %%
cifar_normalize = T.Normalize(T.CIFAR10_MEAN, T.CIFAR10_STD)
cifar = CIFAR10(sample=True)
cifar_batch = next(iter(DataLoader(cifar, _common.pick(64, 16), shuffle=True, seed=0,
                                   transform=cifar_normalize)))
cnn_flows = {}
for name, build in [("ResNet-20", resnet20), ("plain-20", plain20)]:
    for bn in (True, False):
        mr.manual_seed(0)
        label = f"{name}{'' if bn else ', no BatchNorm'}"
        cnn_flows[label] = gradient_flow(build(batch_norm=bn), cifar_batch)
        print(f"{label:26s} gradient first / last block: {cnn_flows[label].ratio():.2e}")

fig, ax = plt.subplots(figsize=(6.5, 3.8))
for name, flow in cnn_flows.items():
    ax.semilogy(flow["act_grad_norm"], "o-", ms=3, label=name)
ax.set(xlabel="block (0 = next to the input)", ylabel="||d loss / d block output||",
       title="CIFAR nets at initialisation")
ax.legend()
_common.show(fig, "07_cnn_gradient_flow")

# %% [markdown]
# Compare these ratios with the sigmoid MLP's: none of the CIFAR nets comes anywhere
# near a factor of a trillion. ReLU, He initialisation and BatchNorm already keep a
# 20-layer net's gradient in a sane range at the start. What plain nets lose as they
# get deeper is trainability, which the paper measured as a *higher training error*
# for plain-56 than for plain-20 (exercise 5 below, and exercise 3 of tutorial 08).
# Deeper still, the plain nets' gradients *explode* toward the input: with BatchNorm,
# `minires gradients resnet` measures a first/last ratio of about 4e3 for plain-56 and
# 9e6 for plain-110, against 16 and 41 for the ResNets (docs/gradient_flow.md).

# %% [markdown]
# ## 6. Training a deep plain network and a deep residual one
#
# The measurement at initialisation is a prediction; training is the test. Two
# 20-layer tanh MLPs with `nn.Linear`'s default initialisation (uniform weights with
# variance `1 / (3 · fan_in)`: too small for a deep tanh stack, so each layer shrinks
# the signal and its gradient), identical except for the shortcuts, trained with the
# same SGD on the MNIST sample. `GradientMonitor(model, optimizer, steps=...)` records
# the gradient at every depth at the chosen steps while the ordinary training loop runs
# (it wraps `optimizer.step()`; the `with` block removes every hook at the end).

# %%
steps = _common.pick(150, 30)
record_every = _common.pick(10, 5)
loader = DataLoader(mnist, 64, shuffle=True, seed=0, transform=normalize)
runs = {}
for name, residual in [("plain", False), ("residual", True)]:
    mr.manual_seed(0)
    model = mlp(depth=depth, width=64, activation="tanh", init="default", residual=residual)
    optimizer = mr.optim.SGD(model.parameters(), lr=0.005, momentum=0.9)
    monitor = GradientMonitor(model, optimizer, steps=range(0, steps, record_every))
    losses, step = [], 0
    with monitor:
        while step < steps:
            for x, y in loader:
                loss = F.cross_entropy(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
                step += 1
                if step == steps:
                    break
    runs[name] = (losses, monitor.history)
    print(f"{name:8s} 20-layer tanh MLP: gradient first / last layer at step 0 "
          f"{monitor.history[0].ratio():.1e}; loss {np.mean(losses[:10]):.3f} "
          f"(first 10 steps) -> {np.mean(losses[-10:]):.3f} (last 10)")

# %% [markdown]
# The loss curves, and for each network a heat map of the gradient norm by depth
# (rows) and training step (columns), on the same colour scale:

# %%
fig = plt.figure(figsize=(12, 3.8))
ax_loss = fig.add_subplot(1, 3, 1)
for name, (losses, _) in runs.items():
    ax_loss.plot(losses, label=name)
ax_loss.axhline(np.log(10), color="gray", ls=":", label="chance (log 10)")
ax_loss.set(xlabel="step", ylabel="training loss", title=f"{depth} tanh layers")
ax_loss.legend()
logs = {name: np.log10(history["act_grad_norm"].T) for name, (_, history) in runs.items()}
low = min(v.min() for v in logs.values())
high = max(v.max() for v in logs.values())
for k, (name, (_, history)) in enumerate(runs.items()):
    ax = fig.add_subplot(1, 3, k + 2)
    image = ax.imshow(logs[name], aspect="auto", cmap="magma", vmin=low, vmax=high,
                      extent=(history.steps[0], history.steps[-1], depth - 0.5, -0.5))
    ax.set(xlabel="step", ylabel="layer" if k == 0 else "",
           title=f"{name}: log10 ||gradient||")
fig.colorbar(image, ax=fig.axes[1:])
_common.show(fig, "07_training_heatmap")

# %% [markdown]
# `monitor.history` holds more than the gradient norm: `act_mean`, `act_std`,
# `dead_relu`, `weight_grad_norm` and `update_ratio` (how far each optimizer step moved
# a layer's weights, relative to their size), as `(steps, layers)` arrays, and
# `history.save(path)` writes them as JSON. For the last recorded step of the plain
# network:

# %%
print(runs["plain"][1][-1].table())

# %% [markdown]
# The `minires gradients` command runs larger versions of these experiments and saves
# their figures and numbers: `minires gradients resnet` (plain-N versus ResNet-N at
# initialisation), `minires gradients mlp` (deep MLPs with each remedy) and
# `minires gradients degradation` (plain-20/56 and ResNet-20/56 trained the same way,
# best on a GPU). The plotting functions behind them are in `minires/inspect/plots.py`.

# %% [markdown]
# ## Exercises
#
# 1. Redo section 4 with `depth=50`. Which remedies still work?
# 2. Measure a ReLU network with Xavier instead of He initialisation
#    (`mlp(..., activation="relu", init="xavier")`). Does the gradient vanish, explode,
#    or neither? Derive the factor per layer.
# 3. Use `register_full_backward_hook` instead of the two hooks of section 2 to record
#    `grad_output` of each layer, and check that you get the same norms.
# 4. In section 6, train the plain network with `batch_norm=True` instead of shortcuts.
#    Does it train? Compare the update ratios of its first and last layers.
# 5. Train `plain20` and `resnet20` (tutorial 08) on the CIFAR sample for the same
#    number of steps with a `GradientMonitor` each. Plot the training loss of both: is
#    the plain net's problem visible in its gradient norms?
