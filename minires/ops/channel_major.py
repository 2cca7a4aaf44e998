"""The CPU fast path's activation layout: channel-major, on a padded grid with shared padding.

The public API is NCHW, and so is every tensor a user sees. Inside a ResNet on the CPU
the convolutions, BatchNorms and ReLUs of ``fast_conv`` and ``fused_norm`` keep each
activation in one 2-D array ``G`` of shape (C, L) instead: channel by channel, every
image's rows one after the other, each row followed by ONE zero column and each image
by ONE zero row. For two 2x3 images (a, b) of one channel (``.`` is a zero)::

    . . . .      <- row 0: the first image's top padding
    . a a a      <- column 0 of every row is zero: the left padding of this row
    . a a a         and, read one element back, the right padding of the row above
    . . . .      <- one zero row: bottom padding of image a AND top padding of image b
    . b b b
    . b b b
    . . . .
    . . . .      <- a spare row, so shifted reads never leave the array

Flattened, pixel (n, h, w) of channel c sits at ``G[c, (1 + n*(H+1) + h)*(W+1) + 1 + w]``
and its 3x3 neighbour (h+di, w+dj) exactly ``di*(W+1) + dj`` elements away, for every
pixel alike. So a 3x3 convolution with padding 1 reads, for each of its nine kernel
offsets, ONE contiguous block of every channel: im2col copies nine blocks, and the
matrix multiply writes the output straight onto a grid of the same shape. The outputs
computed at the zero positions are meaningless and are set back to zero
(``zero_pads``), which keeps every grid a valid padded input for the next layer.

The user still sees NCHW: an op returns ``grid_view(G)``, a strided (N, C, H, W) view of
the real pixels (no copy), and any op of minires, or any NumPy code, reads it as the
NCHW array it is. The fast ops recognise such a view (``find_grid``) and take its grid
without a copy; anything else is copied onto a fresh grid first (``as_grid``).

Grids an op returns are new arrays, never reused: a backward pass may still need them.
Only the im2col matrix, which lives from its copy to its multiply inside one call, comes
from a reused scratch buffer (``workspace``).
"""

from __future__ import annotations

import os
import threading
import weakref
from dataclasses import dataclass

from .. import backend, cpu_threads

_enabled = os.environ.get("MINIRES_FAST_CPU", "1") != "0"


def use_fast_path(enabled: bool = True) -> None:
    """Turn the channel-major fast path of ``nn.Conv2d``, ``nn.BatchNorm2d`` and the
    ResNet blocks on or off (off: every layer runs the plain NCHW ops of ``F``).
    ``MINIRES_FAST_CPU=0`` in the environment starts with it off."""
    global _enabled
    _enabled = bool(enabled)


def fast_path_enabled() -> bool:
    return _enabled


def applies(array) -> bool:
    """Whether the fast path should run on ``array``: switched on, and on a device where
    the backend prefers it (the CPU; CUDA has kernels for the plain path)."""
    return _enabled and backend.prefers_channel_major(backend.array_module(array))


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class Grid:
    """Where the pixels of an (N, C, H, W) activation sit in its (C, L) grid."""

    N: int
    H: int
    W: int

    @property
    def row(self) -> int:  # elements per grid row: W pixels and one zero column
        return self.W + 1

    @property
    def image(self) -> int:  # elements per image: H rows and one zero row
        return (self.H + 1) * (self.W + 1)

    @property
    def length(self) -> int:  # L: a top zero row, N images, a spare row
        return (self.N * (self.H + 1) + 2) * (self.W + 1)

    @property
    def first(self) -> int:  # flat index of pixel (0, 0, 0)
        return self.W + 2

    @property
    def span(self) -> int:  # from the first pixel to the last one, both included
        last = (self.N * (self.H + 1) - 1) * (self.W + 1) + self.W
        return last - self.first + 1

    def shift(self, di: int, dj: int) -> int:
        """Flat distance from a pixel to its neighbour (h + di, w + dj)."""
        return di * self.row + dj


def new_grid(xp, C: int, grid: Grid, dtype):
    """An uninitialised (C, L) grid: the caller writes every pixel, then ``zero_pads``."""
    return xp.empty((C, grid.length), dtype=dtype)


def zeros_grid(xp, C: int, grid: Grid, dtype):
    return xp.zeros((C, grid.length), dtype=dtype)


def _rows(G, grid: Grid):
    return G.reshape(G.shape[0], -1, grid.row)  # (C, N*(H+1) + 2, W+1)


