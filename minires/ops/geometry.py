"""Window geometry shared by convolution and pooling: sizes, and the scatter back.

A convolution or a pooling layer reads a KHxKW window of its (padded) input for every
output pixel. ``output_shape`` says how many windows fit; ``scatter_windows`` is the
way back, used by every backward pass that reads windows (col2im for conv2d, max and
average pooling): it adds what each window element received to the input pixel that
element was read from.
"""

from __future__ import annotations


def pair(value, name: str, op: str) -> tuple:
    """An int or a pair of ints -> a pair of ints."""
    if isinstance(value, int):
        return value, value
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int)
                                                                    for v in value):
        return tuple(value)
    raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")


def output_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """How many windows of ``kernel`` (spread by ``dilation``) fit along one axis."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def output_shape(H: int, W: int, kernel, stride, padding, dilation=(1, 1)) -> tuple:
    """(OH, OW) of a window op on an H x W input; the geometry in pairs."""
    (KH, KW), (SH, SW), (PH, PW), (DH, DW) = kernel, stride, padding, dilation
    return output_size(H, KH, SH, PH, DH), output_size(W, KW, SW, PW, DW)


def scatter_windows(xp, shape, KH, KW, stride, padding, slab, dilation=(1, 1)):
    """Add ``slab(i, j)``, shaped (..., OH, OW), at kernel offset (i, j) of every window
    of an input shaped ``shape`` (..., H, W): the gradient that window element (i, j)
    of each output pixel sends back to the pixel it was read from. Overlapping windows
    add up; the padding is cropped. -> (..., H, W)

    The loop runs over the KH*KW kernel offsets only; each step adds one strided slab
    covering every image, channel and output pixel.
    """
    *lead, H, W = shape
    (SH, SW), (PH, PW), (DH, DW) = stride, padding, dilation
    OH, OW = output_shape(H, W, (KH, KW), stride, padding, dilation)
    g = None
    for i in range(KH):
        for j in range(KW):
            s = slab(i, j)  # (..., OH, OW)
            if g is None:
                g = xp.zeros((*lead, H + 2 * PH, W + 2 * PW), dtype=s.dtype)
            rows = slice(i * DH, i * DH + SH * OH, SH)
            columns = slice(j * DW, j * DW + SW * OW, SW)
            g[..., rows, columns] += s
    return g[..., PH:PH + H, PW:PW + W]  # (..., H, W)
