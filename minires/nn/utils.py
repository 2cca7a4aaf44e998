"""``nn.utils.clip_grad_norm_``, where PyTorch users look for it (it lives in minires.optim)."""

from ..optim.clip import clip_grad_norm_

__all__ = ["clip_grad_norm_"]
