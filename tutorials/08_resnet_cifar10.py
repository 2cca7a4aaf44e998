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
# # 08 · Training a ResNet on CIFAR-10
#
# **What you will build.** ResNet-20, the smallest of the CIFAR-10 residual networks of
# He et al. (2015), written out from the blocks of tutorial 07, checked weight for
# weight against `minires.models.resnet20`, and trained with data augmentation, SGD
# with momentum and weight decay, and a learning-rate schedule. Then: curves, a
# confusion matrix, and how to run the full recipe on a GPU.
#
# **Which minires files it re-derives.** `minires/models/resnet.py` (`BasicBlock`, the
# parameter-free "option A" shortcut `ZeroPadShortcut`, `ResNet` with the CIFAR stem)
# and `minires/train/loop.py` (`train_one_epoch`, `evaluate`, and `fit`, the loop
# behind the `minires train` command).
#
# This notebook trains on the CIFAR-10 sample that ships with minires (2,000 training
# and 1,000 test images) on the CPU, so expect modest accuracy: the point is the
# machinery. The end of the notebook shows the command for the full data set on a GPU.

# %%
import os
import time

import _common  # fast mode, figures, and `import minires` from a source checkout
import matplotlib.pyplot as plt
import numpy as np

import minires as mr
import minires.nn as nn
import minires.nn.functional as F
from minires.data import CIFAR10, DataLoader, TensorDataset
from minires.data import transforms as T
from minires.train import evaluate, fit, load_checkpoint

mr.manual_seed(0)

# %% [markdown]
# ## 1. The data
#
# CIFAR-10: 32×32 colour photographs in ten classes.

# %%
train_set, test_set = CIFAR10(sample=True), CIFAR10(train=False, sample=True)
classes = train_set.classes
print(train_set, "|", test_set)
if _common.FAST:  # a quick end-to-end check: a few hundred images
    train_set = TensorDataset(train_set.data[:64], train_set.targets[:64], classes=classes)
    test_set = TensorDataset(test_set.data[:100], test_set.targets[:100], classes=classes)
    print("fast mode: using", len(train_set), "training and", len(test_set), "test images")

fig, axes = plt.subplots(2, 8, figsize=(10, 3))
for ax, image, label in zip(axes.flat, train_set.data, train_set.targets):
    ax.imshow(image.transpose(1, 2, 0))  # (C, H, W) -> (H, W, C) for imshow
    ax.set_title(classes[label], fontsize=8)
    ax.axis("off")
_common.show(fig, "08_cifar_samples")

# %% [markdown]
# ## 2. Data augmentation
#
# With few images a network memorises them. The paper's augmentation shows it a
# slightly different version of each image every epoch: pad by 4 pixels, take a random
# 32×32 crop (a shift of up to 4 pixels), and flip horizontally half of the time. A cat
# shifted or mirrored is still a cat. minires's transforms work on whole batches, on
# the device the batch lives on.

# %%
augment = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()])
one = np.repeat(train_set.data[3:4].astype(np.float32) / 255, 8, axis=0)  # 8 copies
fig, axes = plt.subplots(1, 9, figsize=(11, 1.6))
for ax, img, title in zip(axes, [one[0]] + list(augment(one)), ["original"] + [""] * 8):
    ax.imshow(img.transpose(1, 2, 0))
    ax.set_title(title, fontsize=8)
    ax.axis("off")
_common.show(fig, "08_augmentation")

normalize = T.Normalize(T.CIFAR10_MEAN, T.CIFAR10_STD)
batch_size = _common.pick(128, 32)
train_loader = DataLoader(train_set, batch_size, shuffle=True, seed=0,
                          transform=T.Compose([augment, normalize]))
test_loader = DataLoader(test_set, 250, transform=normalize)  # no augmentation at test time

# %% [markdown]
# ## 3. ResNet-20, block by block
#
# Section 4.2 of the paper: a 3×3 convolution with 16 channels, then three stages of
# `n = 3` basic blocks with 16, 32 and 64 channels (the first block of stages 2 and 3
# halves the feature map with stride 2), global average pooling and a linear
# classifier: `6n + 2 = 20` layers with weights.
#
# A basic block computes `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`. Where
# the block changes the shape, "option A" keeps the shortcut free of parameters: take
# every second pixel and append zero channels.


