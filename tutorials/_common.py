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


# --------------------------------------------------------------------------- student copies
#
# In a student copy (``minires make-student-copy``) some backward passes are stubs until
# the student writes them. Run as a script, a tutorial then runs cell by cell (``# %%``)
# here: a cell that reaches an unwritten backward, or needs a result of such a cell, is
# skipped with a note, and the rest of the tutorial still runs. In a notebook each cell
# already runs on its own and shows its error.

_SKIP_NOTE = ("(skipped: this cell needs {what}, not written yet in this student copy; "
              "write it, check it with `minires grade`, then run the tutorial again)")
# a stub raises "ReLU.backward is not written yet (assignment 02): implement it in ..."
_UNWRITTEN = " is not written yet"


def _unwritten() -> list:
    """The assignment bodies still stubbed in the imported minires (empty outside a
    student copy)."""
    try:
        import minires
        from minires.tools.course import stubbed_targets
    except ImportError:
        return []
    return stubbed_targets(os.path.dirname(os.path.dirname(os.path.abspath(minires.__file__))))


def _cells(source: str) -> list:
    """(first line, text) of every ``# %%`` cell of a percent-format script, from the
    line after ``import _common`` (what came before it has run already)."""
    lines = source.splitlines(keepends=True)
    done = next((i for i, line in enumerate(lines) if line.startswith("import _common")), -1)
    starts = [i for i, line in enumerate(lines) if line.startswith("# %%")] + [len(lines)]
    cells = []
    for begin, end in zip([0] + starts, starts):
        begin = max(begin, done + 1)
        if begin < end:
            cells.append((begin, "".join(lines[begin:end])))
    return cells


def run_cells(path: str, namespace: dict) -> int:
    """Run the script at ``path`` cell by cell in ``namespace``; skip, with a note, each
    cell that stops at an unwritten backward pass or at a name a skipped cell would have
    defined. Other errors propagate. Returns how many cells were skipped."""
    with open(path, encoding="utf-8") as f:
        source = f.read()
    skipped = 0
    for start, text in _cells(source):
        code = compile("\n" * start + text, path, "exec")
        try:
            exec(code, namespace)
        except NotImplementedError as error:
            what, unwritten, rest = str(error).partition(_UNWRITTEN)
            if not unwritten:
                raise
            assignment = rest.partition(")")[0].lstrip(" (")  # "assignment 02"
            skipped += 1
            print(_SKIP_NOTE.format(what=f"{what} ({assignment})" if assignment else what))
        except NameError as error:
            if not skipped:
                raise
            skipped += 1
            print(f"(skipped: this cell uses {error.name!r}, which a skipped cell above "
                  "would have made)")
        except (Exception, SystemExit) as error:
            # after a skip, a cell that fails on what the skipped cells would have made
            # (an empty list of results, a missing checkpoint) is skipped too
            if not skipped or isinstance(error, SystemExit) and not error.code:
                raise
            skipped += 1
            print("(skipped: this cell needs results of a skipped cell above: "
                  f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})")
    return skipped


def _take_over() -> None:
    import __main__

    script = getattr(__main__, "__file__", None)
    if IN_NOTEBOOK or not script or os.path.dirname(os.path.abspath(script)) != \
            os.path.dirname(os.path.abspath(__file__)):
        return
    missing = _unwritten()
    if not missing:
        return
    print("student copy: not written yet: " + ", ".join(m.split(":")[1] for m in missing)
          + "; the cells that need them are skipped")
    namespace = vars(__main__)
    namespace["_common"] = sys.modules[__name__]  # the script's `import _common` is still running
    skipped = run_cells(script, namespace)
    print(f"(tutorial done; {skipped} cell(s) skipped)")
    sys.stdout.flush()
    raise SystemExit(0)


_take_over()
