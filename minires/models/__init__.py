"""Models: CIFAR and ImageNet ResNets, their plain twins, MLPs, and ``get_model``.

``resnet18/34/50(weights=...)`` load pretrained weights (``minires.models.pretrained``).
A builder decorated with ``@register_model()`` (``minires.models.registry``) is known
to ``get_model``, ``list_models`` and ``minires train --model``.
"""

from __future__ import annotations

# resnet before mlp: the registry lists models in the order they register
from . import pretrained, resnet  # noqa: F401
from .mlps import MLP, MLPBlock, PlainMLP, ResidualMLP, ResidualMLPBlock, mlp
from .pretrained import load_weights, pretrained_weights
from .registry import get_model, list_models, register_model
from .resnet import (
    BasicBlock,
    Bottleneck,
    ResNet,
    ZeroPadShortcut,
    cifar_resnet,
    plain20,
    plain32,
    plain44,
    plain56,
    plain110,
    plain_cifar,
    resnet18,
    resnet20,
    resnet32,
    resnet34,
    resnet44,
    resnet50,
    resnet56,
    resnet110,
)

__all__ = [
    "BasicBlock", "Bottleneck", "MLP", "MLPBlock", "PlainMLP", "ResNet", "ResidualMLP",
    "ResidualMLPBlock", "ZeroPadShortcut", "cifar_resnet", "get_model", "list_models",
    "load_weights", "mlp", "plain110", "plain20", "plain32", "plain44", "plain56", "plain_cifar",
    "pretrained", "pretrained_weights", "register_model", "resnet110", "resnet18", "resnet20",
    "resnet32", "resnet34", "resnet44", "resnet50", "resnet56",
]