# %%
class ZeroPadShortcut(nn.Module):
    def __init__(self, extra_channels):
        super().__init__()
        self.extra = extra_channels

    def forward(self, x):
        x = x[:, :, ::2, ::2]  # (N, C, H/2, W/2)
        return F.pad(x, (0, 0, 0, 0, 0, self.extra))  # zero channels: (N, 2C, H/2, W/2)


class BasicBlock(nn.Module):
    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = (ZeroPadShortcut(out_channels - in_channels)
                           if stride != 1 else None)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class ResNet20(nn.Module):
    def __init__(self, num_classes=10, n=3):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages, channels = [], 16
        for width, stride in [(16, 1), (32, 2), (64, 2)]:
            blocks = [BasicBlock(channels, width, stride)]
            blocks += [BasicBlock(width, width, 1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            channels = width
        self.layer1, self.layer2, self.layer3 = stages  # torchvision's names
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))  # (N, 16, 32, 32)
        x = self.layer3(self.layer2(self.layer1(x)))  # (N, 64, 8, 8)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)  # (N, 64)
        return self.fc(x)


ours = ResNet20()
library = mr.models.resnet20()
count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
print(f"our ResNet-20: {count(ours):,} parameters; minires.models.resnet20: "
      f"{count(library):,}")
library.load_state_dict(ours.state_dict())  # strict: every name and shape must match
ours.eval()
library.eval()
with mr.no_grad():
    x = mr.randn(4, 3, 32, 32)
    print("same outputs after copying the weights: max difference",
          float(np.abs(ours(x).data - library(x).data).max()))

# %% [markdown]
# Same names, same shapes, same function. From here on we train the library's model:
# it also has the paper's initialisation (He normal for every convolution).
#
# ## 4. Training
#
# The paper's recipe: SGD with momentum 0.9, weight decay `1e-4` (a small pull of every
# weight towards zero, added to its gradient), learning rate 0.1, batch 128. The paper
# divides the learning rate by 10 twice over 64,000 steps; for a short run a cosine
# schedule, which lowers it smoothly to 0 by the last epoch, does the same job.
#
# One epoch is the loop of tutorial 04; `minires.train.train_one_epoch` is this loop
# plus a progress bar.

# %%
model = mr.models.resnet20()
epochs = _common.pick(6, 1)
optimizer = mr.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
scheduler = mr.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)

history = []
for epoch in range(1, epochs + 1):
    model.train()
    start, seen, loss_sum, correct = time.perf_counter(), 0, 0.0, 0
    for images, labels in train_loader:
        logits = model(images)
        loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += len(labels)
        loss_sum += loss.item() * len(labels)
        correct += int((logits.argmax(1) == labels).data.sum())
    seconds = time.perf_counter() - start
    test = evaluate(model, test_loader)  # eval mode, no graph
    lr = optimizer.param_groups[0]["lr"]
    scheduler.step()
    history.append(dict(epoch=epoch, train_loss=loss_sum / seen, train_acc=correct / seen,
                        test_loss=test["loss"], test_acc=test["acc"], lr=lr))
    print(f"epoch {epoch}/{epochs}  lr {lr:.4f}  train loss {loss_sum / seen:.3f} "
          f"acc {correct / seen:.1%}  test acc {test['acc']:.1%}  "
          f"({seen / seconds:.0f} images/s)")
print(f"ResNet-20 after {epochs} epochs on {len(train_set)} images: "
      f"test accuracy {history[-1]['test_acc']:.1%} (chance: 10%)")

# %% [markdown]
# ## 5. What did it learn?
#
# The learning curves, and a confusion matrix: row = true class, column = predicted
# class. The diagonal holds the correct answers; the bright off-diagonal cells show
# which classes the network confuses.

# %%
fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.5))
epochs_axis = [h["epoch"] for h in history]
ax_loss.plot(epochs_axis, [h["train_loss"] for h in history], "o-", label="train")
ax_loss.plot(epochs_axis, [h["test_loss"] for h in history], "o--", label="test")
ax_acc.plot(epochs_axis, [100 * h["train_acc"] for h in history], "o-", label="train")
ax_acc.plot(epochs_axis, [100 * h["test_acc"] for h in history], "o--", label="test")
ax_loss.set(xlabel="epoch", ylabel="cross-entropy")
ax_acc.set(xlabel="epoch", ylabel="accuracy (%)")
for ax in (ax_loss, ax_acc):
    ax.legend()
_common.show(fig, "08_curves")

