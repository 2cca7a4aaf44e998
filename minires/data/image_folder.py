"""ImageFolder: your own images, one folder per class, as a minires data set.

The layout is torchvision's::

    root/cat/001.jpg
    root/cat/kitten/002.png      (subfolders of a class folder belong to that class)
    root/dog/003.jpeg

Class names are the folder names, sorted, so class ``i`` is the same on every machine
(torchvision sorts them the same way); ``class_to_idx`` maps names to indices. Images
are decoded with Pillow and converted to RGB (greyscale, palette and RGBA images too).

Like the other data sets here, the whole split is decoded once, when the data set is
built, into one uint8 array ``data`` of shape ``(N, 3, H, W)``, so the ``DataLoader``
batches it by fancy indexing and the batch transforms run on the batch's device. That
needs one size for every image: either the images already share one, or ``size=``
resizes each at load (Pillow's bilinear filter, antialiased when shrinking), keeping its
aspect ratio and cropping the centre: ``size=224`` gives 224x224 images whose shorter
side was scaled to 224. Memory is ``N * 3 * H * W`` bytes (10,000 images at 224x224:
1.5 GB).
"""

from __future__ import annotations

import os

import numpy

from .dataset import Dataset
from .download import DatasetError

# The extensions torchvision's ImageFolder accepts; Pillow decodes them all.
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _pil():
    try:
        from PIL import Image
    except ImportError as error:  # a dependency of minires: only a broken install lacks it
        raise ImportError("ImageFolder decodes images with Pillow: pip install Pillow") from error
    return Image


def _size_pair(size):
    if size is None:
        return None
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0
                                 for d in pair):
        raise ValueError(f"ImageFolder: size must be a positive int or (height, width), "
                         f"got {size!r}")
    return pair


def find_classes(root) -> tuple:
    """``(classes, class_to_idx)``: the sorted names of the folders inside ``root``."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise DatasetError(f"ImageFolder: {root} is not a folder. Expected one folder per "
                           f"class: {os.path.join(root, '<class>', '<image>.png')}")
    classes = sorted(entry.name for entry in os.scandir(root)
                     if entry.is_dir() and not entry.name.startswith("."))
    if not classes:
        loose = [n for n in os.listdir(root) if n.lower().endswith(IMG_EXTENSIONS)]
        hint = (f" It holds {len(loose)} images directly: move them into one folder per "
                "class." if loose else "")
        raise DatasetError(f"ImageFolder: no class folders in {root}. Expected one folder "
                           f"per class: {os.path.join(root, '<class>', '<image>.png')}.{hint}")
    return classes, {name: i for i, name in enumerate(classes)}


def _images_in(folder: str, extensions) -> list:
    """The image files under ``folder`` (subfolders too, symlinks followed once each), in
    torchvision's order: by folder path as a string, then by file name."""
    walked, seen = [], set()
    for base, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(base)
        if real in seen:  # a symlink loop: do not walk it again
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        walked.append((base, files))
    return [os.path.join(base, name) for base, files in sorted(walked)
            for name in sorted(files)
            if name.lower().endswith(extensions) and not name.startswith(".")]


class ImageFolder(Dataset):
    """Images in ``root/<class>/...`` as ``data`` uint8 ``(N, 3, H, W)`` and ``targets``.

    ``size`` (an int or ``(height, width)``) resizes every image at load: scaled so it
    covers that size, aspect ratio kept, then centre-cropped to it. Without ``size`` all
    images must already have one size. ``transform`` is a batch transform, as for the
    other data sets (the ``DataLoader`` scales images to [0, 1] before it runs).
    ``samples`` lists ``(path, class index)`` in the order of ``data``.
    """

    def __init__(self, root, transform=None, size=None, extensions=IMG_EXTENSIONS):
        self.root = os.path.expanduser(os.fspath(root))
        self.transform = transform
        self.size = _size_pair(size)
        self.extensions = tuple(e.lower() for e in extensions)
        self.classes, self.class_to_idx = find_classes(self.root)
        self.samples = []
        for name in self.classes:
            images = _images_in(os.path.join(self.root, name), self.extensions)
            if not images:
                raise DatasetError(
                    f"ImageFolder: class folder {os.path.join(self.root, name)} holds no "
                    f"images ({', '.join(self.extensions)}). Remove it, or add its images.")
            self.samples += [(path, self.class_to_idx[name]) for path in images]
        self.targets = numpy.asarray([label for _, label in self.samples], dtype=numpy.int64)
        self.data = self._decode_all()

    def _decode_all(self) -> numpy.ndarray:
        first = self._decode(self.samples[0][0])
        data = numpy.empty((len(self.samples),) + first.shape, dtype=numpy.uint8)
        data[0] = first
        for i, (path, _) in enumerate(self.samples[1:], start=1):
            image = self._decode(path)
            if image.shape != first.shape:
                raise DatasetError(
                    f"ImageFolder: images differ in size: {self.samples[0][0]} is "
                    f"{first.shape[2]}x{first.shape[1]} but {path} is "
                    f"{image.shape[2]}x{image.shape[1]} (width x height). Pass size= to "
                    "resize every image at load, e.g. ImageFolder(root, size=224)")
            data[i] = image
        return data

    def _decode(self, path: str) -> numpy.ndarray:
        """One image as uint8 ``(3, H, W)``, resized and centre-cropped when ``size`` is set."""
        Image = _pil()
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")  # decodes it all: a truncated file fails here
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
            raise DatasetError(f"ImageFolder: cannot decode {path} ({error}): not an image "
                               "Pillow reads, or a truncated or corrupt one. Remove or "
                               "replace it.") from error
        if self.size is not None:
            image = self._cover_and_crop(image)
        return numpy.asarray(image, dtype=numpy.uint8).transpose(2, 0, 1)  # (H, W, 3) -> (3, H, W)

    def _cover_and_crop(self, image):
        Image = _pil()
        height, width = self.size
        scale = max(height / image.height, width / image.width)
        # int() as torchvision's Resize computes the longer side; never below the target,
        # which float rounding could give, since the crop below must fit
        new = (max(width, int(image.width * scale)), max(height, int(image.height * scale)))
        if new != image.size:
            image = image.resize(new, Image.Resampling.BILINEAR)
        top, left = (new[1] - height) // 2, (new[0] - width) // 2
        return image.crop((left, top, left + width, top + height))

    def __repr__(self) -> str:
        shape = "x".join(str(d) for d in self.data.shape[1:])
        return (f"ImageFolder({self.root!r}, {len(self)} images of {shape}, "
                f"{len(self.classes)} classes)")


def image_folder_split(path, train: bool = True, transform=None, size=None) -> ImageFolder:
    """The train or test split of a data set laid out as ``path/train/<class>/...`` and
    ``path/val/<class>/...`` (or ``path/test/...``), the layout ``get_dataset`` expects."""
    path = os.path.expanduser(os.fspath(path))
    names = ("train",) if train else ("val", "test")
    for name in names:
        folder = os.path.join(path, name)
        if os.path.isdir(folder):
            return ImageFolder(folder, transform=transform, size=size)
    raise DatasetError(
        f"image folder data set {path}: no {' or '.join(repr(n) for n in names)} folder in "
        f"it. Expected {os.path.join(path, 'train', '<class>', '<image>.png')} for training "
        f"and {os.path.join(path, 'val', '<class>', '<image>.png')} (or 'test') for "
        "evaluation; or build ImageFolder(folder) on one folder of class folders yourself.")


__all__ = ["IMG_EXTENSIONS", "ImageFolder", "find_classes", "image_folder_split"]
