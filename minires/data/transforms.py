"""Batch transforms: augmentation and normalization of whole batches ``(N, C, H, W)``.

Each transform works on the array module of the batch it gets (``backend.array_module``)
and draws randomness from that module's generator (``backend.generator``), so the same
code runs on NumPy and, with a CuPy batch, on the GPU, without copying a batch back to
the host. Everything is vectorised over the batch: one random offset or coin flip per
image, but no Python loop over images.

The ``DataLoader`` scales uint8 images to float32 in [0, 1] before any transform runs, so
transforms see float batches; ``ToFloat`` does that scaling when you call transforms
yourself (it leaves float batches as they are).

``mr.manual_seed(s)`` makes the augmentation reproducible. Inside a ``DataLoader`` the
draws of each batch come from a stream keyed by the loader's seed, the epoch and the
batch index (``backend.random_stream``), so batch b of epoch e is augmented the same
way however the run got there: straight through, or resumed from a checkpoint.
"""

from __future__ import annotations

import numpy

from .. import backend

# Per-channel mean and standard deviation of the training images, scaled to [0, 1]: the
# values the CIFAR ResNet literature normalizes with.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)
# ImageNet's per-channel statistics in [0, 1], which torchvision's pretrained weights
# expect their inputs normalised with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _check_batch(name: str, x, floats: bool = False) -> None:
    """A batch of images (N, C, H, W); of floats when ``floats`` (what has been scaled)."""
    if getattr(x, "ndim", None) != 4:
        raise ValueError(
            f"{name}: expected a batch of images (N, C, H, W), got "
            f"{'shape ' + str(tuple(x.shape)) if hasattr(x, 'shape') else type(x).__name__}"
        )
    xp = backend.array_module(x)
    if floats and not xp.issubdtype(x.dtype, xp.floating):
        raise TypeError(f"{name}: expected float images, got {x.dtype}; scale them first "
                        "with ToFloat() (the DataLoader does this itself)")