def zero_pads(G, grid: Grid):
    """Set every non-pixel element of ``G`` to zero (a few strided writes: about
    1/W + 1/H of the grid)."""
    rows = _rows(G, grid)
    rows[:, :, 0] = 0  # the shared zero column
    rows[:, 0:grid.N * (grid.H + 1) + 1:grid.H + 1, :] = 0  # the shared zero rows
    rows[:, -1, :] = 0  # the spare row
    return G


def pixels(G, grid: Grid):
    """(C, N, H, W) view of the pixels of grid ``G`` (no copy)."""
    C = G.shape[0]
    images = G[:, grid.row:grid.row + grid.N * grid.image]  # (C, N*(H+1)*(W+1))
    images = images.reshape(C, grid.N, grid.H + 1, grid.W + 1)  # (C, N, H+1, W+1)
    return images[:, :, :grid.H, 1:]  # (C, N, H, W)


def padded_images(xp, G, grid: Grid, offset: int = 0):
    """(C, N, H+2, W+2) view of every image with its one-pixel zero border, starting
    ``offset`` rows and columns into that border. Neighbouring images share their
    border rows, so this view overlaps itself, but only on zeros."""
    C = G.shape[0]
    size = G.itemsize
    flat = G.reshape(-1)[offset * grid.row + offset:]  # (C*L - offset*(W+2),)
    return backend.as_strided(xp, flat, (C, grid.N, grid.H + 2 - offset, grid.W + 2 - offset),
                              (grid.length * size, grid.image * size, grid.row * size, size))


# --------------------------------------------------------------------------- NCHW views
# A grid travels between ops as the NCHW view of its pixels. The grids made by the fast
# ops are recorded here (weakly), so that an op handed such a view can take its grid
# without a copy: the view's ``base`` is the grid, and its shape and strides must be
# exactly those of ``grid_view``.

_grids: dict = {}  # id(G) -> (weakref to G, Grid)


def _forget(key):
    return lambda _ref: _grids.pop(key, None)


def grid_view(G, grid: Grid):
    """The (N, C, H, W) view of grid ``G`` that an op returns; registers ``G``."""
    key = id(G)
    try:
        _grids[key] = (weakref.ref(G, _forget(key)), grid)
    except TypeError:  # an array type without weak references: its views get copied
        pass
    return pixels(G, grid).transpose(1, 0, 2, 3)  # (N, C, H, W)


def find_grid(x):
    """``(G, grid)`` if ``x`` is exactly the NCHW view of a registered grid, else None."""
    G = getattr(x, "base", None)
    entry = _grids.get(id(G)) if G is not None and x.ndim == 4 else None
    if entry is None or entry[0]() is not G:
        return None
    grid = entry[1]
    N, C, H, W = x.shape
    if (N, H, W) != (grid.N, grid.H, grid.W) or G.shape[0] != C or x.dtype != G.dtype:
        return None
    size = G.itemsize
    if x.strides != (grid.image * size, grid.length * size, grid.row * size, size):
        return None
    if not getattr(x.flags, "writeable", True):  # a read-only view: the grid read-only too
        G = G.view()
        G.flags.writeable = False
    return G, grid


def as_grid(xp, x):
    """``(G, grid)`` for the (N, C, H, W) array ``x``: its own grid, or a copy on a new one."""
    found = find_grid(x)
    if found is not None:
        return found
    N, C, H, W = x.shape
    grid = Grid(N, H, W)
    G = new_grid(xp, C, grid, x.dtype)
    copy_rows(xp, pixels(G, grid), x.transpose(1, 0, 2, 3))  # (C, N, H, W)
    return zero_pads(G, grid), grid


def copy_rows(xp, target, source) -> None:
    """``target[...] = source``, the first axis cut into one part per CPU thread."""
    def copy(lo, hi):
        target[lo:hi] = source[lo:hi]

    cpu_threads.parallel_rows(xp, target.shape[0], copy)


# --------------------------------------------------------------------------- workspace

_local = threading.local()


def workspace(xp, shape: tuple, dtype):
    """A scratch array of ``shape`` from a buffer kept per thread, device and dtype (an
    array's ``dtype``: the key is the dtype object itself), grown when too small. Valid
    until the next call: only for data that never leaves the op (im2col matrices), never
    for anything returned or saved for backward."""
    cache = _local.__dict__.setdefault("buffers", {})
    key = (xp.__name__, dtype)  # not str(dtype), slow for a call made per tile
    size = 1
    for n in shape:
        size *= n
    buffer = cache.get(key)
    if buffer is None or buffer.size < size:
        cache[key] = buffer = None  # free the old buffer before allocating the new one
        cache[key] = buffer = xp.empty(size, dtype=dtype)
    return buffer[:size].reshape(shape)  # shape


def free_workspace() -> None:
    """Release this thread's scratch buffers (they are reallocated when next needed)."""
    _local.__dict__.pop("buffers", None)
