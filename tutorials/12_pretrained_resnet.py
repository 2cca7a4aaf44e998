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
# # 12 · Fine-tuning a pretrained ResNet-18 on your own images
#
# **What you will build.** The fine-tuning that people actually do: a ResNet-18 that
# someone else trained, a folder of your own photographs (one folder per class), and the
# `minires train` command. You will write a small image folder of real photographs, get
# pretrained weights, and fine-tune in two stages: first the new classifier head alone on
# the frozen network (`--freeze`), then every layer, the pretrained ones at a tenth of
# the head's learning rate (`--backbone-lr-scale 0.1`). You will compare that with the
# same network trained from scratch, evaluate with `minires eval`, and look at what the
# ImageNet-style preprocessing does to an image.
#
# **Which minires files it re-derives.** `minires/train/finetune.py` (where the weights
# come from, the head, what is frozen, the two parameter groups),
# `minires/train/preprocessing.py` (what runs on the images), `minires/data/transforms.py`
# (`RandomResizedCrop`), `minires/data/image_folder.py` and
# `minires/models/pretrained.py` (torchvision's releases and the cache).
#
# **Which weights.** The real thing is torchvision's ResNet-18 trained on ImageNet
# (`torchvision:IMAGENET1K_V1`). minires downloads it once, on first use, into
# `weights/` under its data folder. This notebook never downloads anything: it uses
# those weights if they are already there (and torch, which reads `.pth` files, is
# installed), and otherwise says so and builds a *stand-in*: a ResNet-18 pretrained
# here, briefly, on the 2,000 training images of the CIFAR-10 sample, and saved as
# safetensors. Every step below runs either way; the stand-in's features are far weaker
# than ImageNet's, so expect smaller gains with it. The numbers quoted in the text come
# from the stand-in (the machine that ran this notebook had no internet).

# %%
import os
import shlex
import shutil

import _common  # fast mode, figures, and `import minires` from a source checkout
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

import minires as mr
from minires.data import CIFAR10, ImageFolder
from minires.data import transforms as T
from minires.models import pretrained
from minires.tools.cli import main
from minires.train import load_checkpoint

mr.manual_seed(0)
WORK = os.path.join(_common.OUT, "12_pretrained_resnet")
shutil.rmtree(WORK, ignore_errors=True)  # every run of the notebook starts afresh
os.makedirs(WORK)


def minires(command: str) -> None:
    """Run `minires COMMAND` here, in this process, as a shell would."""
    print(f"$ minires {command}")
    main(shlex.split(command))


# %% [markdown]
# ## 1. An image folder of real photographs
#
# `--dataset imagefolder:PATH` reads `PATH/train/<class>/<image>` for training and
# `PATH/val/<class>/<image>` for testing: PNG, JPEG and the other formats Pillow
# decodes, any size. The class names are the folder names, sorted.
#
# Our photographs come from the CIFAR-10 sample that ships with minires: its 1,000
# *test* images, of which the cats, dogs and horses make the new task, written out as
# PNG files. Fifty of each class are for training, which is the situation fine-tuning is
# for: few labelled images of your own. The rest are for testing. They are tiny (32×32),
# which keeps every run below on the CPU in minutes.

# %%
TASK = ["cat", "dog", "horse"]
photos = CIFAR10(train=False, sample=True)
pets = os.path.join(WORK, "pets")
N_TRAIN, N_VAL = _common.pick(50, 8), _common.pick(None, 8)
for name in TASK:
    images = np.flatnonzero(photos.targets == photos.classes.index(name))
    for split, part in (("train", images[:N_TRAIN]),
                        ("val", images[N_TRAIN:][:N_VAL])):
        folder = os.path.join(pets, split, name)
        os.makedirs(folder)
        for index in part:
            pixels = photos.data[index].transpose(1, 2, 0)  # (3, H, W) -> (H, W, 3)
            Image.fromarray(pixels).save(os.path.join(folder, f"{index:04d}.png"))
for split in ("train", "val"):
    folder = ImageFolder(os.path.join(pets, split))
    print(f"{split}: {folder}, classes {folder.classes}, "
          f"{np.bincount(folder.targets).tolist()} per class")

# %% [markdown]
# ## 2. Pretrained weights
#
# `--init-from` takes a file in any format minires reads (a minires checkpoint or state
# dict, safetensors, a PyTorch `.pth`), or `torchvision:NAME`, one of torchvision's
# published releases for `--model` (section "Pretrained ResNets by name" of
# `docs/weights.md`). A release is looked for in `weights/` under the data folder, with
# the SHA-256 prefix that torchvision puts in its file name; it is downloaded there once
# when absent, which needs the internet.

# %%
release = pretrained.pretrained_weights("resnet18", "IMAGENET1K_V1")
cached = os.path.join(pretrained.weights_folder(), release.filename)
try:
    import torch  # noqa: F401  (reads .pth files)

    have_torch = True
