"""The model registry: ``get_model``, ``list_models`` and ``@register_model``.

A builder registers itself where it is defined::

    @register_model()
    def resnet20(num_classes=10, ...): ...

and ``get_model('resnet20')``, ``list_models()``, ``minires train --model`` and their
error messages all know it. Every registered builder must build a model from
``num_classes`` alone (``tests/test_models.py`` builds each one).
"""

from __future__ import annotations

import inspect

_MODELS: dict = {}


def register_model(name: str | None = None):
    """Decorator: list a model builder (a function or a class taking ``num_classes=``)
    under ``name``, by default its own ``__name__``."""
    def add(builder):
        key = name or builder.__name__
        if key in _MODELS:
            raise ValueError(f"register_model: a model named {key!r} is already registered "
                             f"({_MODELS[key].__module__}.{_MODELS[key].__qualname__})")
        _MODELS[key] = builder
        return builder
    return add


def list_models() -> list[str]:
    """The names ``get_model`` accepts, in the order they were registered; each builds a
    model with no other argument."""
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


def takes(name: str, argument: str) -> bool:
    """Whether the builder of model ``name`` takes the keyword ``argument`` (the MLPs
    take ``in_features``, which ``minires train`` sets from the data set)."""
    return argument in inspect.signature(_MODELS[name]).parameters
