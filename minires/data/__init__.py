"""Datasets, batch transforms and the DataLoader.

``CIFAR10`` and ``MNIST`` read the official binary/idx files (``download=True`` fetches
and checks them; ``sample=True`` reads the small real samples that ship with minires,
offline); ``ImageFolder`` reads your own images, one folder per class. ``DataLoader``
yields whole batches as Tensors on a device, and the transforms run on the batch's own
array module, so augmentation runs on the GPU too::

    from minires.data import CIFAR10, DataLoader, transforms as T

    train = CIFAR10(sample=True)
    augment = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(),
                         T.Normalize(T.CIFAR10_MEAN, T.CIFAR10_STD)])
    loader = DataLoader(train, batch_size=128, shuffle=True, seed=0, transform=augment)
    for images, labels in loader:  # float32 (128, 3, 32, 32), int64 (128,)
        ...
"""

from . import transforms
from .cifar10 import CIFAR10
from .dataset import Dataset, TensorDataset
from .download import (
    DatasetError,
    download_url,
    extract_tar_folder,
    file_digest,
    md5sum,
    verify_file,
)
from .image_folder import ImageFolder
from .loader import DataLoader
from .mnist import MNIST
from .readers import default_root, read_cifar_batch, read_idx
from .registry import get_dataset
from .transforms import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MNIST_MEAN,
    MNIST_STD,
    CenterCrop,
    Compose,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    RandomResizedCrop,
    Resize,
    ToFloat,
)

__all__ = [
    "CIFAR10", "CIFAR10_MEAN", "CIFAR10_STD", "CenterCrop", "Compose", "DataLoader",
    "Dataset", "DatasetError", "IMAGENET_MEAN", "IMAGENET_STD", "ImageFolder", "MNIST",
    "MNIST_MEAN", "MNIST_STD", "Normalize", "RandomCrop", "RandomHorizontalFlip",
    "RandomResizedCrop", "Resize",
    "TensorDataset", "ToFloat", "default_root", "download_url", "extract_tar_folder",
    "file_digest", "get_dataset", "md5sum", "read_cifar_batch", "read_idx", "transforms",
    "verify_file",
]