except ImportError:
    have_torch = False
REAL = os.path.isfile(cached) and have_torch
print(f"torchvision's {release.arch} {release.name}: {cached} "
      f"{'found' if os.path.isfile(cached) else 'not in the cache'}"
      f"{'' if have_torch else ' (and torch, which reads it, is not installed)'}")

# %% [markdown]
# Without them, the stand-in: the same ResNet-18 trained through the same command on the
# 2,000 *training* images of the CIFAR-10 sample, all ten classes, for a few epochs. Like
# ImageNet's weights, which have seen many cats, dogs and horses among their thousand
# classes, it has seen these classes, but never the photographs of our image folder.
# `--normalize imagenet` makes it learn on inputs normalised as the image folder's will
# be. Six epochs on 2,000 small images is a far cry from ninety on ImageNet's 1.28
# million: its own test accuracy (printed below) is low, and so is what it can pass on.
# Saving its weights as safetensors gives a file that PyTorch reads too.

# %%
if REAL:
    INIT, WHICH = "torchvision:IMAGENET1K_V1", "torchvision's ImageNet ResNet-18"
else:
    minires(f"train --model resnet18 --dataset cifar10-sample --normalize imagenet "
            f"{_common.pick('', '--limit-train 64 ')}--epochs {_common.pick(6, 1)} "
            f"--batch-size 64 --lr 0.05 --schedule cosine --no-progress --out {WORK}/standin")
    INIT = os.path.join(WORK, "resnet18-standin.safetensors")
    mr.save_safetensors(load_checkpoint(f"{WORK}/standin/checkpoint.mr")["model"], INIT)
    WHICH = "the stand-in (pretrained here on the CIFAR-10 sample's training images)"
print(f"weights: {WHICH}")

# %% [markdown]
# ## 3. What the images go through
#
# For an image folder, `minires train` prepares images the way torchvision's ImageNet
# models were trained and evaluated, for a crop size `S` (`--image-size`, 224 by
# default; 32 here, the photographs' own size): each image is decoded once, at load, with
# its shorter side resized to `S × 256/224` (37 here; 256 for 224) and its centre square
# kept. Training takes a random part of it, of 8% to 100% of its area and an aspect
# ratio between 3/4 and 4/3, resized to `S × S` (`RandomResizedCrop`), and flips it with
# probability 1/2; testing takes the centre `S × S`. Both normalise with ImageNet's
# per-channel mean and standard deviation, which the pretrained weights expect. The
# command prints the pipeline it runs (the "preprocessing:" line below).
#
# `RandomResizedCrop` works on a whole batch at once: each image's crop-and-resize is
# one weight matrix for its rows and one for its columns (the bilinear filter of
# `Resize`, restricted to the crop), so the batch is two batched matrix products, on the
# GPU too.

# %%
image = ImageFolder(os.path.join(pets, "train"), size=37).data[:1] / np.float32(255)
mr.manual_seed(3)
crops = [T.RandomResizedCrop(32)(image)[0] for _ in range(7)]
fig, axes = plt.subplots(1, 8, figsize=(12, 1.9))
for ax, picture, title in zip(axes, [image[0], *crops], ["decoded (37×37)"] +
                              [f"crop {i + 1}" for i in range(7)]):
    ax.imshow(np.clip(picture.transpose(1, 2, 0), 0, 1))  # (3, H, W) -> (H, W, 3)
    ax.set(title=title, xticks=[], yticks=[])
_common.show(fig, "12_random_resized_crops")

# %% [markdown]
# ## 4. Stage 1: a new head on the frozen network
#
# The pretrained network ends in a 1000-way classifier (the stand-in's is 10-way); our
# task has three classes. `--init-from` loads every tensor except the classifier head's (the
# model's last `Linear` layer, `fc`), checks that each one fits by name and shape, and
# says how many it loaded. `--freeze` trains the new head alone: the backbone gets no
# gradients, and its BatchNorm layers keep the running statistics they were trained
# with (`fit` keeps a BatchNorm layer whose weights are frozen in eval mode). Only the
# head's 1,539 numbers learn, so a few epochs at a large learning rate suffice, and a
# random head cannot send large, meaningless gradients into the pretrained layers.

# %%
E1, E2 = _common.pick(4, 1), _common.pick(8, 1)
COMMON = f"--model resnet18 --dataset imagefolder:{pets} --image-size 32 --batch-size 32 " \
    "--schedule cosine --no-progress"
minires(f"train {COMMON} --init-from {INIT} --freeze --epochs {E1} --lr 0.05 "
        f"--out {WORK}/stage1")

