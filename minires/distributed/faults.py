"""One rank fails, every rank ends: an exception must never leave the others hanging.

When one rank raises, the others carry on until their next collective and then wait
for it forever: MPI has no timeout. ``install()`` replaces ``sys.excepthook`` so that an
uncaught exception prints its traceback, each line marked with the rank, and then
calls ``MPI_Abort``, which makes the launcher (``mpiexec``) end every process of the
job with a non-zero exit status. ChainerMN does the same (its ``global_except_hook``).
``abort()`` does it for an error that a program catches and reports itself (the
``minires`` command's one-line errors).
"""

from __future__ import annotations

import sys
import time
import traceback

# mpiexec forwards each rank's output on its own schedule, and MPI_Abort ends the job at
# once: called straight after the message was written, it sometimes took the message
# with it (seen with MPICH's mpiexec). A pause lets the launcher read it first; a job
# that is failing can spare it.
_FORWARD_PAUSE = 0.5  # seconds

_previous = None  # the excepthook we replaced


def install(rank: int, size: int) -> None:
    global _previous
    if _previous is None:
        _previous = sys.excepthook
    sys.excepthook = _make_hook(rank, size)


def uninstall() -> None:
    global _previous
    if _previous is not None:
        sys.excepthook, _previous = _previous, None


def _make_hook(rank: int, size: int):
    def abort_every_rank(exc_type, exc, tb):
        lines = "".join(traceback.format_exception(exc_type, exc, tb)).rstrip("\n")
        sys.stdout.flush()
        sys.stderr.write(f"[rank {rank}/{size}] uncaught exception; ending all {size} "
                         "ranks (MPI_Abort)\n")
        sys.stderr.write("".join(f"[rank {rank}/{size}] {line}\n" for line in lines.split("\n")))
        _abort(1)

    return abort_every_rank


def abort(message: str, rank: int, size: int, code: int = 1):
    """End every rank of the job now: print ``message`` marked with this rank, then
    ``MPI_Abort`` with ``code`` (mpiexec's exit status). For errors that a program
    catches itself (and so never reach the exception hook) on one rank only."""
    sys.stdout.flush()
    sys.stderr.write(f"[rank {rank}/{size}] {message}\n")
    sys.stderr.write(f"[rank {rank}/{size}] ending all {size} ranks (MPI_Abort)\n")
    _abort(code)


def _abort(code: int):
    """``MPI_Abort`` once mpiexec has had time to forward what this rank wrote."""
    sys.stdout.flush()
    sys.stderr.flush()
    time.sleep(_FORWARD_PAUSE)
    from mpi4py import MPI

    MPI.COMM_WORLD.Abort(code)
