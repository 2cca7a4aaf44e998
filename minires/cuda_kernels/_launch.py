"""Compiling and launching kernels: the only file in ``minires.cuda_kernels`` that talks to CuPy.

Every kernel here is a C++ function template on its element type ``T``, so one source
serves float32 (``T = float``) and float64 (``T = double``). CuPy compiles a source with
NVRTC the first time one of its kernels is launched, and keeps the binary in its disk
cache (``~/.cupy/kernel_cache``), so later runs skip the compiler altogether.

Sizes and indices are 32-bit ``int`` in the kernels: 64-bit division and modulo, which
every kernel uses to turn a flat thread number into coordinates, cost several times as
much as 32-bit ones on a GPU. The Python wrappers check that every index fits and hand
anything larger (over 2**31 elements) to the pure-xp reference instead.
"""

from __future__ import annotations

import numpy

from .. import backend

# Threads per block: a multiple of the 32-thread warp. 256 lets several blocks share
# one multiprocessor, which hides memory latency; every kernel here is memory-bound and
# uses no shared memory, so the exact number matters little.
THREADS = 256

INT32_MAX = 2**31 - 1

# numpy dtype -> the C++ type that instantiates the templates
CTYPES = {numpy.dtype(numpy.float32): "float", numpy.dtype(numpy.float64): "double"}


class Source:
    """CUDA C++ source text holding the kernel templates named in ``kernels``."""

    def __init__(self, code: str, kernels):
        self.code = code
        self.kernels = tuple(kernels)
        # NVRTC instantiates a template only when asked for it by name
        self.name_expressions = tuple(f"{k}<{t}>" for k in self.kernels
                                      for t in CTYPES.values())

    def function(self, kernel: str, dtype):
        """The compiled ``kernel<T>`` for arrays of ``dtype`` (compiled on first use)."""
        return get_function(self, f"{kernel}<{CTYPES[numpy.dtype(dtype)]}>")


_modules: dict = {}


def cupy_function(source: Source, expression: str):
    """Compile ``source`` once per process (CuPy also caches it on disk) and return the
    instantiation named ``expression``, e.g. ``"im2col<float>"``."""
    module = _modules.get(source.code)
    if module is None:
        module = backend.cupy.RawModule(code=source.code,
                                        name_expressions=list(source.name_expressions))
        _modules[source.code] = module
    return module.get_function(expression)


# The compiler in use. A test replaces it with one that builds the same source for the
# CPU, which checks every kernel's index arithmetic on machines without a GPU.
get_function = cupy_function


def launch(function, total: int, args) -> None:
    """Run ``function`` on ``total`` threads, one per output element, in blocks of THREADS."""
    if total == 0:  # a grid of zero blocks is a launch error in CUDA
        return
    blocks = (total + THREADS - 1) // THREADS
    function((blocks,), (THREADS,), args)


def supported(*arrays) -> bool:
    """Whether the kernels handle these arrays: float32/float64, fewer than 2**31 elements."""
    return all(a.dtype in CTYPES for a in arrays) and fits_int32(*(a.size for a in arrays))


def fits_int32(*sizes) -> bool:
    return all(int(s) <= INT32_MAX for s in sizes)


def window_fits_int32(H, W, KH, KW, padding) -> bool:
    """Whether the index arithmetic of a windowed kernel (convolution, pooling) stays
    within 32 bits for this geometry, however small the arrays: coordinates such as
    ``oh * SH - PH + i * DH`` range over the padded image (``H + 2*PH`` rows; a huge
    padding with a huge stride gives few outputs but large coordinates), and window
    offsets ``i * KW + j`` up to ``KH * KW``."""
    PH, PW = padding
    return fits_int32(H + 2 * PH, W + 2 * PW, KH * KW)


def int32(*values):
    """Kernel arguments declared ``int``: CuPy passes numpy scalars with their exact type."""
    return tuple(numpy.int32(v) for v in values)
