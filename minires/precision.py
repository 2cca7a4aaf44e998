"""Float32 matrix-multiply precision: TF32 and bfloat16, as PyTorch's
``torch.set_float32_matmul_precision``.

NVIDIA GPUs of compute capability 8.0 and later (A100, H100) multiply float32 matrices
several times faster on their tensor cores in TF32 ("TensorFloat-32"): each input keeps
float32's 8 exponent bits but only 10 of its 23 mantissa bits, and the products are
summed in float32. As in PyTorch this is off by default, and it touches float32 matrix
multiplies only (matmul, linear, conv2d's GEMMs), never float64 and never the sums of
BatchNorm or the losses. Every such multiply in minires.ops goes through ``matmul``.

Where cuBLAS cannot do it (NumPy arrays, older GPUs) minires rounds both inputs itself
and multiplies them in float32: the same loss of precision without the speed-up, so
its effect on accuracy can be studied on any machine.
"""

from __future__ import annotations

import functools

import numpy

from . import backend

# mantissa bits each float32 input keeps, by the names of torch.set_float32_matmul_precision
MATMUL_PRECISIONS = {
    "highest": 23,  # float32: nothing is rounded
    "high": 10,     # TF32
    "medium": 7,    # bfloat16 (on the GPU: rounded by minires, then multiplied in TF32)
}
_matmul_precision = "highest"


def set_float32_matmul_precision(precision: str) -> None:
    """How float32 matrix multiplies round their inputs: 'highest' (float32, the
    default), 'high' (TF32) or 'medium' (bfloat16), as ``torch.set_float32_matmul_precision``."""
    global _matmul_precision
    if precision not in MATMUL_PRECISIONS:
        raise ValueError(f"set_float32_matmul_precision: expected one of "
                         f"{', '.join(map(repr, MATMUL_PRECISIONS))}, got {precision!r}")
    _matmul_precision = precision


def get_float32_matmul_precision() -> str:
    """The precision of float32 matrix multiplies: 'highest', 'high' or 'medium'
    (see ``set_float32_matmul_precision``)."""
    return _matmul_precision


def round_mantissa(array, bits: int):
    """float32 ``array`` rounded to the nearest values with only ``bits`` mantissa bits,
    ties away from zero (like PTX's ``cvt.rna.tf32.f32``), still float32: what a TF32
    (10 bits) or bfloat16 (7 bits) input keeps of each number."""
    xp = backend.array_module(array)
    if array.dtype != numpy.float32:
        raise TypeError(f"round_mantissa: expected a float32 array, got {array.dtype}")
    drop = 23 - bits  # low mantissa bits to clear
    # on the bits, sign apart: add half of the last kept bit, then clear the dropped
    # bits; a carry into the exponent is the right way to round up (1.11..1 -> 10.0)
    rounded = xp.ascontiguousarray(array).view(xp.uint32) + numpy.uint32(1 << (drop - 1))
    rounded &= numpy.uint32((0xFFFFFFFF >> drop) << drop)
    rounded = rounded.view(xp.float32)
    # a NaN's payload could carry into infinity or the sign bit: NaNs stay as they are
    xp.copyto(rounded, array, where=xp.isnan(array))
    return rounded


@functools.lru_cache(maxsize=None)
def tf32_tensor_cores(device_id: int) -> bool:
    """Whether GPU ``device_id`` has tensor cores that multiply in TF32 (compute
    capability 8.0 and later)."""
    return int(backend.cupy.cuda.Device(device_id).compute_capability) >= 80


def _cublas_tf32_matmul(a, b):
    """``a @ b`` with cuBLAS in TF32 mode, CuPy's float32 setting restored afterwards."""
    linalg = backend.cupy._core._routines_linalg  # CuPy's own switch, not public API
    previous = linalg.get_compute_type(numpy.float32)
    linalg.set_compute_type(numpy.float32, linalg.COMPUTE_TYPE_TF32)
    try:
        return a @ b
    finally:
        linalg.set_compute_type(numpy.float32, previous)


def matmul(a, b):
    """``a @ b`` for arrays, at the float32 matmul precision (see above)."""
    bits = MATMUL_PRECISIONS[_matmul_precision]
    if bits == 23 or a.dtype != numpy.float32 or b.dtype != numpy.float32:
        return a @ b
    if backend.is_cupy_array(a) and tf32_tensor_cores(a.device.id):
        if bits < 10:  # bfloat16 values are exact in TF32: round, then use the tensor cores
            a, b = round_mantissa(a, bits), round_mantissa(b, bits)
        return _cublas_tf32_matmul(a, b)
    return round_mantissa(a, bits) @ round_mantissa(b, bits)
