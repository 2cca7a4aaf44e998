"""The strict CuPy stand-in of minires's tests: the control side.

``tests/cupy_standin`` holds a package named ``cupy`` (and ``cupyx``) that is NumPy
underneath but behaves like CuPy 14 where minires could go wrong on a GPU: it refuses
implicit conversions to NumPy, NumPy operands in device operations, and every name or
keyword the real CuPy lacks (``cupy_api.json``, dumped from the real wheel by
``scripts/dump_cupy_api.py``); integer array indices wrap; CUDA kernels are compiled
for the CPU by ``minires.cuda_kernels.host``; and every host synchronisation is recorded.

Put ``tests/cupy_standin`` first on ``sys.path`` (``MINIRES_CUPY_STANDIN=1`` does it in
tests/conftest.py; ``PYTHONPATH=tests/cupy_standin:.`` for commands) and ``import cupy``
gets the stand-in. This module is what tests use to look inside it::

    import cupy_standin
    with cupy_standin.syncs.recording() as events:
        ...
    cupy_standin.launches          # kernel name -> launches

docs/backend.md says what the stand-in proves and what it cannot.
"""

from __future__ import annotations

from ._api import API_FILE, version
from ._cuda import launches
from ._syncs import SyncEvent, syncs

IS_STANDIN = True

__all__ = ["API_FILE", "IS_STANDIN", "SyncEvent", "launches", "syncs", "version"]
