"""``cupy._core._routines_linalg`` of the CuPy stand-in: cuBLAS's compute type per dtype
(``COMPUTE_TYPE_TF32`` makes the stand-in round float32 inputs of matmul, dot, tensordot
and einsum to TF32, as the tensor cores do)."""

from cupy_standin import _facade as _standin_facade
from cupy_standin._cuda import get_compute_type, set_compute_type  # noqa: F401

__getattr__ = _standin_facade.module_getattr(__name__)
