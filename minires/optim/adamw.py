"""AdamW: Adam with *decoupled* weight decay (Loshchilov & Hutter, 2019).

Adam's L2 term ``g + lambda * p`` passes through the division by ``sqrt(v_hat)``, so
parameters with large gradients are decayed less. AdamW shrinks the parameter directly,
before and apart from the adaptive step, exactly as PyTorch does::

    p = p * (1 - lr * lambda)                # decoupled decay (lambda: weight_decay)
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    m_hat = m / (1 - beta1^t)
    v_hat = v / (1 - beta2^t)
    p = p - lr * m_hat / (sqrt(v_hat) + eps)

Everything but the decay is Adam's code (see ``adam.py``).
"""

from __future__ import annotations

from .adam import Adam


class AdamW(Adam):
    """``AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
    amsgrad=False)``."""

    _decoupled_weight_decay = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad)
