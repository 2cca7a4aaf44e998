"""MkDocs hook: the tutorials become pages of the site, run in fast mode.

mkdocs-jupyter renders and executes the notebooks; this hook only does what it has no
setting for:

* the tutorials stay in ``tutorials/`` (one copy, runnable as scripts): their files are
  added to the site's files here, before mkdocs-jupyter turns them into pages;
* the kernels that execute them inherit this process's environment: fast mode
  (``MINIRES_FAST=1`` unless set), ``tutorials/`` on the path for ``import _common``
  (a kernel started from a string has no script folder), this checkout's ``minires``
  (the one the API pages document) and matplotlib's inline backend, so figures are
  drawn into the page even where ``MPLBACKEND`` says otherwise;
* the kernels talk to the build over CurveZMQ-encrypted sockets
  (``jupyter_nbconvert_config.json`` beside this file, found through
  ``JUPYTER_CONFIG_PATH``) rather than plain TCP, which the kernel warns about.
"""

from __future__ import annotations

import os
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TUTORIALS = ROOT / "tutorials"


def tutorial_sources() -> list:
    """The files of tutorials/ that become pages: its README (the section's index) and
    the numbered notebooks."""
    return [TUTORIALS / "README.md"] + sorted(TUTORIALS.glob("[0-9][0-9]_*.py"))


def _prepend(variable: str, *folders: Path) -> None:
    """Put ``folders`` first on a path list in the environment (once: ``mkdocs serve``
    loads the configuration again at every rebuild)."""
    old = [p for p in os.environ.get(variable, "").split(os.pathsep) if p]
    new = [str(f) for f in folders]
    os.environ[variable] = os.pathsep.join(new + [p for p in old if p not in new])


def on_config(config):
    os.environ.setdefault("MINIRES_FAST", "1")
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    _prepend("PYTHONPATH", TUTORIALS, ROOT)
    _prepend("JUPYTER_CONFIG_PATH", HERE)
    config.watch.append(str(TUTORIALS))
    return config


@event_priority(50)  # before mkdocs-jupyter (priority 0) picks the notebooks
def on_files(files, config):
    for source in tutorial_sources():
        files.append(File(f"tutorials/{source.name}", str(ROOT), config.site_dir,
                          config.use_directory_urls))
    return files
