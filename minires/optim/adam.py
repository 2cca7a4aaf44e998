"""Adam: momentum on the gradient, divided by a running RMS of the gradient.

The update, exactly PyTorch's (``t`` counts this parameter's steps from 1)::

    g = g + lambda * p                       # weight decay (L2 in the gradient; see AdamW)
    m = beta1 * m + (1 - beta1) * g          # first moment: a running mean of g
    v = beta2 * v + (1 - beta2) * g * g      # second moment: a running mean of g^2
    m_hat = m / (1 - beta1^t)                # bias correction: m and v start at 0, so
    v_hat = v / (1 - beta2^t)                #   early averages are too small
    p = p - lr * m_hat / (sqrt(v_hat) + eps)

Written the way PyTorch evaluates it, which differs from the lines above only in
rounding: ``p -= (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)``.
Note that eps is added after the bias correction of ``sqrt(v)``.

``amsgrad=True`` (Reddi et al., 2018) divides by the largest ``v`` seen so far instead
of the current one, ``v_max = max(v_max, v)``, so the step size of a coordinate never
grows back after its gradients shrink.
"""

from __future__ import annotations

import math

from .. import backend
from ..autograd import no_grad
from ..autograd_safety import increment_version
from .optimizer import Optimizer


class Adam(Optimizer):
    """``Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
    amsgrad=False)``."""

    _state_keys = frozenset({"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"})
    _optional_settings = {"amsgrad": False}  # state dicts saved before amsgrad existed

    # AdamW flips this: decay the parameter directly instead of adding lambda * p to g
    _decoupled_weight_decay = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False):
        name = type(self).__name__
        if lr < 0.0:
            raise ValueError(f"{name}: invalid learning rate lr={lr} (must be >= 0)")
        if eps < 0.0:
            raise ValueError(f"{name}: invalid eps={eps} (must be >= 0)")
        if len(betas) != 2:
            raise ValueError(f"{name}: betas must be a pair (beta1, beta2), got {betas!r}")
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"{name}: invalid beta parameter at index {i}: {beta} "
                                 "(must be in [0, 1))")
        if weight_decay < 0.0:
            raise ValueError(f"{name}: invalid weight_decay={weight_decay} (must be >= 0)")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        amsgrad=bool(amsgrad))
        super().__init__(params, defaults)

    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns ``closure()``'s loss."""
        loss = self._evaluate(closure)
        with no_grad():
            for group in self.param_groups:
                lr, (beta1, beta2) = group["lr"], group["betas"]
                eps, weight_decay = group["eps"], group["weight_decay"]
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    g = p.grad.data
                    state = self._state_of(p)
                    if not state:  # first step of this parameter
                        xp = backend.array_module(p.data)
                        state["step"] = 0
                        state["exp_avg"] = xp.zeros_like(p.data)
                        state["exp_avg_sq"] = xp.zeros_like(p.data)
                        if group["amsgrad"]:
                            state["max_exp_avg_sq"] = xp.zeros_like(p.data)
                    state["step"] += 1
                    t = state["step"]

                    if weight_decay != 0:
                        if self._decoupled_weight_decay:
                            p.data *= 1 - lr * weight_decay
                        else:
                            g = g + weight_decay * p.data  # a new array: .grad stays untouched

                    m, v = state["exp_avg"], state["exp_avg_sq"]
                    m *= beta1
                    m += (1 - beta1) * g
                    v *= beta2
                    v += (1 - beta2) * (g * g)

                    bias_correction1 = 1 - beta1 ** t
                    bias_correction2 = 1 - beta2 ** t
                    step_size = lr / bias_correction1
                    xp = backend.array_module(v)
                    if group["amsgrad"]:
                        v_max = state.get("max_exp_avg_sq")
                        if v_max is None:  # amsgrad switched on for a parameter mid-run
                            v_max = state["max_exp_avg_sq"] = xp.zeros_like(v)
                        xp.maximum(v_max, v, out=v_max)
                        v = v_max
                    denom = xp.sqrt(v) / math.sqrt(bias_correction2) + eps
                    p.data -= step_size * m / denom
                    increment_version(p)  # a graph that saved p now refuses to backward
        return loss
