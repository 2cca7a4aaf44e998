"""CPU threads for the fast path: a pool of worker threads, with OpenBLAS held to one.

NumPy runs its copies and elementwise passes on one core; OpenBLAS runs the matrix
multiplies on all of them, and after each multiply its worker threads spin for about
0.1 s before they sleep, keeping a core busy with nothing. The fast path instead cuts
its work (im2col copies, multiplies, BatchNorm's passes) into one part per core and
runs the parts on a pool of its own threads, which sleep when idle, while OpenBLAS is
held to one thread. NumPy releases the GIL inside those calls, so the parts run at
the same time. On CuPy, or where OpenBLAS cannot be held to one thread (another BLAS,
no /proc), everything runs as one part: the plain sequential calls.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import queue
import threading

from . import backend


def _find_openblas():
    """(set_num_threads, get_num_threads) of the OpenBLAS NumPy loaded, or None."""
    try:
        with open("/proc/self/maps") as f:
            paths = [line.split()[-1] for line in f if "openblas" in line and ".so" in line]
    except OSError:
        return None
    paths.sort(key=lambda p: "scipy_openblas" not in p)  # NumPy's own build first
    for path in dict.fromkeys(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("scipy_openblas", "64_"), ("openblas", "64_"), ("openblas", "")):
            try:
                setter = getattr(lib, f"{prefix}_set_num_threads{suffix}")
                getter = getattr(lib, f"{prefix}_get_num_threads{suffix}")
            except AttributeError:
                continue
            setter.argtypes, getter.restype = [ctypes.c_int], ctypes.c_int
            return setter, getter
    return None


def _default_cpu_threads() -> int:
    if "MINIRES_CPU_THREADS" in os.environ:
        return max(1, int(os.environ["MINIRES_CPU_THREADS"]))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


_cpu_threads = min(8, _default_cpu_threads())
_tile_bytes = int(os.environ.get("MINIRES_TILE_BYTES", 4 * 1024 * 1024))
_openblas = None  # found on first use
_pool = None  # (pid, task queue), started on first use
_in_worker = threading.local()


def set_cpu_threads(n: int) -> None:
    """How many parts the CPU fast path cuts its work into (1: no threads of its own).
    Defaults to the number of usable cores (at most 8), or ``MINIRES_CPU_THREADS``."""
    global _cpu_threads
    _cpu_threads = max(1, int(n))


def set_tile_bytes(n: int) -> None:
    """About how many bytes of im2col matrix the fast path builds at a time before it
    multiplies them (``tiles``). Defaults to 4 MiB, or ``MINIRES_TILE_BYTES``."""
    global _tile_bytes
    _tile_bytes = max(1, int(n))


def tiles(xp, lo: int, hi: int, bytes_per_column: int):
    """Cut columns lo..hi into (start, stop) tiles of about ``set_tile_bytes`` bytes at
    ``bytes_per_column`` each, so that a tile's im2col block is still in the CPU's cache
    when the multiply reads it; one tile on CuPy, where a GPU wants the whole matrix.

    Why 4 MiB: the im2col matrix of a CIFAR ResNet's first layers is 77 MiB, far larger
    than any cache, and the multiply that read it back from memory took longer than the
    copy that made it. Tiled, a tile's copy and its multiply share the cache. On a
    2-core AMD EPYC (512 KiB L2 per core, 32 MiB shared L3), forward and backward of the
    3x3 convolutions of ResNet-20 were fastest with 2-6 MiB per tile and thread; below
    1 MiB the calls per tile cost more than the cache saves
    (``python benchmarks/bench_tiles_cpu.py`` prints the sweep)."""
    step = max(1, _tile_bytes // bytes_per_column)
    if not backend.is_host_module(xp):
        step = max(1, hi - lo)
    for start in range(lo, hi, step):
        yield start, min(start + step, hi)


def parts_for(xp) -> int:
    """Parts worth cutting work on arrays of ``xp`` into: 1 on CuPy, inside a worker, or
    when OpenBLAS cannot be held to one thread meanwhile."""
    global _openblas
    if not backend.is_host_module(xp) or _cpu_threads == 1 or getattr(_in_worker, "active",
                                                                        False):
        return 1
    if _openblas is None:
        _openblas = _find_openblas() or False
    return _cpu_threads if _openblas else 1


def _worker(tasks) -> None:
    _in_worker.active = True
    while True:
        fn, done, errors = tasks.get()
        try:
            fn()
        except BaseException as error:  # handed to the caller, which raises it
            errors.append(error)
        finally:
            done.release()


def _tasks():
    """The pool's task queue: started on first use, again in a forked child (which has
    no threads but the caller) or when more threads were asked for since."""
    global _pool
    if _pool is None or _pool[0] != os.getpid() or _pool[1] < _cpu_threads - 1:
        tasks = queue.SimpleQueue()
        for _ in range(_cpu_threads - 1):
            threading.Thread(target=_worker, args=(tasks,), daemon=True,
                             name="minires-cpu").start()
        _pool = (os.getpid(), _cpu_threads - 1, tasks)
    return _pool[2]


@contextlib.contextmanager
def _one_blas_thread():
    setter, getter = _openblas
    previous = getter()
    setter(1)
    try:
        yield
    finally:
        setter(previous)


def parallel_rows(xp, n: int, fn) -> None:
    """Call ``fn(start, stop)`` over ``range(n)`` cut into ``parts_for(xp)`` parts, at
    the same time on the CPU's pool (OpenBLAS held to one thread meanwhile), as one
    call ``fn(0, n)`` on CuPy. The parts must write disjoint memory."""
    parts = min(parts_for(xp), n)
    if parts <= 1:
        fn(0, n)
        return
    bounds = [n * k // parts for k in range(parts + 1)]
    done, errors, tasks = threading.Semaphore(0), [], _tasks()
    with _one_blas_thread():
        for k in range(1, parts):
            tasks.put((functools.partial(fn, bounds[k], bounds[k + 1]), done, errors))
        try:
            fn(bounds[0], bounds[1])
        finally:
            for _ in range(1, parts):
                done.acquire()
    if errors:
        raise errors[0]
