"""Fully connected networks for MNIST-sized inputs: a residual MLP, and the deep
``mlp`` builder the vanishing-gradient experiments use.

Both flatten their input, so (N, 1, 28, 28) images and (N, 784) vectors both work.
Every hidden Linear layer is its own child module, so forward and backward hooks can
be attached to each (``model.layers[3].fc``, or by name from ``named_modules()``).
"""

from __future__ import annotations

from .. import nn
from ..nn import init
from ..tensors import Tensor
from .registry import register_model

_ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


class ResidualMLPBlock(nn.Module):
    """out = relu(x + bn2(fc2(relu(bn1(fc1(x)))))): a BasicBlock with Linear layers."""

    def __init__(self, features: int, batch_norm: bool = True):
        super().__init__()
        norm = nn.BatchNorm1d if batch_norm else nn.Identity
        # a bias just before BatchNorm is cancelled by its mean subtraction
        self.fc1 = nn.Linear(features, features, bias=not batch_norm)
        self.bn1 = norm(features)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(features, features, bias=not batch_norm)
        self.bn2 = norm(features)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.fc1(x)))
        out = self.bn2(self.fc2(out))
        return self.relu(out + x)


@register_model("residual_mlp")
class ResidualMLP(nn.Module):
    """flatten -> fc_in (+ bn_in) -> relu -> ``num_blocks`` residual blocks -> fc.

    Hidden Linear layers use He normal initialisation (fan_in, ReLU gain) with zero
    bias; the classifier ``fc`` keeps PyTorch's default, as in the ResNets.
    """

    def __init__(self, in_features: int = 784, hidden: int = 256, num_blocks: int = 4,
                 num_classes: int = 10, batch_norm: bool = True):
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc_in = nn.Linear(in_features, hidden, bias=not batch_norm)
        self.bn_in = nn.BatchNorm1d(hidden) if batch_norm else nn.Identity()
        self.relu = nn.ReLU()
        self.blocks = nn.Sequential(*[ResidualMLPBlock(hidden, batch_norm)
                                      for _ in range(num_blocks)])
        self.fc = nn.Linear(hidden, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Linear) and m is not self.fc:
                init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn_in(self.fc_in(self.flatten(x))))
        return self.fc(self.blocks(x))


class MLPBlock(nn.Module):
    """One hidden layer: out = activation(bn(fc(x))), plus x if ``residual``."""

    def __init__(self, in_features: int, out_features: int, activation: str = "relu",
                 batch_norm: bool = False, residual: bool = False):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"MLPBlock: activation must be one of {sorted(_ACTIVATIONS)}, "
                             f"got {activation!r}")
        if residual and in_features != out_features:
            raise ValueError(f"MLPBlock: a residual block needs in_features == out_features, "
                             f"got {in_features} and {out_features}")
        self.fc = nn.Linear(in_features, out_features, bias=not batch_norm)
        self.bn = nn.BatchNorm1d(out_features) if batch_norm else nn.Identity()
        self.activation = _ACTIVATIONS[activation]()
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        out = self.activation(self.bn(self.fc(x)))
        return out + x if self.residual else out

    def extra_repr(self) -> str:
        return "residual=True" if self.residual else ""


class MLP(nn.Module):
    """flatten -> ``depth`` hidden ``MLPBlock`` s of ``width`` units (in ``layers``) -> fc.

    ``residual=True`` adds an identity shortcut around every hidden layer whose input
    already has ``width`` features (all but the first). ``init``:

    * 'he': kaiming_normal_(fan_in, ReLU gain): std sqrt(2 / fan_in), zero biases;
    * 'xavier': xavier_normal_ with gain 1 (Glorot & Bengio's setting): std
      sqrt(2 / (fan_in + fan_out)), zero biases;
    * 'default': PyTorch's Linear default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    It applies to every Linear layer, the classifier ``fc`` included.
    """

    def __init__(self, depth: int, width: int, activation: str = "relu",
                 residual: bool = False, batch_norm: bool = False, init: str = "he",
                 in_features: int = 784, num_classes: int = 10):
        super().__init__()
        if depth < 1:
            raise ValueError(f"MLP: depth must be at least 1, got {depth}")
        if init not in ("he", "xavier", "default"):
            raise ValueError(f"MLP: init must be 'he', 'xavier' or 'default', got {init!r}")
        self.flatten = nn.Flatten()
        self.layers = nn.Sequential(*[
            MLPBlock(in_features if i == 0 else width, width, activation, batch_norm,
                     residual=residual and (i > 0 or in_features == width))
            for i in range(depth)
        ])
        self.fc = nn.Linear(width, num_classes)
        self._init_weights(init)

    def _init_weights(self, scheme: str) -> None:
        if scheme == "default":
            return
        for m in self.modules():
            if isinstance(m, nn.Linear):
                if scheme == "he":
                    init.kaiming_normal_(m.weight, nonlinearity="relu")
                else:
                    init.xavier_normal_(m.weight)
                if m.bias is not None:
                    init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.layers(self.flatten(x)))


# The experiment notes call the residual=False net a "plain MLP"; it is this class.
PlainMLP = MLP


def mlp(depth: int, width: int, activation: str = "relu", residual: bool = False,
        batch_norm: bool = False, init: str = "he", in_features: int = 784,
        num_classes: int = 10) -> MLP:
    """A deep MLP with ``depth`` hidden layers of ``width`` units, for studying how
    gradients vanish (sigmoid/tanh, Xavier) or survive (ReLU + He, shortcuts, BN)."""
    return MLP(depth, width, activation, residual, batch_norm, init, in_features, num_classes)


@register_model("mlp")
def _default_mlp(num_classes: int = 10, depth: int = 4, width: int = 256,
                 in_features: int = 784, **kwargs) -> MLP:
    """``mlp`` with a default size, 4 hidden ReLU layers of 256 units, so that the name
    alone builds a model like every other registered name."""
    return mlp(depth, width, num_classes=num_classes, in_features=in_features, **kwargs)
