"""Residual networks (He, Zhang, Ren & Sun, 2015, "Deep Residual Learning for Image
Recognition"), their plain twins, with torchvision's layer names.

One ``ResNet`` class builds both families:

* the CIFAR-10 nets of section 4.2 (``resnet20`` ... ``resnet110``): a 3x3 convolution
  with 16 channels, three stages of n BasicBlocks with 16, 32 and 64 channels (the
  first block of stages 2 and 3 halves the feature map with stride 2), global average
  pooling and a linear classifier: 6n + 2 layers with weights.
* torchvision's ImageNet nets (``resnet18``, ``resnet34``, ``resnet50``), "v1.5": the
  stride of a Bottleneck sits on its 3x3 convolution, not on the first 1x1. Names and
  shapes match torchvision's, so a torchvision ``state_dict`` loads key for key.

Shortcuts when a block changes the shape (section 3.3 of the paper):

* option 'A': identity with stride-2 subsampling and zero-padded extra channels, no
  parameters (the paper's choice for CIFAR);
* option 'B': a 1x1 convolution + BatchNorm projection (``downsample.0``/``.1``, as
  torchvision names it; torchvision always uses it).

Either way the module lives at ``block.downsample`` (None where the shape is kept).
A "plain" net (``residual=False``, ``plain20`` ...) has the same layers with every
shortcut removed: the degradation experiment of the paper's Figure 6.
"""

from __future__ import annotations

from .. import nn
from ..nn import functional as F
from ..nn import init
from ..ops import channel_major, flatten
from ..tensors import Tensor
from .registry import register_model


def _fusable(x: Tensor, *modules) -> bool:
    """Whether a block may run BatchNorm (+ add) + ReLU as one op of the channel-major
    fast path: on a device that prefers it, with real BatchNorms, and with no hook on
    the modules the fused op stands in for (a hook must see what it was promised: on
    the plain path it does)."""
    return channel_major.applies(x.data) and all(
        not (m._forward_pre_hooks or m._forward_hooks or m._backward_hooks)
        and (isinstance(m, nn.BatchNorm2d) or isinstance(m, nn.ReLU)) for m in modules)


def _shortcut(block, x: Tensor) -> Tensor | None:
    """What a block adds to its last BatchNorm's output: x, downsample(x), or nothing."""
    if not block.residual:
        return None
    return x if block.downsample is None else block.downsample(x)


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1: keeps the size at stride 1, halves it at 2."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """Option A: ``x[:, :, ::stride, ::stride]`` with zero channels appended up to
    ``out_channels``. No parameters, so an option-A net has exactly the parameters of
    its plain twin."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"ZeroPadShortcut: cannot pad {in_channels} channels down to "
                             f"{out_channels}")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: Tensor) -> Tensor:
        if self.stride != 1:
            x = x[:, :, ::self.stride, ::self.stride]
        extra = self.out_channels - self.in_channels
        if extra:  # (W before/after, H before/after, C before/after)
            x = F.pad(x, (0, 0, 0, 0, 0, extra))
        return x

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


class BasicBlock(nn.Module):
    """Two 3x3 convolutions: out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)).

    ``residual=False`` drops the shortcut (a block of a plain net).
    """

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, norm_layer=None, residual: bool = True):
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        if downsample is not None and not residual:
            raise ValueError("BasicBlock: a plain block (residual=False) has no downsample")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        if _fusable(x, self.bn1, self.bn2, self.relu):
            out = self.conv2(self.bn1.forward_relu(self.conv1(x)))
            return self.bn2.forward_relu(out, residual=_shortcut(self, x))
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + _shortcut(self, x)
        return self.relu(out)

    def extra_repr(self) -> str:
        return "" if self.residual else "residual=False"


