"""Every differentiable op: a ``Function`` subclass and its lowercase wrapper."""

from .activation import dropout, leaky_relu, log_softmax, relu, sigmoid, softmax, tanh
from .basic import (
    abs,
    add,
    cast,
    div,
    exp,
    linear,
    log,
    matmul,
    mul,
    neg,
    pow,
    sqrt,
    sub,
    to_device,
)
from .conv import conv2d
from .loss import cross_entropy, mse_loss, nll_loss
from .norm import batch_norm
from .pool import adaptive_avg_pool2d, avg_pool2d, max_pool2d
from .reduce import amax, max, mean, sum, var
from .shape import cat, flatten, getitem, pad, permute, reshape, transpose

__all__ = [
    "abs", "adaptive_avg_pool2d", "add", "amax", "avg_pool2d", "batch_norm", "cast",
    "cat", "conv2d", "cross_entropy", "div", "dropout", "exp", "flatten", "getitem",
    "leaky_relu", "linear", "log", "log_softmax", "matmul", "max", "max_pool2d", "mean",
    "mse_loss", "mul", "neg", "nll_loss", "pad", "permute", "pow", "relu", "reshape",
    "sigmoid", "softmax", "sqrt", "sub", "sum", "tanh", "to_device", "transpose", "var",
]
