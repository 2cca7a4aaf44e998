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
# # 10 · Fine-tuning a trained network on a new task
#
# **What you will build.** Transfer learning in miniature. You will train a small CNN
# on one task (MNIST digits 0-4), save it, and reuse what it learned for a new task
# with only a handful of labelled examples (digits 5-9, 20 images per class): replace
# its classifier head, then either fine-tune every layer or freeze the feature extractor
# and train the new head alone. Both are compared with training from scratch on the
# same few images.
#
# **Which minires files it re-derives.** `minires/train/finetune.py` (`init_from` and
# `classifier_name`: what `minires train --init-from CHECKPOINT --freeze` does),
# `minires/serialization.py` (`mr.save`/`mr.load`), and `Module.state_dict`,
# `load_state_dict(strict=False)` and `requires_grad_` in `minires/nn/module.py`.

# %%
import os

import _common  # fast mode, figures, and `import minires` from a source checkout
import matplotlib.pyplot as plt
import numpy as np

import minires as mr
import minires.nn as nn
import minires.nn.functional as F
from minires.data import MNIST, DataLoader, TensorDataset
from minires.data import transforms as T
from minires.train import evaluate, save_checkpoint
from minires.train.finetune import init_from

mr.manual_seed(0)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. Two tasks from one data set
#
# Task A: tell apart the digits 0-4, with every training image of those classes in the
# sample. Task B: tell apart 5-9 (relabelled 0-4, since the new head has five outputs),
# with only 20 training images per class. Both are tested on the sample's test images
# of their classes.

# %%
train_all, test_all = MNIST(sample=True), MNIST(train=False, sample=True)


def subset(dataset, digits, per_class=None):
    """The images of `digits`, relabelled 0..len(digits)-1, at most `per_class` each."""
    keep = []
    for d in digits:
        idx = np.flatnonzero(dataset.targets == d)
        keep.extend(idx[:per_class] if per_class else idx)
    keep = np.sort(np.array(keep))
    labels = np.searchsorted(digits, dataset.targets[keep])  # digit -> its position
    return TensorDataset(dataset.data[keep], labels, classes=[str(d) for d in digits])


digits_a, digits_b = [0, 1, 2, 3, 4], [5, 6, 7, 8, 9]
task_a_train = subset(train_all, digits_a, per_class=_common.pick(None, 60))
task_b_train = subset(train_all, digits_b, per_class=20)
task_a_test, task_b_test = subset(test_all, digits_a), subset(test_all, digits_b)
for name, ds in [("task A train", task_a_train), ("task A test", task_a_test),
                 ("task B train", task_b_train), ("task B test", task_b_test)]:
    print(f"{name:13s} {len(ds):5d} images, classes {ds.classes}")

normalize = T.Normalize(T.MNIST_MEAN, T.MNIST_STD)


def loader(dataset, train):
    return DataLoader(dataset, 25 if train else 500, shuffle=train, seed=0, transform=normalize)


# %% [markdown]
# ## 2. A network with a body and a head
#
# `features` turns an image into 784 numbers (convolutions, BatchNorm, pooling); `head`
# is the linear classifier on top. The features are what should transfer: edges,
# strokes and loops are useful for any digit. The head is specific to the classes of
# one task.


# %%
class Net(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
            nn.MaxPool2d(2),  # (N, 8, 14, 14)
            nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.MaxPool2d(2),  # (N, 16, 7, 7)
            nn.Flatten())  # (N, 784)
        self.head = nn.Linear(16 * 7 * 7, num_classes)

    def forward(self, x):
        return self.head(self.features(x))