class Bottleneck(nn.Module):
    """1x1 (reduce) -> 3x3 (stride here, torchvision v1.5) -> 1x1 (expand x4), plus
    the shortcut."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, norm_layer=None, residual: bool = True):
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        if downsample is not None and not residual:
            raise ValueError("Bottleneck: a plain block (residual=False) has no downsample")
        width = planes
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        if _fusable(x, self.bn1, self.bn2, self.bn3, self.relu):
            out = self.bn2.forward_relu(self.conv2(self.bn1.forward_relu(self.conv1(x))))
            return self.bn3.forward_relu(self.conv3(out), residual=_shortcut(self, x))
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.residual:
            out = out + _shortcut(self, x)
        return self.relu(out)

    def extra_repr(self) -> str:
        return "" if self.residual else "residual=False"


class ResNet(nn.Module):
    """A stem, ``len(layers)`` stages of blocks, global average pooling and ``fc``.

    ``ResNet(block, layers, num_classes, zero_init_residual)`` is torchvision's
    signature; the keyword-only options build the paper's CIFAR variants:

    * ``widths``: channels of each stage before expansion ((64, 128, 256, 512) for
      ImageNet, (16, 32, 64) for CIFAR);
    * ``cifar_stem``: a 3x3 stride-1 ``conv1`` and no max-pool (``maxpool`` is an
      ``Identity``, so the attribute exists in both versions) instead of the 7x7
      stride-2 convolution and 3x3 max-pool meant for 224x224 images;
    * ``shortcut``: 'A' (zero-padding identity) or 'B' (1x1 projection) where a block
      changes the shape;
    * ``batch_norm=False``: every BatchNorm is replaced by an ``Identity`` (the names
      ``bn1`` ... stay, with no parameters). The convolutions keep ``bias=False``: the
      only change is the missing normalisation, which is the variable the
      vanishing-gradient experiments study;
    * ``residual=False``: the plain twin, without shortcuts.

    ``zero_init_residual=True`` sets the last BatchNorm gamma of every block to 0, so
    each block starts as relu(shortcut(x)) (Goyal et al., 2017). Without BatchNorm the
    last convolution of each block is zeroed instead, which has the same effect.
    """

    def __init__(self, block, layers, num_classes: int = 1000, zero_init_residual: bool = False,
                 *, widths=(64, 128, 256, 512), cifar_stem: bool = False, shortcut: str = "B",
                 batch_norm: bool = True, residual: bool = True):
        super().__init__()
        if len(widths) != len(layers):
            raise ValueError(f"ResNet: {len(layers)} stages in layers={layers} but "
                             f"{len(widths)} widths={widths}")
        if shortcut not in ("A", "B"):
            raise ValueError(f"ResNet: shortcut must be 'A' or 'B', got {shortcut!r}")
        if zero_init_residual and not residual:
            raise ValueError("ResNet: zero_init_residual=True would zero every block of a "
                             "plain net (no shortcut carries the signal)")
        self._norm_layer = nn.BatchNorm2d if batch_norm else nn.Identity
        self._shortcut, self._residual = shortcut, residual
        self.inplanes = widths[0]
        if cifar_stem:
            self.conv1 = conv3x3(3, self.inplanes)
        else:
            self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3,
                                   bias=False)
        self.bn1 = self._norm_layer(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if cifar_stem else nn.MaxPool2d(3, stride=2, padding=1)
        self.num_stages = len(layers)
        for i, (width, blocks) in enumerate(zip(widths, layers)):
            stage = self._make_layer(block, width, blocks, stride=1 if i == 0 else 2)
            setattr(self, f"layer{i + 1}", stage)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[-1] * block.expansion, num_classes)

        # torchvision's initialisation: He normal on fan_out for convolutions (fc keeps
        # PyTorch's default), BatchNorm as the identity map
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                init.ones_(m.weight)
                init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    last_bn, last_conv = ((m.bn3, m.conv3) if isinstance(m, Bottleneck)
                                          else (m.bn2, m.conv2))
                    init.zeros_(last_bn.weight if batch_norm else last_conv.weight)

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        out_planes = planes * block.expansion
        downsample = None
        if self._residual and (stride != 1 or self.inplanes != out_planes):
            if self._shortcut == "A":
                downsample = ZeroPadShortcut(self.inplanes, out_planes, stride)
            else:
                downsample = nn.Sequential(conv1x1(self.inplanes, out_planes, stride),
                                           self._norm_layer(out_planes))
        layers = [block(self.inplanes, planes, stride, downsample, self._norm_layer,
                        self._residual)]
        self.inplanes = out_planes
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, norm_layer=self._norm_layer,
                                residual=self._residual))
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        if _fusable(x, self.bn1, self.relu):
            x = self.maxpool(self.bn1.forward_relu(x))
        else:
            x = self.maxpool(self.relu(self.bn1(x)))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        x = self.avgpool(x)  # (N, C, 1, 1)
        return self.fc(flatten(x, 1))  # (N, num_classes)


# ------------------------------------------------------------------------ CIFAR nets


def cifar_resnet(depth: int, num_classes: int = 10, shortcut: str = "A",
                 zero_init_residual: bool = False, batch_norm: bool = True,
                 residual: bool = True) -> ResNet:
    """The CIFAR-10 ResNet of depth 6n + 2 (section 4.2): n BasicBlocks per stage."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"cifar_resnet: depth must be 6n + 2 with n >= 1 (20, 32, 44, 56, "
                         f"110, ...), got {depth}")
    n = (depth - 2) // 6
    return ResNet(BasicBlock, [n, n, n], num_classes, zero_init_residual, widths=(16, 32, 64),
                  cifar_stem=True, shortcut=shortcut, batch_norm=batch_norm, residual=residual)


@register_model()
def resnet20(num_classes=10, shortcut="A", zero_init_residual=False, batch_norm=True):
    """ResNet-20 for 32x32 images (He et al. 2015, section 4.2): 3 stages of 3
    BasicBlocks, 0.27M parameters. ``shortcut`` 'A' is the paper's zero-padding shortcut."""
    return cifar_resnet(20, num_classes, shortcut, zero_init_residual, batch_norm)


@register_model()
def resnet32(num_classes=10, shortcut="A", zero_init_residual=False, batch_norm=True):
    """ResNet-32 for 32x32 images (He et al. 2015, section 4.2): 3 stages of 5
    BasicBlocks, 0.46M parameters."""
    return cifar_resnet(32, num_classes, shortcut, zero_init_residual, batch_norm)