model.eval()
confusion = np.zeros((10, 10), dtype=int)
with mr.no_grad():
    for images, labels in test_loader:
        predicted = model(images).argmax(1).data
        np.add.at(confusion, (labels.data, predicted), 1)
per_class = confusion.diagonal() / np.maximum(confusion.sum(axis=1), 1)
for name, acc in zip(classes, per_class):
    print(f"  {name:10s} {acc:6.1%}")
fig, ax = plt.subplots(figsize=(5.5, 5))
ax.imshow(confusion, cmap="Blues")
ax.set(xticks=range(10), yticks=range(10), xlabel="predicted", ylabel="true")
ax.set_xticklabels(classes, rotation=90)
ax.set_yticklabels(classes)
for (r, c), v in np.ndenumerate(confusion):
    ax.text(c, r, v, ha="center", va="center", fontsize=7)
_common.show(fig, "08_confusion")

# %% [markdown]
# ## 6. The same loop, with logs and checkpoints: `fit`
#
# `minires.train.fit` runs the loop of section 4 and adds what a real run needs: a
# progress bar, a metrics log (`metrics.jsonl`, one JSON line per epoch), a checkpoint
# after every epoch and on Ctrl-C (`checkpoint.mr`: model, optimizer, scheduler, where
# the data loader stands, the epoch's running sums and the random generators), and the
# curves as a PNG. Ctrl-C lets the current step finish before it saves, so a run
# resumes exactly, and a NaN loss stops the run without overwriting the last good
# checkpoint (docs/training.md). A short run with a fresh model, to show the outputs:

# %%
mr.manual_seed(0)
short_model = mr.models.resnet20()
short_optimizer = mr.optim.SGD(short_model.parameters(), lr=0.05, momentum=0.9,
                               weight_decay=1e-4)
run_dir = os.path.join(_common.OUT, "08_run")
short_history = fit(short_model, short_optimizer, train_loader, test_loader, epochs=1,
                    out_dir=run_dir, progress=False)
print(f"fit: test accuracy {short_history[-1]['test_acc']:.1%} after one epoch")
for name in ("checkpoint.mr", "metrics.jsonl", "curves.png"):
    path = os.path.join(run_dir, name)
    print(f"  {name:14s} exists: {os.path.exists(path)}")
print("resumable from epoch", load_checkpoint(os.path.join(run_dir, "checkpoint.mr"))["epoch"])

# %% [markdown]
# One step further, `minires.train.run_training(**config)` builds the loaders (with
# the augmentation above), the model, SGD and the schedule from a plain dict and calls
# `fit`; it is what the `minires train` command runs. On the sample:
#
# ```bash
# minires train --model resnet20 --dataset cifar10-sample --epochs 30 --out runs/sample
# ```
#
# %% [markdown]
# ## 7. The full data set on a GPU
#
# On a machine with an NVIDIA GPU and CuPy (`pip install 'minires[cuda12]'`, see
# tutorial 09), the full recipe of the paper is one command: it downloads CIFAR-10
# (checking its MD5), trains ResNet-20 for 160 epochs with the paper's schedule
# (learning rate 0.1, divided by 10 at 50% and 75% of training), and writes the
# checkpoint, log and curves into `runs/resnet20`:
#
# ```bash
# minires train --model resnet20 --dataset cifar10 --download --device cuda
# minires eval --checkpoint runs/resnet20/checkpoint.mr --device cuda
# ```
#
# He et al. report 8.75% test error for ResNet-20 with this recipe. Swap `--model` for
# `resnet56` or `plain56` to repeat the paper's comparison of residual and plain nets;
# add `--resume runs/resnet20/checkpoint.mr` to continue an interrupted run.
#
# ## Exercises
#
# 1. Train without augmentation (`transform=normalize` for the training loader). What
#    happens to the gap between training and test accuracy?
# 2. Replace option A with option B, a 1×1 convolution + BatchNorm on the shortcut
#    (`mr.models.resnet20(shortcut="B")`). How many parameters does it add?
# 3. Remove the shortcuts from your `BasicBlock` (a "plain-20" network) and train both
#    for the same number of epochs. Compare the training losses (tutorial 07 explains
#    what you see).
# 4. Set the initial learning rate to 1.0, then to 0.01. What goes wrong in each case?
# 5. Count the multiply-adds of one forward pass of ResNet-20 on one image (each
#    convolution: `OH · OW · F · C · KH · KW`). Which stage costs the most?
