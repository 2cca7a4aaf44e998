"""The CuPy stand-in of minires's tests (NumPy underneath; see cupy_standin)."""

from cupy_standin import _facade as _standin_facade
from cupy_standin._api import version as _standin_version
from cupy_standin._array import ndarray, ufunc
from cupy_standin._cuda import RawKernel, RawModule
from cupy_standin._functions import (
                                     array,
                                     asanyarray,
                                     asarray,
                                     asnumpy,
                                     empty,
                                     empty_like,
                                     get_array_module,
                                     put,
                                     take,
                                     take_along_axis,
)
from cupy_standin._functions import blas as _standin_blas

from . import _core, cuda, fft, lib, linalg, random  # noqa: F401  (CuPy's submodules)

matmul = _standin_blas("matmul")
dot = _standin_blas("dot")
tensordot = _standin_blas("tensordot")
einsum = _standin_blas("einsum")

__version__ = _standin_version()
__getattr__ = _standin_facade.module_getattr(__name__)