class Compose:
    """Apply transforms in order: ``Compose([RandomCrop(32, 4), RandomHorizontalFlip()])``."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self) -> str:
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Compose([{inner}\n])"


class ToFloat:
    """uint8 (or any integer) images in [0, 255] -> float32 in [0, 1]; float input only cast.

    Division by 255 rather than multiplication by 1/255 so 255 maps to exactly 1.0.
    """

    def __call__(self, x):
        xp = backend.array_module(x)
        if xp.issubdtype(x.dtype, xp.integer):
            return x.astype(xp.float32) / xp.float32(255)
        return x.astype(xp.float32, copy=False)

    def __repr__(self) -> str:
        return "ToFloat()"


class Normalize:
    """``(x - mean[c]) / std[c]`` for each channel ``c`` of float images ``(N, C, H, W)``."""

    def __init__(self, mean, std):
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        if len(self.mean) != len(self.std):
            raise ValueError(f"Normalize: {len(self.mean)} means but {len(self.std)} stds")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"Normalize: std must be positive, got {self.std}")

    def __call__(self, x):
        _check_batch("Normalize", x, floats=True)
        xp = backend.array_module(x)
        C = x.shape[1]
        if len(self.mean) not in (1, C):
            raise ValueError(
                f"Normalize: {len(self.mean)} channel means for images with {C} channels "
                f"(batch shape {tuple(x.shape)})"
            )
        mean = xp.asarray(self.mean, dtype=x.dtype).reshape(1, -1, 1, 1)  # (1, C, 1, 1)
        std = xp.asarray(self.std, dtype=x.dtype).reshape(1, -1, 1, 1)
        return (x - mean) / std

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


class RandomCrop:
    """Zero-pad each image by ``padding`` on every side, then crop ``size`` at a random place.

    Every image gets its own offset. Vectorised: the padded batch is viewed (no copy) as
    all of its ``size`` windows, and one fancy index picks one window per image.
    """

    def __init__(self, size=32, padding: int = 4):
        self.size = (int(size), int(size)) if isinstance(size, int) else tuple(map(int, size))
        self.padding = int(padding)
        if len(self.size) != 2 or min(self.size) < 1 or self.padding < 0:
            raise ValueError(f"RandomCrop: bad size {size!r} or padding {padding!r}")

    def __call__(self, x):
        _check_batch("RandomCrop", x)
        xp = backend.array_module(x)
        N, C, H, W = x.shape
        p, (TH, TW) = self.padding, self.size
        HP, WP = H + 2 * p, W + 2 * p
        if TH > HP or TW > WP:
            raise ValueError(
                f"RandomCrop: crop size {self.size} is larger than the padded images "
                f"({HP}, {WP}) (batch shape {tuple(x.shape)}, padding {p})"
            )
        padded = xp.zeros((N, C, HP, WP), dtype=x.dtype)
        padded[:, :, p: p + H, p: p + W] = x
        gen = backend.generator(xp)
        oy = gen.integers(0, HP - TH + 1, size=N)  # top-left corner of each image's crop
        ox = gen.integers(0, WP - TW + 1, size=N)
        sN, sC, sH, sW = padded.strides
        # windows[n, c, i, j] is the (TH, TW) crop of image n whose corner is at (i, j).
        windows = backend.as_strided(
            xp, padded, (N, C, HP - TH + 1, WP - TW + 1, TH, TW), (sN, sC, sH, sW, sH, sW)
        )  # (N, C, HP-TH+1, WP-TW+1, TH, TW)
        # Index arrays on axes 0, 2, 3 around a slice: the indexed axis comes first.
        return windows[xp.arange(N), :, oy, ox]  # (N, C, TH, TW), a copy

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomHorizontalFlip:
    """Mirror each image left-right with probability ``p`` (an independent coin per image)."""

    def __init__(self, p: float = 0.5):
        self.p = float(p)
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must be in [0, 1], got {p}")

    def __call__(self, x):
        _check_batch("RandomHorizontalFlip", x)
        xp = backend.array_module(x)
        flip = backend.generator(xp).random(x.shape[0]) < self.p  # (N,) one coin per image
        return xp.where(flip[:, None, None, None], x[..., ::-1], x)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


def _pair(name: str, size) -> tuple:
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0
                                 for d in pair):
        raise ValueError(f"{name}: size must be a positive int or (height, width), got {size!r}")
    return pair


def _resize_matrix(xp, in_size: int, out_size: int, antialias: bool, dtype):
    """``(out_size, in_size)`` weights of the bilinear (triangle) filter, rows summing to 1.

    Output pixel ``o`` is centred at ``(o + 0.5) * scale`` in input coordinates, input
    pixel ``i`` at ``i + 0.5``. When shrinking with ``antialias`` the triangle widens by
    the scale factor, so every input pixel contributes (Pillow's and torchvision's
    antialiased resize); otherwise it is plain bilinear interpolation.
    """
    scale = in_size / out_size
    support = max(scale, 1.0) if antialias else 1.0
    centers = (numpy.arange(out_size) + 0.5) * scale  # (out,)
    inputs = numpy.arange(in_size) + 0.5  # (in,)
    weights = numpy.maximum(0.0, 1.0 - numpy.abs(inputs[None, :] - centers[:, None]) / support)
    if not antialias:  # bilinear reads the edge pixel beyond the border (clamping)
        nearest = numpy.clip(numpy.floor(centers - 0.5), 0, in_size - 1).astype(int)
        empty = weights.sum(axis=1) == 0
        weights[empty, nearest[empty]] = 1.0
    weights /= weights.sum(axis=1, keepdims=True)
    return xp.asarray(weights, dtype=dtype)


class Resize:
    """Resize a batch ``(N, C, H, W)`` with a bilinear filter, like torchvision's ``Resize``.

    ``size`` an int: the shorter side becomes ``size`` and the longer one keeps the
    aspect ratio (``int(size * long / short)``, as torchvision computes it); ``(h, w)``:
    exactly that. ``antialias=True`` (torchvision's default) widens the filter when
    shrinking so no input pixel is skipped, as Pillow does. Separable: two matrix
    products per batch, so it runs on the GPU too.
    """

    def __init__(self, size, antialias: bool = True):
        self.size = size if isinstance(size, int) else _pair("Resize", size)
        if isinstance(size, int) and (isinstance(size, bool) or size < 1):
            raise ValueError(f"Resize: size must be a positive int or (height, width), got "
                             f"{size!r}")
        self.antialias = bool(antialias)

    def output_size(self, H: int, W: int) -> tuple:
        """The (height, width) an (H, W) image is resized to: ``size`` itself, or for an int
        the shorter side scaled to ``size`` and the aspect ratio kept."""
        if not isinstance(self.size, int):
            return self.size
        short, long = (H, W) if H <= W else (W, H)
        new_short, new_long = self.size, int(self.size * long / short)
        return (new_short, new_long) if H <= W else (new_long, new_short)

    def __call__(self, x):
        _check_batch("Resize", x, floats=True)
        xp = backend.array_module(x)
        H, W = x.shape[2:]
        OH, OW = self.output_size(H, W)
        if (OH, OW) == (H, W):
            return x
        rows = _resize_matrix(xp, H, OH, self.antialias, x.dtype)  # (OH, H)
        cols = _resize_matrix(xp, W, OW, self.antialias, x.dtype)  # (OW, W)
        return rows @ (x @ cols.T)  # (N, C, H, OW), then (N, C, OH, OW)

    def __repr__(self) -> str:
        return f"Resize(size={self.size}, antialias={self.antialias})"


class CenterCrop:
    """Crop the centre ``size`` (an int for a square, or ``(h, w)``) of every image.

    The offsets are torchvision's (``round((H - h) / 2)``). Images smaller than ``size``
    are an error (torchvision pads them with zeros): resize them first.
    """

    def __init__(self, size):
        self.size = _pair("CenterCrop", size)

    def __call__(self, x):
        _check_batch("CenterCrop", x)
        H, W = x.shape[2:]
        TH, TW = self.size
        if TH > H or TW > W:
            raise ValueError(f"CenterCrop: crop size {self.size} is larger than the images "
                             f"(batch shape {tuple(x.shape)}); Resize them first")
        top, left = int(round((H - TH) / 2.0)), int(round((W - TW) / 2.0))
        return x[:, :, top: top + TH, left: left + TW]

    def __repr__(self) -> str:
        return f"CenterCrop(size={self.size})"


def _crop_resize_matrix(xp, starts, lengths, in_size: int, out_size: int, antialias: bool,
                        dtype):
    """``(N, out_size, in_size)``: for image ``n``, the weights of ``Resize``'s filter that
    take pixels ``starts[n] .. starts[n] + lengths[n] - 1`` to ``out_size`` pixels.

    The rows of ``_resize_matrix`` for the crop, shifted to where the crop starts: pixels
    outside it get no weight, and each row is normalised over the pixels inside, so a crop
    resized here equals ``Resize`` applied to the cropped image.
    """
    starts = starts.astype(xp.float64)[:, None, None]  # (N, 1, 1)
    lengths = lengths.astype(xp.float64)[:, None, None]
    scale = lengths / out_size  # (N, 1, 1): input pixels per output pixel
    support = xp.maximum(scale, 1.0) if antialias else xp.ones_like(scale)
    centers = starts + (xp.arange(out_size, dtype=xp.float64)[None, :, None] + 0.5) * scale
    inputs = xp.arange(in_size, dtype=xp.float64)[None, None, :] + 0.5  # (1, 1, in)
    weights = xp.maximum(0.0, 1.0 - xp.abs(inputs - centers) / support)  # (N, out, in)
    weights = weights * ((inputs > starts) & (inputs < starts + lengths))
    # never an empty row: a pixel of the crop lies within half a pixel of every centre
    return (weights / weights.sum(axis=2, keepdims=True)).astype(dtype)


class RandomResizedCrop:
    """A random part of each image, resized to ``size``: torchvision's ``RandomResizedCrop``
    for a batch ``(N, C, H, W)``, the standard ImageNet training augmentation.

    Per image, as torchvision draws it: an area of ``scale`` (a fraction of the image's,
    uniform) and an aspect ratio width/height in ``ratio`` (log-uniform), rounded to whole
    pixels and placed uniformly where it fits; after ten tries that do not fit, the centre
    crop of the image with its aspect ratio clamped to ``ratio``. The crop is resized with
    ``Resize``'s bilinear filter (antialiased when shrinking).

    Vectorised: the ten tries of every image are drawn at once, and each image's crop and
    resize is one ``(OH, H)`` and one ``(OW, W)`` weight matrix, so the batch is two
    batched matrix products on its own device.
    """

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), antialias: bool = True):
        self.size = _pair("RandomResizedCrop", size)
        self.scale = tuple(float(s) for s in scale)
        self.ratio = tuple(float(r) for r in ratio)
        if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"RandomResizedCrop: scale must be (low, high) with 0 < low <= "
                             f"high <= 1, got {scale!r}")
        if len(self.ratio) != 2 or not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"RandomResizedCrop: ratio must be (low, high) with 0 < low <= "
                             f"high, got {ratio!r}")
        self.antialias = bool(antialias)

    def boxes(self, xp, N: int, H: int, W: int) -> tuple:
        """Each image's crop ``(top, left, height, width)``: four int arrays ``(N,)``."""
        gen = backend.generator(xp)
        tries = 10
        area = H * W * (self.scale[0] + (self.scale[1] - self.scale[0])
                        * gen.random((N, tries)))  # (N, tries)
        low, high = numpy.log(self.ratio[0]), numpy.log(self.ratio[1])
        aspect = xp.exp(low + (high - low) * gen.random((N, tries)))
        w = xp.rint(xp.sqrt(area * aspect)).astype(xp.int64)  # rint: Python's round()
        h = xp.rint(xp.sqrt(area / aspect)).astype(xp.int64)
        fits = (w > 0) & (w <= W) & (h > 0) & (h <= H)
        first = fits.argmax(axis=1)  # (N,) the first try that fits
        rows = xp.arange(N)
        found = fits[rows, first]
        # the fallback: the whole image, its aspect ratio clamped into ``ratio``
        if W / H < self.ratio[0]:
            fh, fw = int(round(W / self.ratio[0])), W
        elif W / H > self.ratio[1]:
            fh, fw = H, int(round(H * self.ratio[1]))
        else:
            fh, fw = H, W
        h = xp.where(found, h[rows, first], fh)
        w = xp.where(found, w[rows, first], fw)
        # uniform over the places where the crop fits: torchvision's randint(0, H - h + 1)
        top = xp.minimum(xp.floor(gen.random(N) * (H - h + 1)).astype(xp.int64), H - h)
        left = xp.minimum(xp.floor(gen.random(N) * (W - w + 1)).astype(xp.int64), W - w)
        top = xp.where(found, top, (H - h) // 2)
        left = xp.where(found, left, (W - w) // 2)
        return top, left, h, w

    def __call__(self, x):
        _check_batch("RandomResizedCrop", x, floats=True)
        xp = backend.array_module(x)
        N, _, H, W = x.shape
        top, left, h, w = self.boxes(xp, N, H, W)
        return resized_crop(x, top, left, h, w, self.size, self.antialias)

    def __repr__(self) -> str:
        scale = tuple(round(s, 4) for s in self.scale)
        ratio = tuple(round(r, 4) for r in self.ratio)
        return f"RandomResizedCrop(size={self.size}, scale={scale}, ratio={ratio})"


def resized_crop(x, top, left, height, width, size, antialias: bool = True):
    """Crop image ``n`` of ``x`` to rows ``top[n] .. top[n] + height[n]`` and columns
    ``left[n] .. left[n] + width[n]``, and resize it to ``size`` ``(OH, OW)``."""
    xp = backend.array_module(x)
    N, _, H, W = x.shape
    OH, OW = size
    rows = _crop_resize_matrix(xp, top, height, H, OH, antialias, x.dtype)  # (N, OH, H)
    cols = _crop_resize_matrix(xp, left, width, W, OW, antialias, x.dtype)  # (N, OW, W)
    # (N, 1, OH, H) @ (N, C, H, W) -> (N, C, OH, W); @ (N, 1, W, OW) -> (N, C, OH, OW)
    return rows[:, None] @ x @ cols.transpose(0, 2, 1)[:, None]
