"""Run the CUDA kernels on the CPU: the same source, built by a C++ compiler.

A kernel is a function that every thread runs with its own ``blockIdx`` and
``threadIdx``. None of minires's kernels share memory between threads or wait for each
other, so running the threads one after another on the CPU gives the same answer as
the GPU does. That makes every kernel's index arithmetic testable, and debuggable with
print statements, on a machine without a GPU:

    from minires.cuda import _launch, host
    _launch.get_function = host.function      # kernels now run on the CPU
    col = minires.cuda.conv.im2col(numpy, x, 3, 3, (1, 1), (1, 1))

What this cannot show: races between threads, memory coalescing, speed, and NVRTC's
quirks (it has no C standard headers; the kernel tests compile the sources with nvcc
and NVRTC for that). Arguments are checked more strictly than CuPy does: each must
have exactly the C++ type of its parameter (a numpy array of the pointee's dtype,
``numpy.int32`` for ``int``...), and every array must be C-contiguous.
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


def build(source, directory=None):
    """Compile ``source`` for the CPU into a shared library (once per process)."""
    code = host_source(source)
    if code in _libraries:
        return _libraries[code]
    cxx = compiler()
    if cxx is None:
        raise RuntimeError("minires.cuda.host needs a C++ compiler (g++ or clang++, or $CXX)")
    directory = directory or tempfile.mkdtemp(prefix="minires_host_")
    stem = os.path.join(directory, "kernels_" + hashlib.sha1(code.encode()).hexdigest()[:12])
    with open(stem + ".cpp", "w") as f:
        f.write(code)
    # -ffp-contract=off: no fused multiply-add, so float results round like numpy's.
    # (Warnings are nvcc's job, in the tests: host compilers differ in what they flag.)
    command = [cxx, "-std=c++17", "-O1", "-ffp-contract=off", "-shared", "-fPIC",
               "-o", stem + ".so", stem + ".cpp"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr}")
    library = ctypes.CDLL(stem + ".so")
    library.minires_launch.restype = ctypes.c_int
    _libraries[code] = library
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
    """Drop-in for ``minires.cuda._launch.get_function`` that runs on the CPU."""
    return HostFunction(build(source), expression)
