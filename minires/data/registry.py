"""Data sets by name: ``get_dataset('cifar10-sample')``, as ``minires train --dataset``
takes them."""

from __future__ import annotations

from .cifar10 import CIFAR10
from .dataset import Dataset
from .mnist import MNIST

_DATASETS = {
    "cifar10": (CIFAR10, False),
    "cifar10-sample": (CIFAR10, True),
    "mnist": (MNIST, False),
    "mnist-sample": (MNIST, True),
    "imagefolder": (None, False),  # your own images: 'imagefolder:PATH' or root=PATH
}


def get_dataset(name: str, train: bool = True, root=None, download: bool = False,
                transform=None, size=None) -> Dataset:
    """A dataset by name: 'cifar10', 'cifar10-sample', 'mnist', 'mnist-sample' or
    'imagefolder:PATH'.

    The '-sample' names read the small real samples that ship with minires (offline).
    'imagefolder:PATH' (or 'imagefolder' with ``root=PATH``) reads your own images from
    ``PATH/train/<class>/...`` and ``PATH/val/<class>/...`` (or ``PATH/test``), resized
    at load to ``size`` when given (see ``ImageFolder``).
    """
    key = name.lower().replace("_", "-").replace("cifar-10", "cifar10")
    path = None
    if key.startswith(("imagefolder:", "image-folder:")):
        key, path = "imagefolder", name.split(":", 1)[1]
    key = key.replace("image-folder", "imagefolder")
    if key not in _DATASETS:
        names = [k if k != "imagefolder" else "imagefolder:PATH" for k in _DATASETS]
        raise ValueError(f"unknown dataset {name!r}: expected one of {', '.join(names)}")
    if key == "imagefolder":
        from .image_folder import image_folder_split

        path = path or root
        if not path:
            raise ValueError("get_dataset('imagefolder'): say where the images are: "
                             "'imagefolder:PATH' or root=PATH")
        return image_folder_split(path, train=train, transform=transform, size=size)
    if size is not None:
        raise ValueError(f"get_dataset: size= resizes image folders at load; {name!r} has "
                         "one image size already")
    cls, sample = _DATASETS[key]
    if sample:
        return cls(train=train, transform=transform, sample=True)
    return cls(root=root, train=train, download=download, transform=transform)
