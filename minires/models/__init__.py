"""Models: CIFAR and ImageNet ResNets, their plain twins, MLPs, and ``get_model``.

``resnet18/34/50(weights=...)`` load pretrained weights (``minires.models.pretrained``).
"""

from __future__ import annotations

from . import pretrained
from .mlp import MLP, MLPBlock, PlainMLP, ResidualMLP, ResidualMLPBlock, mlp
from .pretrained import load_weights, pretrained_weights
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


def _mlp(num_classes: int = 10, depth: int = 4, width: int = 256, **kwargs) -> MLP:
    """``mlp`` with a default size, 4 hidden ReLU layers of 256 units, so that the name
    alone builds a model like every other name here."""
    return mlp(depth, width, num_classes=num_classes, **kwargs)


_MODELS = {
    "resnet20": resnet20, "resnet32": resnet32, "resnet44": resnet44, "resnet56": resnet56,
    "resnet110": resnet110,
    "plain20": plain20, "plain32": plain32, "plain44": plain44, "plain56": plain56,
    "plain110": plain110,
    "resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50,
    "residual_mlp": ResidualMLP,
    "mlp": _mlp,  # depth= and width= change its size
}


def list_models() -> list[str]:
    """The names ``get_model`` accepts; each builds a model with no other argument."""
    return list(_MODELS)


def get_model(name: str, num_classes: int = 10, **kwargs):
    """Build a model by name, e.g. ``get_model('resnet56', num_classes=10)``.

    Extra keyword arguments go to the builder (``shortcut='B'``, ``batch_norm=False``,
    ``zero_init_residual=True``, ``cifar_stem=True``, ``depth=``/``width=`` for 'mlp').
    """
    if name not in _MODELS:
        raise ValueError(f"get_model: unknown model {name!r}; available: "
                         f"{', '.join(_MODELS)}")
    return _MODELS[name](num_classes=num_classes, **kwargs)


__all__ = [
    "BasicBlock", "Bottleneck", "MLP", "MLPBlock", "PlainMLP", "ResNet", "ResidualMLP",
    "ResidualMLPBlock", "ZeroPadShortcut", "cifar_resnet", "get_model", "list_models",
    "load_weights", "mlp", "plain110", "plain20", "plain32", "plain44", "plain56", "plain_cifar",
    "pretrained", "pretrained_weights", "resnet110", "resnet18", "resnet20", "resnet32",
    "resnet34", "resnet44", "resnet50", "resnet56",
]
