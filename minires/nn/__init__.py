"""Neural-network building blocks (``import minires.nn as nn``)."""

from . import functional  # noqa: F401
from .parameter import Parameter  # noqa: F401
