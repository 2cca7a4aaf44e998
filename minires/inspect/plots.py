"""Pictures of gradient flow and training, written as PNG and SVG with matplotlib (Agg).

* ``plot_depth_profiles``: a statistic (by default the activation-gradient norm) versus
  depth for several models, on one log-scale axis;
* ``plot_heatmap``: a statistic over depth (rows) and training steps (columns);
* ``plot_error_curves``: training (thin, dashed) and test (bold) error of several runs,
  in panels, the shape of Figure 6 of He et al. (2015).

Each takes ``path`` without or with an extension: without one it writes ``path.png``
and ``path.svg``; it returns the list of files written.
"""

from __future__ import annotations

import os
import textwrap

import numpy

_LABELS = {
    "act_grad_norm": "||d loss / d layer output||",
    "act_mean": "mean of the layer output",
    "act_std": "std of the layer output",
    "dead_relu": "fraction of dead ReLU units",
    "weight_grad_norm": "||d loss / d layer weights||",
    "update_ratio": "||update|| / ||weights||",
}


def _figure(**kwargs):
    """A figure that only writes files: built without pyplot, so it needs no display and
    never switches the backend of a notebook that calls these functions."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _integer_ticks(*axes) -> None:
    """Ticks on whole numbers only: layers, steps and epochs are counts."""
    from matplotlib.ticker import MaxNLocator

    for axis in axes:
        axis.set_major_locator(MaxNLocator(integer=True))


def _title(ax, title: str) -> None:
    if title:
        ax.set_title("\n".join(textwrap.wrap(title, 80)), fontsize=9)


def save_figure(fig, path, formats=("png", "svg"), dpi: int = 110) -> list:
    """Save ``fig`` to ``path`` (its extension), or to ``path.<fmt>`` for each format."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    root, ext = os.path.splitext(path)
    files = [path] if ext in (".png", ".svg", ".pdf") else [f"{path}.{f}" for f in formats]
    for f in files:
        # SVG without embedded dates, so regenerating a figure gives the same file
        fig.savefig(f, dpi=dpi, metadata={"Date": None} if f.endswith(".svg") else None)
    return files


def plot_depth_profiles(profiles: dict, path, stat: str = "act_grad_norm", title: str = "",
                        relative_depth: bool = False, styles: dict | None = None) -> list:
    """``profiles``: {label: Profile}. One line per model: ``stat`` at each layer,
    input side on the left; log scale. ``relative_depth`` puts every model on 0..1."""
    fig = _figure(figsize=(7.5, 4.5))
    ax = fig.subplots()
    for label, profile in profiles.items():
        values = numpy.asarray(profile[stat], dtype=float)
        n = len(values)
        x = numpy.linspace(0, 1, n) if relative_depth else numpy.arange(1, n + 1)
        kwargs = dict(marker="o", markersize=3, linewidth=1.6)
        kwargs.update((styles or {}).get(label, {}))
        ax.plot(x, values, label=label, **kwargs)
    ax.set_yscale("log")
    if not relative_depth:
        _integer_ticks(ax.xaxis)
    ax.set_xlabel("relative depth (0 = first layer, 1 = last)" if relative_depth
                  else "layer (block) index, input side first")
    ax.set_ylabel(_LABELS.get(stat, stat))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, ncol=2)
    _title(ax, title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_heatmap(history, path, stat: str = "act_grad_norm", title: str = "",
                 log: bool = True, normalize: bool = False) -> list:
    """Depth down, recorded steps across. ``normalize`` divides each step's column by
    its last layer's value, so the colour shows how the gradient changes with depth."""
    from matplotlib.colors import LogNorm

    values = numpy.asarray(history[stat], dtype=float).T  # (layers, steps)
    if normalize:
        values = values / values[-1:, :]
    steps = history.steps
    fig = _figure(figsize=(7.5, 4.5))
    ax = fig.subplots()
    finite = values[numpy.isfinite(values) & (values > 0)] if log else values
    norm = LogNorm(vmin=finite.min(), vmax=finite.max()) if log and finite.size else None
    image = ax.imshow(values, aspect="auto", origin="upper", cmap="viridis", norm=norm,
                      interpolation="nearest",  # rows are layers 1..L, input side on top
                      extent=(steps[0], steps[-1] + _step_width(steps), len(values) + 0.5, 0.5))
    label = _LABELS.get(stat, stat)
    fig.colorbar(image, ax=ax, label=label + (" / last layer's" if normalize else ""))
    _integer_ticks(ax.xaxis, ax.yaxis)  # no tick at layer 2.5 or step 7.5
    ax.set_xlabel("training step")
    ax.set_ylabel("layer (block) index, input side on top")
    _title(ax, title)
    fig.tight_layout()
    return save_figure(fig, path)


def _step_width(steps) -> float:
    """The steps a heat-map column covers: the gap between recorded steps."""
    return float(steps[1] - steps[0]) if len(steps) > 1 else 1.0


def plot_error_curves(panels: dict, path, title: str = "", x: str = "epoch") -> list:
    """``panels``: {panel title: {run label: history}}, or {run label: history} for one
    panel. A history is a list of metric rows as ``fit`` returns (``train_acc``,
    ``test_acc`` and ``x``). Training error thin and dashed, test error bold."""
    import matplotlib

    if panels and all(isinstance(v, list) for v in panels.values()):
        panels = {"": panels}
    fig = _figure(figsize=(5.2 * len(panels), 4.2))
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (panel, runs) in zip(axes[0], panels.items()):
        for k, (label, history) in enumerate(runs.items()):
            xs = [row[x] for row in history]
            color = colors[k % len(colors)]
            ax.plot(xs, [100 * (1 - row["train_acc"]) for row in history], "--", color=color,
                    linewidth=1, alpha=0.8)
            ax.plot(xs, [100 * (1 - row["test_acc"]) for row in history], "-", color=color,
                    linewidth=2.2, label=label)
        _integer_ticks(ax.xaxis)
        ax.set_xlabel(x)
        ax.set_title(panel, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title="bold: test, dashed: train", title_fontsize=7)
    axes[0][0].set_ylabel("error (%)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
