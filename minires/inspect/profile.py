"""What the gradient-flow diagnostics return: plain NumPy arrays, a table, a JSON file.

``Profile`` is one training step: one value per layer (in depth order) for each
layer statistic, and one value per parameter for each parameter statistic. ``History``
is the profiles of several steps, with each statistic stacked into a (steps, layers)
array for heat maps. Both save to JSON (human-readable, no pickle) and load back.

Layer statistics (``LAYER_STATS``):

* ``act_grad_norm``: the L2 norm of d loss / d (layer output) over the whole batch;
* ``act_mean``, ``act_std``: mean and standard deviation of the layer's output;
* ``dead_relu``: the fraction of the units of the ReLUs inside the layer that output
  zero for every example of the batch (a unit is one entry of the output without the
  batch axis: one feature, or one channel at one position); NaN without a ReLU module;
* ``weight_grad_norm``: the L2 norm of the gradients of all the layer's parameters;
* ``update_ratio``: ||parameters after the optimizer step - before|| / ||before||
  (NaN when no optimizer step was observed).

Parameter statistics (``PARAM_STATS``): ``grad_norm``, ``weight_norm`` and
``update_ratio`` of every parameter that requires a gradient.
"""

from __future__ import annotations

import json
import math
import os

import numpy

LAYER_STATS = ("act_grad_norm", "act_mean", "act_std", "dead_relu", "weight_grad_norm",
               "update_ratio")
PARAM_STATS = ("grad_norm", "weight_norm", "update_ratio")


def _floats(values) -> numpy.ndarray:
    return numpy.array([numpy.nan if v is None else v for v in values], dtype=numpy.float64)


def _json_list(array) -> list:
    return [None if not math.isfinite(v) else float(v) for v in numpy.asarray(array).tolist()]


def _write_json(obj, path) -> str:
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, allow_nan=False)
        f.write("\n")
    return path


def _number(value: float) -> str:
    if not math.isfinite(value):
        return "-"
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:.4g}"
    return f"{value:.3e}"


def format_table(header: list, rows: list) -> str:
    """Right-aligned columns of text; floats in 4 significant digits."""
    cells = [[c if isinstance(c, str) else _number(c) for c in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h))
              for i, h in enumerate(header)]
    lines = ["  ".join(str(h).rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


class Profile:
    """The gradient flow of one step: ``profile['act_grad_norm']`` is a (layers,) array.

    ``layers`` and ``params`` are the module and parameter names in depth order.
    """

    def __init__(self, layers, stats: dict, params=(), param_stats: dict | None = None,
                 step: int = 0):
        self.layers = list(layers)
        self.params = list(params)
        self.step = int(step)
        self.stats = {k: _floats(stats.get(k, [None] * len(self.layers))) for k in LAYER_STATS}
        param_stats = param_stats or {}
        self.param_stats = {k: _floats(param_stats.get(k, [None] * len(self.params)))
                            for k in PARAM_STATS}

    def __getitem__(self, name: str) -> numpy.ndarray:
        if name in self.stats:
            return self.stats[name]
        if name.startswith("param_") and name[6:] in self.param_stats:
            return self.param_stats[name[6:]]
        raise KeyError(f"{name!r}: layer statistics are {LAYER_STATS}, parameter statistics "
                       f"{tuple('param_' + k for k in PARAM_STATS)}")

    def __len__(self) -> int:
        return len(self.layers)

    def ratio(self, name: str = "act_grad_norm") -> float:
        """first layer / last layer: > 1 means the gradient grows toward the input
        (explodes), < 1 that it shrinks (vanishes)."""
        values = self.stats[name]
        return float(values[0] / values[-1])

    def table(self, params: bool = False) -> str:
        """One line per layer (or per parameter with ``params=True``)."""
        if params:
            rows = [[name, *(self.param_stats[k][i] for k in PARAM_STATS)]
                    for i, name in enumerate(self.params)]
            return format_table(["param", *PARAM_STATS], rows)
        rows = [[str(i), name, *(self.stats[k][i] for k in LAYER_STATS)]
                for i, name in enumerate(self.layers)]
        return format_table(["depth", "layer", *LAYER_STATS], rows)

    def __repr__(self) -> str:
        return f"Profile(step={self.step}, {len(self.layers)} layers)\n{self.table()}"

    def to_dict(self) -> dict:
        """Plain values for JSON: step, layer and parameter names, and every statistic."""
        return {"step": self.step, "layers": self.layers, "params": self.params,
                "stats": {k: _json_list(v) for k, v in self.stats.items()},
                "param_stats": {k: _json_list(v) for k, v in self.param_stats.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> Profile:
        """The profile of ``to_dict()``'s values."""
        return cls(d["layers"], d["stats"], d.get("params", ()), d.get("param_stats"),
                   d.get("step", 0))

    def save(self, path) -> str:
        """Write JSON (NaN as null)."""
        return _write_json({"format": "minires-gradient-profile", **self.to_dict()}, path)

    @classmethod
    def load(cls, path) -> Profile:
        """Read a profile that ``save`` wrote."""
        with open(path) as f:
            return cls.from_dict(json.load(f))


class History:
    """The profiles of the recorded steps of a run, in order.

    ``history['act_grad_norm']`` is a (steps, layers) array, ``history.steps`` the step
    numbers, ``history[i]`` (an int) the i-th ``Profile``.
    """

    def __init__(self, profiles=()):
        self.profiles = list(profiles)

    def append(self, profile: Profile) -> None:
        """Add the profile of the next recorded step."""
        self.profiles.append(profile)

    def __len__(self) -> int:
        return len(self.profiles)

    def __iter__(self):
        return iter(self.profiles)

    @property
    def steps(self) -> numpy.ndarray:
        """The step numbers of the recorded profiles, as an int64 array."""
        return numpy.array([p.step for p in self.profiles], dtype=numpy.int64)

    @property
    def layers(self) -> list:
        """The layer names of the profiles (those of the first one)."""
        return self.profiles[0].layers if self.profiles else []

    def __getitem__(self, key):
        if isinstance(key, str):
            if not self.profiles:
                return numpy.zeros((0, 0))
            return numpy.stack([p[key] for p in self.profiles])
        return self.profiles[key]

    def table(self, name: str = "act_grad_norm") -> str:
        """Steps down, layers across (depth index in the header)."""
        rows = [[str(p.step), *p[name]] for p in self.profiles]
        return format_table(["step", *(str(i) for i in range(len(self.layers)))], rows)

    def to_dict(self) -> dict:
        """Plain values for JSON: ``{'profiles': [profile.to_dict(), ...]}``."""
        return {"profiles": [p.to_dict() for p in self.profiles]}

    def save(self, path) -> str:
        """Write the history as JSON (NaN as null) to ``path``; returns the path."""
        return _write_json({"format": "minires-gradient-history", **self.to_dict()}, path)

    @classmethod
    def load(cls, path) -> History:
        """Read a history that ``save`` wrote."""
        with open(path) as f:
            d = json.load(f)
        return cls(Profile.from_dict(p) for p in d["profiles"])
