"""Run the CUDA kernels on the CPU: the same source, built by a C++ compiler.

A kernel is a function that every thread runs with its own ``blockIdx`` and
``threadIdx``. None of minires's kernels share memory between threads or wait for each
other, so running the threads one after another on the CPU gives the same answer as
the GPU does. That makes every kernel's index arithmetic testable, and debuggable with
print statements, on a machine without a GPU:

    from minires.cuda_kernels import _launch, host
    _launch.get_function = host.function      # kernels now run on the CPU
    col = minires.cuda_kernels.conv.im2col(numpy, x, 3, 3, (1, 1), (1, 1))

What this cannot show: races between threads, memory coalescing, speed, and NVRTC's
quirks (it has no C standard headers; the kernel tests compile the sources with nvcc
and NVRTC for that). Arguments are checked more strictly than CuPy does: each must
have exactly the C++ type of its parameter (a numpy array of the pointee's dtype,
``numpy.int32`` for ``int``...), and every array must be C-contiguous.

Built libraries are kept on disk (``cache_directory()``), one per source and compiler
flags; ``MINIRES_HOST_SANITIZE=address,undefined`` builds them with AddressSanitizer and
UndefinedBehaviorSanitizer (see ``sanitizer_environment()``). The CuPy stand-in of the
tests compiles every ``RawModule`` through ``build``.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile

import numpy

# What the CUDA compiler provides and g++ does not. The built-in thread coordinates
# are globals that the launcher below sets before it calls the kernel for each thread.
PRELUDE = r"""
#include <cmath>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
using namespace std;  // exp, log, fmax... with float and double overloads, as in CUDA
#define __global__
#define __device__
#define __forceinline__ inline
struct minires_dim3 { unsigned int x, y, z; };
static minires_dim3 blockIdx, threadIdx, blockDim, gridDim;
"""

LAUNCHER = r"""
// One character per C++ type, so Python can check that it passes exactly these types.
template <typename A> string minires_code() {
    using B = remove_cv_t<A>;
    if constexpr (is_pointer_v<B>) return "P" + minires_code<remove_pointer_t<B>>();
    else if constexpr (is_same_v<B, float>) return "f";
    else if constexpr (is_same_v<B, double>) return "d";
    else if constexpr (is_same_v<B, int>) return "i";
    else if constexpr (is_same_v<B, long long>) return "q";
    else if constexpr (is_same_v<B, bool>) return "b";
    else return "?";
}

// args[k] points at the k-th argument, as in the CUDA driver's cuLaunchKernel
template <typename... Args, size_t... I>
static void minires_call(void (*kernel)(Args...), void** args, index_sequence<I...>) {
    kernel(*static_cast<remove_reference_t<Args>*>(args[I])...);
}

