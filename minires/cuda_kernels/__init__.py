"""CUDA kernels for minires (``mr.cuda.is_available()``, as in ``torch.cuda``, is
``minires.backend.cuda``).

Each kernel replaces one array-level helper of ``minires.ops`` (marked ``@overridable``
there) for CuPy arrays; the pure-xp helper stays the reference it must match
(``helper.reference``). Importing this package registers the kernels with
``backend.register_kernel`` when CuPy is installed, and does nothing else when it is not.
``mr.use_kernels(False)`` or ``MINIRES_KERNELS=0`` switches them off again.

| helper                  | kernel file | one thread per          |
|-------------------------|-------------|-------------------------|
| im2col                  | conv.py     | entry of the patch matrix |
| col2im                  | conv.py     | input pixel (a gather)  |
| max_pool2d_forward      | pool.py     | output element          |
| max_pool2d_backward     | pool.py     | input pixel (a gather)  |
| batch_norm_backward     | norm.py     | element (sums by CuPy)  |
| cross_entropy_forward   | loss.py     | row of logits           |

The kernels are C++ templates compiled by CuPy (NVRTC) on first use, for float32 and
float64; other dtypes, and arrays of 2**31 elements or more, go to the reference.

Also here: ``host.py``, which builds the same CUDA source for the CPU, so the
kernel-versus-reference cases of the op specs (``minires.opspec.kernels``), which the
tests and ``minires selftest`` run, check every kernel's arithmetic on
machines without a GPU.
"""

from __future__ import annotations

from .. import backend
from . import conv, loss, norm, pool

# helper name in minires.ops -> its CUDA version
KERNELS = {
    "im2col": conv.im2col,
    "col2im": conv.col2im,
    "max_pool2d_forward": pool.max_pool2d_forward,
    "max_pool2d_backward": pool.max_pool2d_backward,
    "batch_norm_backward": norm.batch_norm_backward,
    "cross_entropy_forward": loss.cross_entropy_forward,
}

# every CUDA source, for tests that compile them without a GPU
SOURCES = {"conv": conv.SOURCE, "pool": pool.SOURCE, "norm": norm.SOURCE,
           "loss": loss.SOURCE}


def register() -> list:
    """Register every kernel with the dispatcher if CuPy is present; return their names."""
    if backend.cupy is None:
        return []
    for name, fn in KERNELS.items():
        backend.register_kernel(name, fn)
    return list(KERNELS)


registered = register()

__all__ = ["KERNELS", "SOURCES", "register", "registered"]