# %% [markdown]
# ## 5. Stage 2: every layer, the pretrained ones more gently
#
# `--init-from stage1/checkpoint.mr` starts from the first stage. Its checkpoint records
# the classes it was trained on; they are this run's, so its trained head is loaded too
# (a run on other classes would get a fresh one). `--backbone-lr-scale 0.1` gives the
# optimizer two parameter groups: the head at `--lr`, every other layer at a tenth of it,
# so the pretrained features are adjusted rather than overwritten. The cosine schedule
# scales both groups alike. BatchNorm layers now train and update their statistics
# (`--freeze-bn` would keep them as loaded, which helps when batches are very small).

# %%
minires(f"train {COMMON} --init-from {WORK}/stage1/checkpoint.mr --backbone-lr-scale 0.1 "
        f"--epochs {E2} --lr 0.01 --out {WORK}/stage2")
groups = load_checkpoint(f"{WORK}/stage2/checkpoint.mr")["optimizer"]["param_groups"]
print("parameter groups:", [(g["name"], len(g["params"]), g["initial_lr"]) for g in groups])

# %% [markdown]
# ## 6. The same network from scratch, and the comparison
#
# The baseline: the same command without `--init-from`, for as many epochs as both
# stages together, at the learning rate that suits a randomly initialised network.

# %%
minires(f"train {COMMON} --epochs {E1 + E2} --lr 0.05 --out {WORK}/scratch")
minires(f"eval --checkpoint {WORK}/stage2/checkpoint.mr")

histories = {name: load_checkpoint(f"{WORK}/{name}/checkpoint.mr")["history"]
             for name in ("stage1", "stage2", "scratch")}
tuned = [row["test_acc"] for row in histories["stage1"] + histories["stage2"]]
scratch = [row["test_acc"] for row in histories["scratch"]]


def epochs(n):
    return f"{n} epoch{'s' * (n != 1)}"


print(f"weights: {WHICH}")
print(f"stage 1 (head only, {epochs(E1)}): test accuracy {tuned[E1 - 1]:.1%}")
print(f"fine-tuned (two stages, {epochs(E1 + E2)}): test accuracy {tuned[-1]:.1%}")
print(f"from scratch ({epochs(E1 + E2)}): test accuracy {scratch[-1]:.1%}")

fig, ax = plt.subplots(figsize=(6.5, 3.8))
steps = range(1, E1 + E2 + 1)
ax.plot(steps, [100 * a for a in tuned], "o-", label="fine-tuned: head, then all layers")
ax.plot(steps, [100 * a for a in scratch], "s--", label="from scratch")
ax.axvline(E1 + 0.5, color="grey", lw=0.8)
ax.set(xlabel="epoch", ylabel="test accuracy (%)",
       title=f"cat / dog / horse, {len(ImageFolder(os.path.join(pets, 'train')))} "
             "training images")
ax.legend()
_common.show(fig, "12_fine_tuning_curves")

# %% [markdown]
# On the CPU, in full mode, with the stand-in weights (the machine had no internet, so
# not torchvision's), `python tutorials/12_pretrained_resnet.py` printed these numbers;
# the stand-in itself reached 32.4% on the sample's 1,000 test images of ten classes:
#
# | run | test accuracy (141 images) |
# |---|---|
# | stage 1, head only (4 epochs) | 44.0% |
# | fine-tuned, two stages (4 + 8 epochs) | 48.2% |
# | from scratch (12 epochs) | 41.8% |
#
# With 141 test images one image is 0.7 points, so the gaps are a handful of images:
# the stand-in's weak features help a little, and a network of 11 million parameters
# learns little from 150 images of its own. Your numbers will differ slightly (another
# BLAS rounds differently). torchvision's ImageNet weights could not be tried here;
# they learned from 1.28 million photographs, more than a hundred thousand of them of
# dogs alone, so expect far more from them, already from the head alone (exercise 5).
#
# ## Exercises
#
# 1. Run stage 2 with `--backbone-lr-scale 1` (one group, every layer at `--lr 0.01`)
#    and with `--freeze-bn`. Which changes the result most?
# 2. Train with `--no-augment` (centre crops only). How does the gap between training
#    and test accuracy change?
# 3. Add a fourth class (`deer`) to the image folder after stage 1, and run stage 2
#    again. What does the report say about the head, and why? (Hint:
#    `minires.train.finetune.read_weights(path).classes`.)
# 4. Save the stage-2 weights as safetensors (`mr.save_safetensors(checkpoint["model"],
#    path)`) and load them into `torchvision.models.resnet18(num_classes=3)` in PyTorch.
#    Do the logits agree (`docs/weights.md`)?
# 5. If you can download torchvision's weights on another machine, put
#    `resnet18-f37072fd.pth` into the `weights` folder printed above and run this notebook
#    again with `--image-size 64` or larger: how much better do ImageNet's features do?
