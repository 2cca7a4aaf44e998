"""minires: a from-scratch deep-learning framework for learning and teaching.

``import minires as mr`` gives tensors with autograd, ``mr.nn`` layers and
``mr.nn.functional`` the ops, ``mr.optim`` optimizers, ``mr.data`` data sets and loaders,
``mr.models`` ResNets (with pretrained weights), ``mr.save``/``mr.load`` (minires
checkpoints, safetensors, PyTorch files), ``mr.save_safetensors``/``mr.load_safetensors``,
``mr.distributed`` data-parallel training over MPI and NCCL, and ``mr.gradcheck`` the
finite-difference checker that proves every backward pass. ``minires.train`` holds the
training loop behind the ``minires`` command.
"""

import numpy as _numpy

from . import (  # noqa: F401
    cuda_kernels,  # importing it registers the CUDA kernels when CuPy is present
    data,
    distributed,
    models,
    nn,
    ops,
    optim,
)
from .autograd import Function, enable_grad, is_grad_enabled, no_grad
from .backend import (
    cuda,  # mr.cuda.is_available(), as torch.cuda
    manual_seed,
    use_kernels,
)
from .gradient_check import GradcheckError, gradcheck
from .ops import amax, cat, exp, log, matmul, max, mean, sqrt, sum
from .precision import get_float32_matmul_precision, set_float32_matmul_precision
from .safetensors_io import load_safetensors, save_safetensors
from .serialization import CheckpointError, load, save
from .tensors import (
    Tensor,
    arange,
    as_tensor,
    full,
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
    "CheckpointError", "Function", "GradcheckError", "Tensor", "amax", "arange", "as_tensor",
    "bool_", "cat", "cuda", "data", "distributed", "enable_grad", "exp", "float32", "float64",
    "full", "get_float32_matmul_precision", "gradcheck", "int64", "is_grad_enabled", "load",
    "load_safetensors", "log", "manual_seed", "matmul", "max", "mean", "models", "nn", "no_grad",
    "ones", "ones_like", "ops", "optim", "rand", "randint", "randn", "save", "save_safetensors",
    "set_float32_matmul_precision", "sqrt", "sum", "tensor", "use_kernels", "zeros", "zeros_like",
]