def train(model, train_set, test_set, epochs, lr=0.05, frozen_features=False):
    """SGD on the parameters that require a gradient; test accuracy after every epoch."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = mr.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4)
    train_loader, test_loader = loader(train_set, True), loader(test_set, False)
    accuracies = []
    for _ in range(epochs):
        model.train()
        if frozen_features:  # see section 5: keep frozen BatchNorm statistics fixed too
            model.features.eval()
        for images, labels in train_loader:
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        accuracies.append(evaluate(model, test_loader)["acc"])
    return accuracies


# %% [markdown]
# ## 3. Pre-training on task A, and saving it
#
# `save_checkpoint` (from `minires/train/checkpoint.py`) writes the model's
# `state_dict` with the optimizer's and the metrics, through `mr.save`: a zip of `.npy`
# arrays and a JSON manifest, never pickle, so loading a checkpoint cannot run code.

# %%
mr.manual_seed(0)
pretrained = Net(num_classes=5)
acc_a = train(pretrained, task_a_train, task_a_test, epochs=_common.pick(3, 1))
print(f"task A (digits 0-4): test accuracy {acc_a[-1]:.1%} after {len(acc_a)} epochs")
checkpoint = os.path.join(_common.OUT, "10_task_a", "checkpoint.mr")
os.makedirs(os.path.dirname(checkpoint), exist_ok=True)
save_checkpoint(checkpoint, model=pretrained,
                optimizer=mr.optim.SGD(pretrained.parameters(), lr=0.05), epoch=len(acc_a),
                history=[{"test_acc": a} for a in acc_a])
print("saved", checkpoint)
print("keys:", list(mr.load(checkpoint)["model"]))

# %% [markdown]
# ## 4. A new head, by hand
#
# For task B we need a `Net` with a fresh five-way head. Its features take the
# pre-trained weights; the head does not, because it must learn a new mapping (and in
# general its shape differs: a thousand ImageNet classes become ten CIFAR ones). So:
# load the checkpoint's `state_dict`, drop the head's entries, and load the rest with
# `strict=False`, which reports the keys it did not find instead of failing.

# %%
state = mr.load(checkpoint)["model"]
without_head = {k: v for k, v in state.items() if not k.startswith("head.")}
mr.manual_seed(1)
model = Net(num_classes=5)
result = model.load_state_dict(without_head, strict=False)
print("missing keys (left as initialised):", result.missing_keys)
print("unexpected keys:", result.unexpected_keys)
same = np.array_equal(model.features[0].weight.data, pretrained.features[0].weight.data)
print("first convolution copied from task A:", same)

# %% [markdown]
# To *freeze* the features, switch off their gradients: `requires_grad_(False)` on the
# module sets it on every parameter inside. Backward then skips them (no gradient is
# computed for a tensor that does not require one) and the optimizer only gets the head.

# %%
model.features.requires_grad_(False)
trainable = [name for name, p in model.named_parameters() if p.requires_grad]
total = sum(p.numel() for p in model.parameters())
n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
print(f"trainable: {trainable} ({n_trainable:,} of {total:,} parameters)")

# %% [markdown]
# `minires.train.finetune.init_from(model, checkpoint, freeze)` does these steps for
# you: it finds the head as the model's last `Linear` layer (`classifier_name`), copies
# every weight except the head's, and with `freeze=True` turns off every gradient but
# the head's. The `minires train` command exposes it as `--init-from` and `--freeze`.
#
# It never copies the head, even here where both tasks have five classes: the old head
# maps features to task A's digits, which mean nothing for task B.

# %%
mr.manual_seed(1)
via_recipe = Net(num_classes=5)
init_from(via_recipe, checkpoint, freeze=True)
print("init_from left the head as initialised (not task A's):",
      not np.array_equal(via_recipe.head.weight.data, pretrained.head.weight.data))
print("features identical to the ones loaded by hand:",
      all(np.array_equal(a.data, b.data) for a, b in zip(model.features.parameters(),
                                                        via_recipe.features.parameters())),
      "| same trainable parameters:",
      [n for n, p in via_recipe.named_parameters() if p.requires_grad] == trainable)

# %% [markdown]
# ## 5. Three ways to learn task B from 100 images
#
# * **from scratch**: a new `Net`, every weight random;
# * **fine-tune everything**: pre-trained features and a new head, all trained (with
#   a smaller learning rate, so the useful features are adjusted rather than
#   overwritten);
# * **frozen features**: pre-trained features fixed, only the head trained.
#
# A subtlety of freezing with BatchNorm: `requires_grad_(False)` stops the *weights*,
# but in train mode BatchNorm still updates its running statistics, which are buffers,
# not parameters. The training function above therefore puts the frozen features in
# eval mode (`model.features.eval()` after `model.train()`), so they stay exactly as
# pre-trained. (`minires.train.fit` does the same for every BatchNorm layer whose
# weights are frozen.)

# %%
epochs_b = _common.pick(15, 4)
mr.manual_seed(1)
scratch = Net(num_classes=5)
curves = {"from scratch": train(scratch, task_b_train, task_b_test, epochs_b)}

mr.manual_seed(1)
finetuned = Net(num_classes=5)
init_from(finetuned, checkpoint, freeze=False)
curves["fine-tune everything"] = train(finetuned, task_b_train, task_b_test, epochs_b,
                                       lr=0.01)

mr.manual_seed(1)
frozen = Net(num_classes=5)
init_from(frozen, checkpoint, freeze=True)
running_before = frozen.features[1].running_mean.data.copy()
curves["frozen features"] = train(frozen, task_b_train, task_b_test, epochs_b,
                                  frozen_features=True)
print("frozen BatchNorm running_mean unchanged:",
      np.array_equal(running_before, frozen.features[1].running_mean.data))

for name, accuracies in curves.items():
    print(f"task B, {name:22s} test accuracy {accuracies[-1]:.1%} after {epochs_b} epochs "
          f"(best {max(accuracies):.1%})")

fig, ax = plt.subplots(figsize=(6.5, 3.8))
for name, accuracies in curves.items():
    ax.plot(range(1, epochs_b + 1), [100 * a for a in accuracies], "o-", label=name)
ax.set(xlabel="epoch", ylabel="task B test accuracy (%)",
       title=f"digits 5-9 from {len(task_b_train)} training images")
ax.legend()
_common.show(fig, "10_fine_tuning")

# %% [markdown]
# With so few images, starting from features learned on a related task usually beats
# starting from random weights, and the printed numbers above show by how much in this
# run. Which of the two transfer strategies wins depends on how much data the new task
# has and how close it is to the old one: frozen features cannot adapt, but they also
# cannot overfit.
#
# The same recipe works at scale: `minires train --model resnet20 --dataset cifar10
# --init-from runs/pretrained/checkpoint.mr --freeze` starts from any checkpoint of the
# same architecture with a new head (the command keeps the old head only when the
# checkpoint is a minires run on the very same classes). Tutorial 12 takes the next step:
# a pretrained ResNet-18 fine-tuned on a folder of photographs, in two stages, through
# the command.
#
# ## Exercises
#
# 1. Repeat section 5 with 5, 20 and 100 training images per class. Plot the final
#    accuracy of the three methods against the number of images. Where do the curves
#    cross?
# 2. Freeze only the first convolution block (`features[0:4]`) and fine-tune the rest.
#    Is it better than both extremes?
# 3. Remove `model.features.eval()` from the frozen run. Do the running statistics
#    change? Does the accuracy?
# 4. Give the head a 10 times larger learning rate than the features (two parameter
#    groups: `SGD([{"params": ..., "lr": ...}, {"params": ..., "lr": ...}])`).
# 5. Pre-train on the digits 0-4 but fine-tune on CIFAR-10 images converted to grey
#    28×28 crops. Does transfer still help when the tasks are far apart?
