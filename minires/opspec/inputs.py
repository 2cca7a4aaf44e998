"""Input makers for samples: each returns ``rng -> float64 array``.

Inputs stay away from kinks, where a finite difference straddles a jump of the
derivative: ``away_from_zero`` for ReLU-like ops (|x| >= 0.1, far beyond the checker's
step of 1e-6), ``ramp`` for anything that takes a maximum (values 0.01 apart, so no two
are ever near a tie), ``positive`` for logarithms, roots and divisors.
"""

from __future__ import annotations

import numpy as np


def normal(*shape):
    return lambda rng: rng.standard_normal(shape)


def scaled(scale, *shape):
    """Normal values times ``scale``: large logits, wide BatchNorm inputs."""
    return lambda rng: scale * rng.standard_normal(shape)


def positive(*shape):
    return lambda rng: rng.uniform(0.5, 2.0, shape)


def away_from_zero(*shape, margin=0.1):
    def make(rng):
        x = rng.standard_normal(shape)
        return np.where(np.abs(x) < margin, np.where(x < 0, -margin, margin), x)
    return make


def ramp(*shape):
    """A shuffled ramp: distinct values 0.01 apart, so no max is ever a near-tie."""
    def make(rng):
        n = int(np.prod(shape))
        return (rng.permutation(n) * 0.01 - n * 0.005).reshape(shape)
    return make


def ties(*shape):
    """Whole numbers in [-2, 2]: many equal maxima (forward and parity samples only:
    at a tie the maximum has no derivative, and PyTorch shares the gradient)."""
    return lambda rng: np.round(rng.standard_normal(shape), 0)


def class_weight(classes):
    """Class weights as a user would give them: unequal, positive."""
    return np.array([0.5, 2.0, 1.0, 1.5, 0.25, 0.75, 1.25, 3.0])[:classes]


def small(shape, limit=48):
    """``shape`` with its largest sizes cut down until it holds at most ``limit``
    values: a random draw stays small, because the finite differences' rounding error
    grows with the number of outputs summed into the checked loss."""
    shape = list(shape)
    while int(np.prod(shape)) > limit and max(shape) > 1:
        shape[shape.index(max(shape))] -= 1
    return tuple(shape)
