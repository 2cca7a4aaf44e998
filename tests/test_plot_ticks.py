"""Epochs, steps and layers are counts: the figures put their ticks on whole numbers
(matplotlib's default locator puts them at 1.5 or 2.5 when there are only a few)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy  # noqa: E402
import pytest  # noqa: E402

from minires.inspect.plots import plot_depth_profiles, plot_error_curves, plot_heatmap  # noqa: E402
from minires.inspect.profile import History, Profile  # noqa: E402
from minires.train.plots import plot_curves  # noqa: E402


@pytest.fixture
def figures(monkeypatch):
    """The figures the plotting functions draw, kept when they close them."""
    kept = []
    close = plt.close

    def keep(fig=None):
        kept.append(fig)
        close(fig)

    monkeypatch.setattr(plt, "close", keep)
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
