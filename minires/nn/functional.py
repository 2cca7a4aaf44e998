"""``minires.nn.functional`` (imported as ``F``): the ops under PyTorch's names."""

from ..ops import (  # noqa: F401
    adaptive_avg_pool2d,
    avg_pool2d,
    batch_norm,
    conv2d,
    cross_entropy,
    dropout,
    leaky_relu,
    linear,
    log_softmax,
    max_pool2d,
    mse_loss,
    nll_loss,
    pad,
    relu,
    sigmoid,
    softmax,
    tanh,
)
