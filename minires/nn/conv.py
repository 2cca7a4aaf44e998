"""``Conv2d``: the module around ``F.conv2d`` (im2col + one matrix multiply).

On the CPU, convolutions of the shapes ResNets use (3x3 with padding 1, 1x1; stride 1
or 2) take the channel-major fast path of ``minires.ops.fast_conv`` instead: the same
numbers, an output that is an NCHW view of a padded grid (see docs/fast_cpu.md).
``minires.ops.channel_major.use_fast_path(False)`` sends every call to ``F.conv2d``.
"""

from __future__ import annotations

from ..ops import channel_major as cm
from ..ops import fast_conv
from ..ops.geometry import pair
from ..tensors import Tensor, as_tensor
from . import functional as F
from . import init
from .module import Module
from .parameter import empty_parameter


class Conv2d(Module):
    """2-D convolution over (N, C, H, W) input, like ``torch.nn.Conv2d``.

    ``weight`` has shape (out_channels, in_channels, KH, KW). Initialised as PyTorch
    does: kaiming_uniform_(a=sqrt(5)) for the weight, U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    for the bias, with fan_in = in_channels * KH * KW. Only ``groups=1`` and
    ``padding_mode='zeros'`` are supported (what ResNets need).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros"):
        super().__init__()
        if groups != 1:
            raise ValueError(f"Conv2d: only groups=1 is supported, got groups={groups}")
        if padding_mode != "zeros":
            raise ValueError(f"Conv2d: only padding_mode='zeros' is supported, got "
                             f"{padding_mode!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = pair(kernel_size, "kernel_size", "Conv2d")
        self.stride = pair(stride, "stride", "Conv2d")
        self.padding = pair(padding, "padding", "Conv2d")
        self.dilation = pair(dilation, "dilation", "Conv2d")
        self.groups, self.padding_mode = groups, padding_mode
        self.weight = empty_parameter(out_channels, in_channels, *self.kernel_size)
        if bias:
            self.bias = empty_parameter(out_channels)
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise weight and bias as PyTorch does: ``kaiming_uniform_(a=sqrt(5))`` and
        uniform in +-1/sqrt(fan_in)."""
        init.default_layer_init_(self.weight, self.bias)

    def forward(self, input: Tensor) -> Tensor:
        input = as_tensor(input)
        if cm.applies(input.data) and fast_conv.supports(self.kernel_size, self.stride,
                                                          self.padding, self.dilation):
            return fast_conv.conv2d(input, self.weight, self.bias, self.stride, self.padding)
        return F.conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.bias is None:
            s += ", bias=False"
        return s
