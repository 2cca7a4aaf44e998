"""What a run does to its images before the model sees them, for training and for testing.

Two kinds of data set, two pipelines (``preprocessing(config)`` builds them; the
``DataLoader`` has scaled the uint8 images to [0, 1] before any of this runs):

* **An image folder** (``--dataset imagefolder:PATH``) is prepared as torchvision's
  ImageNet models expect, for a crop size ``S`` (``--image-size``, default 224): each
  image is decoded once, at load, with its shorter side resized to ``round(S * 256 /
  224)`` and its centre square kept (``ImageFolder(size=...)``; 256 for S = 224).
  Training takes a ``RandomResizedCrop(S)`` of that square (an area of 8% to 100% and
  an aspect ratio of 3/4 to 4/3, torchvision's defaults) and a horizontal flip with
  probability 1/2; testing takes its centre ``S x S`` crop. Both normalise with
  ImageNet's mean and standard deviation. Without augmentation (``--no-augment``)
  training takes the centre crop too.
* **CIFAR-10 and MNIST** keep their own size. CIFAR-10's training images get a random
  crop from the image padded by 4 pixels and a flip. ``--image-size S`` resizes every
  batch to ``S x S`` after the augmentation.

The normalisation (``--normalize``: whose per-channel mean and standard deviation) is by
default ImageNet's for image folders and when ``--init-from`` is a torchvision release
(its weights learned on inputs normalised that way), the one of the run it starts from
when ``--init-from`` is a minires run's checkpoint (the two stages of a fine-tuning see
the same inputs), and else the data set's own. A run records the one it used, so
``minires eval`` prepares the test images the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..data import transforms as T
from .finetune import is_release

DEFAULT_CROP = 224
RESIZE_PER_CROP = 256 / 224  # torchvision's ImageNet evaluation: resize to 256, crop 224


def is_image_folder(dataset: str) -> bool:
    return dataset.lower().replace("_", "-").startswith(("imagefolder", "image-folder"))


STATISTICS = {"imagenet": (T.IMAGENET_MEAN, T.IMAGENET_STD),
              "cifar10": (T.CIFAR10_MEAN, T.CIFAR10_STD),
              "mnist": (T.MNIST_MEAN, T.MNIST_STD)}


def default_normalize(config: dict, dataset: str | None = None) -> str:
    """Whose statistics a run normalises with when ``--normalize`` is not given (a run
    started from a minires run's checkpoint takes that run's; ``recipe`` sees to it)."""
    name = dataset or config["dataset"]
    if is_image_folder(name) or is_release(config.get("init_from")):
        return "imagenet"
    return "mnist" if name.startswith("mnist") else "cifar10"


def normalisation(dataset: str):
    """The mean/std normalisation of one of the built-in data sets."""
    return T.Normalize(*STATISTICS["mnist" if dataset.startswith("mnist") else "cifar10"])


@dataclass
class Preprocessing:
    """``load_size``: the size an image folder is decoded at (None: the data set's own);
    ``train``/``test``: the batch transforms of the training and the test images."""

    load_size: int | None
    train: T.Compose
    test: T.Compose

    def __str__(self) -> str:
        def names(compose):
            return ", ".join(map(repr, compose.transforms)) or "nothing"

        load = (f"images decoded at {self.load_size}x{self.load_size} (shorter side "
                f"{self.load_size}, centre square); " if self.load_size else "")
        return f"preprocessing: {load}train: {names(self.train)}; test: {names(self.test)}"


def preprocessing(config: dict, dataset: str | None = None) -> Preprocessing:
    """The pipelines of a run with settings ``config`` on ``dataset`` (default: the
    run's own)."""
    name = dataset or config["dataset"]
    size = config.get("image_size")
    augment = config.get("augment", True)
    normalize = T.Normalize(*STATISTICS[config.get("normalize")
                                        or default_normalize(config, name)])
    if is_image_folder(name):
        crop = size or DEFAULT_CROP
        test = [T.CenterCrop(crop), normalize]
        train = [T.RandomResizedCrop(crop), T.RandomHorizontalFlip(), normalize] \
            if augment else test
        return Preprocessing(round(crop * RESIZE_PER_CROP), T.Compose(train), T.Compose(test))
    resize = [T.Resize((size, size))] if size else []
    crop_flip = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] \
        if augment and name.startswith("cifar") else []
    return Preprocessing(None, T.Compose([*crop_flip, *resize, normalize]),
                         T.Compose([*resize, normalize]))


def eval_batch_size(config: dict, dataset: str, data_shape) -> int:
    """Evaluation batches: 500 images up to CIFAR's size, else the training batch size
    (which fits in memory with its gradients, so without them it fits too).
    ``data_shape``: one stored image's ``(C, H, W)``."""
    size = config.get("image_size") or (DEFAULT_CROP if is_image_folder(dataset) else None)
    channels, height, width = data_shape[0], *((size, size) if size else data_shape[1:])
    return 500 if channels * height * width <= 3 * 32 * 32 else int(config["batch_size"])
