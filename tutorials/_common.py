"""Shared setup for the tutorials: fast mode, figures, and finding minires.

Every tutorial runs two ways: as a notebook (open the ``.py`` file with Jupyter through
jupytext) and as a plain script (``python tutorials/04_mlp_mnist.py``). This module makes
both work:

* ``FAST``: ``MINIRES_FAST=1`` in the environment shrinks every experiment (fewer images,
  fewer steps) so the whole series runs in a few minutes on a laptop CPU. The code is
  the same; only the sizes change. ``pick(full, fast)`` chooses between the two sizes.
* ``show(fig, name)``: in a notebook the figure appears inline; in a script it is saved
  as ``name.png`` under ``OUT`` (``$MINIRES_TUTORIAL_OUT``, or a ``minires_tutorials``
  folder in the system's temporary directory) and the path is printed.
* From a source checkout without ``pip install``, the repository root is put on
  ``sys.path`` so ``import minires`` finds the package next to this folder.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile

FAST = os.environ.get("MINIRES_FAST", "0").lower() not in ("", "0", "false", "no")

IN_NOTEBOOK = "ipykernel" in sys.modules

OUT = os.environ.get("MINIRES_TUTORIAL_OUT") or os.path.join(tempfile.gettempdir(),
                                                              "minires_tutorials")

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if importlib.util.find_spec("minires") is None and os.path.isdir(os.path.join(_ROOT, "minires")):
    sys.path.insert(0, _ROOT)

if not IN_NOTEBOOK:
    import matplotlib

    matplotlib.use("Agg")  # scripts draw into files: no display needed


def pick(full, fast):
    """``full`` normally, ``fast`` when MINIRES_FAST=1 (a quick end-to-end check)."""
    return fast if FAST else full


def show(fig, name: str) -> None:
    """Show ``fig`` inline in a notebook; in a script save it as OUT/name.png."""
    import matplotlib.pyplot as plt

    if IN_NOTEBOOK:
        plt.show()
        return
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, f"{name}.png")
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    print(f"[figure saved to {path}]")


if FAST:
    print("fast mode (MINIRES_FAST=1): small data and few steps; numbers will be rougher")