@register_model()
def resnet44(num_classes=10, shortcut="A", zero_init_residual=False, batch_norm=True):
    """ResNet-44 for 32x32 images (He et al. 2015, section 4.2): 3 stages of 7
    BasicBlocks, 0.66M parameters."""
    return cifar_resnet(44, num_classes, shortcut, zero_init_residual, batch_norm)


@register_model()
def resnet56(num_classes=10, shortcut="A", zero_init_residual=False, batch_norm=True):
    """ResNet-56 for 32x32 images (He et al. 2015, section 4.2): 3 stages of 9
    BasicBlocks, 0.85M parameters."""
    return cifar_resnet(56, num_classes, shortcut, zero_init_residual, batch_norm)


@register_model()
def resnet110(num_classes=10, shortcut="A", zero_init_residual=False, batch_norm=True):
    """ResNet-110 for 32x32 images (He et al. 2015, section 4.2): 3 stages of 18
    BasicBlocks, 1.7M parameters."""
    return cifar_resnet(110, num_classes, shortcut, zero_init_residual, batch_norm)


def plain_cifar(depth: int, num_classes: int = 10, batch_norm: bool = True) -> ResNet:
    """The plain CIFAR net of depth 6n + 2: the ResNet's layers, no shortcuts."""
    return cifar_resnet(depth, num_classes, batch_norm=batch_norm, residual=False)


@register_model()
def plain20(num_classes=10, batch_norm=True):
    """The plain twin of ResNet-20: the same 20 layers without shortcuts."""
    return plain_cifar(20, num_classes, batch_norm)


@register_model()
def plain32(num_classes=10, batch_norm=True):
    """The plain twin of ResNet-32: the same 32 layers without shortcuts."""
    return plain_cifar(32, num_classes, batch_norm)


@register_model()
def plain44(num_classes=10, batch_norm=True):
    """The plain twin of ResNet-44: the same 44 layers without shortcuts."""
    return plain_cifar(44, num_classes, batch_norm)


@register_model()
def plain56(num_classes=10, batch_norm=True):
    """The plain twin of ResNet-56: the same 56 layers without shortcuts."""
    return plain_cifar(56, num_classes, batch_norm)


@register_model()
def plain110(num_classes=10, batch_norm=True):
    """The plain twin of ResNet-110: the same 110 layers without shortcuts."""
    return plain_cifar(110, num_classes, batch_norm)


# ------------------------------------------------------------------------ ImageNet nets


def _with_weights(model: ResNet, arch: str, weights, num_classes: int) -> ResNet:
    if weights is None:
        return model
    from .pretrained import _release_name, load_weights, pretrained_weights

    if _release_name(arch, weights) is not None:
        release = pretrained_weights(arch, weights)
        if num_classes != release.num_classes:
            raise ValueError(
                f"{arch}(weights={weights!r}): these {release.source} weights classify "
                f"{release.num_classes} classes; build the model with num_classes="
                f"{release.num_classes} (the default) and replace its head for your classes: "
                f"model.fc = nn.Linear(model.fc.in_features, {num_classes})")
    load_weights(model, weights, arch=arch)
    return model


@register_model()
def resnet18(num_classes=1000, cifar_stem=False, zero_init_residual=False, *,
             weights=None) -> ResNet:
    """torchvision's resnet18 (11,689,512 parameters with 1000 classes).

    ``weights``: None (random initialisation), a file (minires, safetensors or PyTorch),
    or a torchvision release name such as ``"IMAGENET1K_V1"`` or ``"DEFAULT"``
    (downloaded once, hash-checked; see ``minires.models.pretrained``).
    """
    model = ResNet(BasicBlock, [2, 2, 2, 2], num_classes, zero_init_residual,
                   cifar_stem=cifar_stem)
    return _with_weights(model, "resnet18", weights, num_classes)


@register_model()
def resnet34(num_classes=1000, cifar_stem=False, zero_init_residual=False, *,
             weights=None) -> ResNet:
    """torchvision's resnet34 (21,797,672 parameters with 1000 classes).

    ``weights``: as for ``resnet18``.
    """
    model = ResNet(BasicBlock, [3, 4, 6, 3], num_classes, zero_init_residual,
                   cifar_stem=cifar_stem)
    return _with_weights(model, "resnet34", weights, num_classes)


@register_model()
def resnet50(num_classes=1000, cifar_stem=False, zero_init_residual=False, *,
             weights=None) -> ResNet:
    """torchvision's resnet50 v1.5 (25,557,032 parameters with 1000 classes).

    ``weights``: as for ``resnet18``; ``"DEFAULT"`` is torchvision's ``IMAGENET1K_V2``.
    """
    model = ResNet(Bottleneck, [3, 4, 6, 3], num_classes, zero_init_residual,
                   cifar_stem=cifar_stem)
    return _with_weights(model, "resnet50", weights, num_classes)