template <typename... Args>
static int minires_run(void (*kernel)(Args...), const char* signature, unsigned grid,
                       unsigned block, void** args, char* expected, int size) {
    string mine;
    ((mine += minires_code<Args>() + ","), ...);
    if (mine != signature) {
        strncpy(expected, mine.c_str(), size - 1);
        return 2;
    }
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
    for (unsigned b = 0; b < grid; ++b) {
        for (unsigned t = 0; t < block; ++t) {
            blockIdx = {b, 0, 0};
            threadIdx = {t, 0, 0};
            minires_call(kernel, args, index_sequence_for<Args...>{});
        }
    }
    return 0;
}
"""

_CODES = {numpy.dtype(numpy.float32): "f", numpy.dtype(numpy.float64): "d",
          numpy.dtype(numpy.int32): "i", numpy.dtype(numpy.int64): "q",
          numpy.dtype(numpy.bool_): "b"}
_CTYPES = {"f": ctypes.c_float, "d": ctypes.c_double, "i": ctypes.c_int32,
           "q": ctypes.c_int64, "b": ctypes.c_bool}


def compiler() -> str | None:
    """The C++ compiler to use ($CXX, else g++, else clang++), or None."""
    for name in (os.environ.get("CXX"), "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def host_source(source) -> str:
    """The kernels of ``source`` as one C++ file with an ``extern "C"`` entry point."""
    cases = "\n".join(
        f'    if (!strcmp(name, "{e}")) return minires_run(&{e}, signature, grid, block, '
        "args, expected, size);" for e in source.name_expressions)
    return (PRELUDE + source.code + LAUNCHER
            + 'extern "C" int minires_launch(const char* name, const char* signature, '
            "unsigned grid, unsigned block, void** args, char* expected, int size) {\n"
            + cases + "\n    return 1;\n}\n")


_libraries: dict = {}

# Sanitizers for the CPU build (``MINIRES_HOST_SANITIZE=address,undefined``): AddressSanitizer
# turns every read or write outside an array into a report and an abort, the error a GPU
# would make silently; UndefinedBehaviorSanitizer does the same for signed integer
# overflow in the index arithmetic, a division by zero, a shift too far. An
# AddressSanitizer library can only be loaded into a process whose first library is the
# compiler's libasan: run Python under ``sanitizer_environment()`` (LD_PRELOAD).
SANITIZERS = ("address", "undefined")


def sanitizers() -> tuple:
    """The sanitizers asked for in $MINIRES_HOST_SANITIZE (comma-separated), checked."""
    asked = tuple(n.strip() for n in os.environ.get("MINIRES_HOST_SANITIZE", "").split(",")
                  if n.strip())
    unknown = [n for n in asked if n not in SANITIZERS]
    if unknown:
        raise ValueError(f"MINIRES_HOST_SANITIZE: unknown sanitizer(s) {unknown}; "
                         f"expected some of {SANITIZERS}")
    return asked


def compile_flags() -> list:
    # -ffp-contract=off: no fused multiply-add, so float results round like numpy's.
    # (Warnings are nvcc's job, in the tests: host compilers differ in what they flag.)
    flags = ["-std=c++17", "-O2", "-ffp-contract=off", "-shared", "-fPIC"]
    if sanitizers():
        flags += [f"-fsanitize={','.join(sanitizers())}", "-fno-sanitize-recover=all",
                  "-fno-omit-frame-pointer", "-g"]
    return flags


def asan_loaded() -> bool:
    """Whether AddressSanitizer's runtime is in this process (LD_PRELOAD'ed)."""
    return hasattr(ctypes.CDLL(None), "__asan_init")


def sanitizer_environment(names=SANITIZERS) -> dict:
    """Environment variables for a Python process that loads kernels built with the
    sanitizers ``names``: libasan preloaded (it must come before every other library),
    leak checks off (the interpreter keeps memory until exit by design) and the first
    error aborting the process with a report on stderr."""
    env = {"MINIRES_HOST_SANITIZE": ",".join(names),
           "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
    if "address" in names:
        cxx = compiler()
        if cxx is None:
            raise RuntimeError("minires.cuda_kernels.host needs a C++ compiler (g++ or clang++)")
        found = subprocess.run([cxx, "-print-file-name=libasan.so"], capture_output=True,
                               text=True).stdout.strip()
        if not os.path.isabs(found) or not os.path.exists(found):
            raise RuntimeError(f"{cxx} has no AddressSanitizer runtime (libasan.so)")
        env["LD_PRELOAD"] = found
        env["ASAN_OPTIONS"] = "detect_leaks=0:halt_on_error=1"
    return env


def cache_directory() -> str:
    """Where built kernels are kept between processes ($MINIRES_HOST_CACHE, else a
    folder per user in the temporary directory): one library per source and flags."""
    user = os.getuid() if hasattr(os, "getuid") else "user"
    return os.environ.get("MINIRES_HOST_CACHE") or os.path.join(
        tempfile.gettempdir(), f"minires-host-kernels-{user}")


def build(source, directory=None):
    """Compile ``source`` for the CPU into a shared library (once per source and flags;
    kept on disk in ``cache_directory()`` unless ``directory`` is given)."""
    code = host_source(source)
    cxx = compiler()
    if cxx is None:
        raise RuntimeError("minires.cuda_kernels.host needs a C++ compiler (g++ or clang++, "
                           "or $CXX)")
    flags = compile_flags()
    key = hashlib.sha1("\0".join([code, cxx] + flags).encode()).hexdigest()[:16]
    if key in _libraries:
        return _libraries[key]
    if "address" in sanitizers() and not asan_loaded():
        raise RuntimeError("MINIRES_HOST_SANITIZE=address: this Python process did not start "
                           "with AddressSanitizer's runtime, so it cannot load the kernels; "
                           "start it with the variables of minires.cuda_kernels.host."
                           "sanitizer_environment() (LD_PRELOAD=$(g++ "
                           "-print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0)")
    directory = directory or cache_directory()
    os.makedirs(directory, exist_ok=True)
    stem = os.path.join(directory, f"kernels_{key}")
    if not os.path.exists(stem + ".so"):
        # write and build under private names, then rename: a process running at the
        # same time never reads a half-written file (both write the same bytes)
        private = f"{stem}.{os.getpid()}"
        with open(private + ".cpp", "w") as f:
            f.write(code)
        os.replace(private + ".cpp", stem + ".cpp")  # sanitizer reports name this file
        command = [cxx, *flags, "-o", private + ".so", stem + ".cpp"]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr}")
        os.replace(private + ".so", stem + ".so")
    library = ctypes.CDLL(stem + ".so")
    library.minires_launch.restype = ctypes.c_int
    _libraries[key] = library
    return library


class HostFunction:
    """A kernel built for the CPU, called like CuPy's ``RawKernel``: ``f(grid, block, args)``."""

    def __init__(self, library, expression: str):
        self.library, self.expression = library, expression

    def __call__(self, grid, block, args):
        if len(grid) != 1 or len(block) != 1 or not 1 <= block[0] <= 1024 or grid[0] < 1:
            raise ValueError(f"{self.expression}: bad launch grid={grid} block={block} "
                             "(CUDA allows 1 to 1024 threads per block)")
        holders, codes = [], []
        for k, a in enumerate(args):
            if isinstance(a, numpy.ndarray):
                if not a.flags.c_contiguous:
                    raise ValueError(f"{self.expression}: argument {k} is not C-contiguous")
                holders.append(ctypes.c_void_p(a.ctypes.data))
                codes.append("P" + _CODES.get(a.dtype, "?"))
            elif isinstance(a, numpy.generic) and a.dtype in _CODES:
                code = _CODES[a.dtype]
                holders.append(_CTYPES[code](a.item()))
                codes.append(code)
            else:  # CuPy would have to guess a C type for a Python int or float
                raise TypeError(f"{self.expression}: argument {k} is {type(a).__name__}; "
                                "pass numpy arrays or numpy scalars of the exact C type")
        pointers = (ctypes.c_void_p * max(len(holders), 1))(
            *[ctypes.cast(ctypes.pointer(h), ctypes.c_void_p) for h in holders])
        expected = ctypes.create_string_buffer(512)
        signature = "".join(c + "," for c in codes)
        status = self.library.minires_launch(
            self.expression.encode(), signature.encode(), ctypes.c_uint(grid[0]),
            ctypes.c_uint(block[0]), pointers, expected, ctypes.c_int(512))
        if status == 1:
            raise KeyError(f"no kernel {self.expression} in this source")
        if status == 2:
            raise TypeError(f"{self.expression}: passed ({signature}) but the kernel takes "
                            f"({expected.value.decode()}); P = pointer, f = float, "
                            "d = double, i = int, q = long long")


def function(source, expression: str) -> HostFunction:
    """Drop-in for ``minires.cuda_kernels._launch.get_function`` that runs on the CPU."""
    return HostFunction(build(source), expression)
