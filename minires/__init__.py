"""minires: a from-scratch deep-learning framework for learning and teaching.

``import minires as mr`` gives tensors with autograd, ``mr.nn.functional`` the ops,
and ``mr.gradcheck`` the finite-difference checker that proves their backward passes.
"""

import numpy as _numpy

from . import nn, ops  # noqa: F401
from .backend import cuda, manual_seed, use_kernels
from .gradcheck import GradcheckError, gradcheck
from .ops import cat, exp, log, matmul, max, mean, sqrt, sum
from .tensor import (
    Function,
    Tensor,
    arange,
    as_tensor,
    enable_grad,
    full,
    is_grad_enabled,
    no_grad,
    ones,
    ones_like,
    rand,
    randint,
    randn,
    tensor,
    zeros,
    zeros_like,
)

float32 = _numpy.float32
float64 = _numpy.float64
int64 = _numpy.int64
bool_ = _numpy.bool_

__version__ = "0.1.0"

__all__ = [
    "Function", "GradcheckError", "Tensor", "arange", "as_tensor", "bool_", "cat", "cuda",
    "enable_grad", "exp", "float32", "float64", "full", "gradcheck", "int64",
    "is_grad_enabled", "log", "manual_seed", "matmul", "max", "mean", "nn", "no_grad",
    "ones", "ones_like", "ops", "rand", "randint", "randn", "sqrt", "sum", "tensor",
    "use_kernels", "zeros", "zeros_like",
]
