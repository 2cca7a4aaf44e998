"""Which modules of a model count as its "layers", in depth order.

The gradient-flow diagnostics report one row per layer. For a ResNet the natural
layer is the residual block (the ratio He et al.'s argument is about runs from the
first block's output to the last one's); for the MLPs of ``minires.models`` it is the
hidden block (Linear -> BatchNorm -> activation); for any other model, every
convolution and linear layer. Depth order is the order of ``named_modules()``, which
is the order of definition: in every minires model (and in any model written
top to bottom) that is the order the forward pass runs them.
"""

from __future__ import annotations

from .. import nn
from ..models import BasicBlock, Bottleneck, MLPBlock, ResidualMLPBlock

BLOCK_TYPES = (BasicBlock, Bottleneck, MLPBlock, ResidualMLPBlock)
WEIGHT_TYPES = (nn.Conv2d, nn.Linear)


def block_layers(model) -> list[str]:
    """Names of the residual (or plain) blocks and MLP hidden blocks of ``model``."""
    return [name for name, m in model.named_modules() if isinstance(m, BLOCK_TYPES)]


def weight_layers(model) -> list[str]:
    """Names of every ``Conv2d`` and ``Linear`` module of ``model``."""
    return [name for name, m in model.named_modules() if isinstance(m, WEIGHT_TYPES)]


def resolve_layers(model, layers=None) -> list[str]:
    """``layers``: None (blocks if the model has any, else weight layers), 'blocks',
    'weights', or a list of module names (as in ``named_modules()``)."""
    if layers is None:
        return block_layers(model) or weight_layers(model)
    if layers == "blocks":
        names = block_layers(model)
    elif layers == "weights":
        names = weight_layers(model)
    elif isinstance(layers, str):
        raise ValueError(f"layers must be None, 'blocks', 'weights' or a list of module "
                         f"names, got {layers!r}")
    else:
        modules = dict(model.named_modules())
        names = list(layers)
        missing = [n for n in names if n not in modules]
        if missing:
            raise ValueError(f"{type(model).__name__} has no module named {missing}; "
                             "see model.named_modules()")
    if not names:
        raise ValueError(f"{type(model).__name__}: no layers to monitor for layers={layers!r}")
    return names
