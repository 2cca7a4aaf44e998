"""``minires train --nproc N ...``: the same command, started N times by ``mpiexec``.

A shortcut for ``mpiexec -n N python -m minires train ...`` on one machine. It finds the
``mpiexec`` of the MPI that mpi4py was installed with (next to this Python, else on the
PATH), gives each process its share of the machine's cores (``OMP_NUM_THREADS`` and
``OPENBLAS_NUM_THREADS``, unless they are set already: NumPy would otherwise start a
thread per core in every process), and replaces this process with ``mpiexec``, so that
signals and the exit status are mpiexec's, as if it had been typed. On several
machines, call ``mpiexec`` yourself with a host file (docs/distributed.md).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys

from .errors import ConfigError

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def find_mpiexec() -> str | None:
    """The mpiexec next to this Python (where ``pip install mpich`` puts it), else the
    first on the PATH, else None."""
    return (shutil.which("mpiexec", path=os.path.dirname(sys.executable))
            or shutil.which("mpiexec"))


def has_mpi4py() -> bool:
    return importlib.util.find_spec("mpi4py") is not None


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def without_nproc(argv: list) -> list:
    """``argv`` without its ``--nproc N`` (or ``--nproc=N``)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def command(nproc: int, argv: list) -> tuple:
    """``(mpiexec path, its argument list, environment)`` that start ``minires`` with
    ``argv`` in ``nproc`` processes; a ``ConfigError`` if MPI is missing."""
    if not has_mpi4py():
        raise ConfigError(f"--nproc {nproc} needs mpi4py, which is not installed: pip install "
                          "'minires[distributed]' (mpi4py and MPICH)")
    mpiexec = find_mpiexec()
    if mpiexec is None:
        raise ConfigError(f"--nproc {nproc} needs mpiexec, which was not found next to "
                          f"{sys.executable} or on the PATH: pip install 'minires[distributed]' "
                          "(mpi4py and MPICH), or install your MPI's")
    env = dict(os.environ)
    threads = str(max(1, available_cores() // nproc))
    for name in THREAD_VARIABLES:
        env.setdefault(name, threads)
    args = [mpiexec, "-n", str(nproc), sys.executable, "-m", "minires", *without_nproc(argv)]
    return mpiexec, args, env


def relaunch(nproc: int, argv: list):
    """Replace this process with ``mpiexec -n nproc python -m minires ARGV`` (no return)."""
    mpiexec, args, env = command(nproc, argv)
    print(f"minires: starting {nproc} processes with {os.path.basename(mpiexec)}, "
          f"{env['OMP_NUM_THREADS']} thread(s) each (OMP_NUM_THREADS)", file=sys.stderr,
          flush=True)
    sys.stdout.flush()
    os.execve(mpiexec, args, env)


def check_nproc(nproc: int, launched: int | None) -> None:
    """``--nproc`` must be >= 1, and under a launcher equal to the processes it started."""
    if nproc < 1:
        raise ConfigError(f"--nproc must be an integer >= 1, got {nproc}")
    if launched is not None and launched != nproc:
        raise ConfigError(f"--nproc {nproc}, but an MPI launcher started {launched} "
                          "processes: give the number of processes to one or the other")
