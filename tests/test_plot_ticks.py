"""Epochs, steps and layers are counts: the figures put their ticks on whole numbers
(matplotlib's default locator puts them at 1.5 or 2.5 when there are only a few)."""

from __future__ import annotations

import matplotlib
import numpy
import pytest
from matplotlib.figure import Figure

from minires.inspect.plots import plot_depth_profiles, plot_error_curves, plot_heatmap
from minires.inspect.profile import History, Profile
from minires.train.plots import plot_curves


@pytest.fixture
def figures(monkeypatch):
    """The figures the plotting functions draw, kept when they save them."""
    kept = []
    savefig = Figure.savefig

    def keep(fig, *args, **kwargs):
        if fig not in kept:
            kept.append(fig)
        return savefig(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return kept


def visible_ticks(axis) -> list:
    low, high = sorted(axis.get_view_interval())
    return [t for t in axis.get_ticklocs() if low <= t <= high]


def assert_whole(axis, what):
    ticks = visible_ticks(axis)
    assert ticks, f"no {what} ticks"
    assert all(float(t).is_integer() for t in ticks), f"{what} ticks {ticks}"


HISTORY = [{"epoch": e, "train_loss": 2.0 / e, "test_loss": 2.2 / e,
            "train_acc": 0.2 * e, "test_acc": 0.18 * e} for e in (1, 2, 3)]


def test_training_curves_have_whole_epoch_ticks(tmp_path, figures):
    plot_curves(HISTORY, tmp_path / "curves.png")
    (fig,) = figures
    for ax in fig.axes:
        fig.canvas.draw()
        assert_whole(ax.xaxis, "epoch")


def test_error_curves_have_whole_epoch_ticks(tmp_path, figures):
    plot_error_curves({"plain-20": HISTORY}, tmp_path / "errors.png")
    (fig,) = figures
    fig.canvas.draw()
    assert_whole(fig.axes[0].xaxis, "epoch")


def profiles(layers: int, steps) -> History:
    names = [f"layer{i}" for i in range(layers)]
    return History(Profile(names, {"act_grad_norm": numpy.geomspace(1e-3, 1, layers)},
                           step=s) for s in steps)


def test_heat_map_has_whole_layer_and_step_ticks(tmp_path, figures):
    plot_heatmap(profiles(3, [0, 1, 2]), tmp_path / "heat.png")
    (fig,) = figures
    ax = fig.axes[0]
    fig.canvas.draw()
    assert_whole(ax.yaxis, "layer")
    assert_whole(ax.xaxis, "step")


def test_depth_profile_has_whole_layer_ticks(tmp_path, figures):
    history = profiles(4, [0])
    plot_depth_profiles({"net": history[0]}, tmp_path / "depth.png")
    (fig,) = figures
    fig.canvas.draw()
    assert_whole(fig.axes[0].xaxis, "layer")


def test_plotting_leaves_the_backend_of_a_notebook_alone(tmp_path, monkeypatch):
    """The plots only write files; they must not switch matplotlib to Agg under a notebook
    that called them (its inline figures would stop showing)."""
    switched = []
    monkeypatch.setattr(matplotlib, "use", lambda *a, **k: switched.append(a))
    plot_curves(HISTORY, tmp_path / "curves.png")
    plot_error_curves({"plain-20": HISTORY}, tmp_path / "errors.png")
    plot_heatmap(profiles(3, [0, 1, 2]), tmp_path / "heat")
    assert not switched, f"a plotting function called matplotlib.use{switched[0]}"
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert (tmp_path / "heat.svg").stat().st_size > 0
