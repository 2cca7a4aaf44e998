"""Gradient-flow diagnostics: see the vanishing (and exploding) gradient.

* ``GradientMonitor``: hooks that record, per layer in depth order and per step, the
  activation-gradient norm, weight-gradient norms, update-to-weight ratios, activation
  mean and standard deviation, and the fraction of dead ReLUs;
* ``gradient_flow(model, batch)``: the profile of one forward and backward pass;
* ``Profile`` / ``History``: the results as NumPy arrays, a table, a JSON file;
* plots: gradient norm versus depth, a depth-by-step heat map, error curves;
* experiments (``minires gradients ...``): plain versus ResNet, deep MLPs, degradation;
* ``arrays_reachable_from``: the bytes of arrays a graph (or any object) keeps alive.
"""

from .flow import gradient_flow
from .layers import block_layers, resolve_layers, weight_layers
from .memory import arrays_reachable_from
from .monitor import GradientMonitor
from .profile import LAYER_STATS, PARAM_STATS, History, Profile, format_table

__all__ = ["LAYER_STATS", "PARAM_STATS", "GradientMonitor", "History", "Profile",
           "arrays_reachable_from", "block_layers", "format_table", "gradient_flow",
           "resolve_layers", "weight_layers"]
