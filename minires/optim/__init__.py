"""Optimizers and learning-rate schedules (``import minires.optim as optim``).

``optim.SGD``, ``optim.Adam``, ``optim.AdamW`` and ``optim.lr_scheduler.*`` follow
PyTorch's names, arguments and update rules; ``clip_grad_norm_`` lives in
``minires.nn.utils`` (as in PyTorch) and is re-exported here.
"""

from ..nn.utils import clip_grad_norm_
from . import lr_scheduler  # noqa: F401
from .adam import Adam
from .adamw import AdamW
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "clip_grad_norm_", "lr_scheduler"]
