"""The CUDA kernels of ``minires.cuda_kernels`` against the pure-xp helpers they replace.

Three layers, so the kernels are checked as far as each machine allows:

* everywhere: the registry matches the ``@overridable`` helpers of minires.ops, name and
  signature; ``minires.cuda_kernels`` imports and registers nothing without CuPy; every kernel
  source compiles with nvcc (warnings are errors) and with NVRTC, CuPy's compiler
  (skipped where those are missing).
* everywhere with a C++ compiler: the SAME kernel source, built for the CPU by
  ``minires.cuda_kernels.host``, runs every kernel case of the op specs
  (``minires.opspec.kernels``) through the real Python wrappers and matches the
  reference; deliberately broken kernels fail.
* on a GPU (marker ``cuda``): every kernel case on the device, float32 and float64, the
  dispatcher picking the kernels, and the specs' ``devices`` samples with kernels on
  versus off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib
import inspect
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest

import minires as mr
import minires.cuda_kernels as mc
import minires.ops
from minires import backend, opspec
from minires.cuda_kernels import _launch, host
from minires.opspec import kernels as parity

CASES = parity.cases()
DTYPES = [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")]
CASE_PARAMS = [pytest.param(c, id=c.id) for c in CASES]


def overridable_helpers() -> dict:
    """name -> helper, for every ``@overridable`` function defined in minires.ops."""
    found = {}
    for info in pkgutil.iter_modules(minires.ops.__path__):
        module = importlib.import_module(f"minires.ops.{info.name}")
        for name, obj in vars(module).items():
            if callable(obj) and hasattr(obj, "reference") and obj.__module__ == module.__name__:
                found[name] = obj
    return found


# --------------------------------------------------------------------------- registry


def test_registry_matches_the_overridable_helpers():
    helpers = overridable_helpers()
    assert set(mc.KERNELS) == set(helpers), (
        "minires.cuda_kernels.KERNELS must name exactly the @overridable helpers of minires.ops; "
        f"only in KERNELS: {set(mc.KERNELS) - set(helpers)}, "
        f"only in minires.ops: {set(helpers) - set(mc.KERNELS)}")
    assert set(parity.HELPERS) == set(helpers)
    assert {c.helper for c in CASES} == set(helpers), "every kernel needs parity cases"


@pytest.mark.parametrize("name", sorted(mc.KERNELS))
def test_kernel_takes_the_reference_arguments(name):
    reference = overridable_helpers()[name].reference
    assert inspect.signature(mc.KERNELS[name]) == inspect.signature(reference)


def test_imports_and_registers_nothing_without_cupy():
    # a fresh interpreter in which `import cupy` fails, as on a machine without CuPy
    code = (
        "import sys; sys.modules['cupy'] = None\n"
        "import minires as mr, minires.cuda_kernels as mc\n"
        "from minires import backend\n"
        "assert backend.cupy is None\n"
        "assert mc.registered == [] and backend._kernels == {}, backend._kernels\n"
        "assert mr.cuda.is_available() is False and mr.cuda.device_count() == 0\n"
        "assert set(mc.SOURCES) and set(mc.KERNELS)\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_register_with_cupy_registers_every_kernel(monkeypatch):
    monkeypatch.setattr(backend, "cupy", types.SimpleNamespace())  # "CuPy is present"
    monkeypatch.setattr(backend, "_kernels", {})
    assert sorted(mc.register()) == sorted(mc.KERNELS)
    assert backend._kernels == mc.KERNELS


def test_mr_cuda_is_the_torch_cuda_like_namespace_not_the_kernel_package():
    assert mr.cuda is backend.cuda  # after `import minires.cuda_kernels as mc` above
    assert not hasattr(mr.cuda, "KERNELS") and hasattr(mr.cuda_kernels, "KERNELS")
    assert mr.cuda.is_available() in (True, False)
    assert mr.cuda.device_count() == (backend.cupy.cuda.runtime.getDeviceCount()
                                      if mr.cuda.is_available() else 0)
    mr.cuda.synchronize()


# --------------------------------------------------------------------------- compilers


def _instantiating(source) -> str:
    """The source plus a use of every template instance, so nvcc compiles them all
    (NVRTC does the same when CuPy names them in ``name_expressions``)."""
    uses = ", ".join(f"(void*)&{e}" for e in source.name_expressions)
    return source.code + f"\nvoid* minires_kernels[] = {{{uses}}};\n"


@pytest.mark.parametrize("name", sorted(mc.SOURCES))
def test_source_compiles_with_nvcc(name, tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not on PATH: install the CUDA toolkit to compile the kernels")
    source = mc.SOURCES[name]
    path = tmp_path / f"{name}.cu"
    path.write_text(_instantiating(source))
    # sm_90 (H100): a full device compile, ptxas included; -Xptxas -v lists every kernel
    command = [nvcc, "-cubin", "-arch=sm_90", "-Xptxas", "-v", "--Werror", "all-warnings",
               "-o", str(tmp_path / f"{name}.cubin"), str(path)]
    done = subprocess.run(command, capture_output=True, text=True)
    log = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(command)}\n{log}"
    compiled = re.findall(r"Compiling entry function '(\w+)'", log)
    assert len(compiled) == len(source.name_expressions), log
    for kernel in source.kernels:
        assert sum(kernel in c for c in compiled) >= 2, f"{kernel}: float and double\n{log}"
    assert "spill" not in log.replace("0 bytes spill", ""), f"register spills:\n{log}"


def _find_nvrtc():
    """libnvrtc from $MINIRES_NVRTC, the nvidia-cuda-nvrtc wheel, or the CUDA toolkit."""
    candidates = [os.environ.get("MINIRES_NVRTC")]
    try:
        import nvidia  # the pip wheels nvidia-cuda-nvrtc(-cu12) install this namespace

        for root in nvidia.__path__:
            for sub in ("cu13/lib", "cuda_nvrtc/lib", "cu12/lib"):
                folder = os.path.join(root, sub)
                if os.path.isdir(folder):
                    candidates += [os.path.join(folder, f) for f in sorted(os.listdir(folder))
                                   if re.fullmatch(r"libnvrtc\.so\.\d+", f)]
    except ImportError:
        pass
    for home in (os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home:
            candidates += [os.path.join(home, "lib64", "libnvrtc.so")]
    candidates.append(ctypes.util.find_library("nvrtc"))
    for path in candidates:
        if not path or (os.path.isabs(path) and not os.path.exists(path)):
            continue
        folder = os.path.dirname(path)
        try:
            # NVRTC opens its builtins library by name; load it first where it lies
            for f in sorted(os.listdir(folder)) if folder else []:
                if f.startswith("libnvrtc-builtins.so") and not f.endswith(".alt.so"):
                    ctypes.CDLL(os.path.join(folder, f), mode=ctypes.RTLD_GLOBAL)
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


@pytest.mark.parametrize("name", sorted(mc.SOURCES))
def test_source_compiles_with_nvrtc(name):
    """NVRTC, CuPy's compiler, has no C standard headers (no INFINITY, no NAN): a source
    that nvcc accepts may still fail there. This compiles it exactly as CuPy would."""
    lib = _find_nvrtc()
    if lib is None:
        pytest.skip("libnvrtc not found (pip install nvidia-cuda-nvrtc, or set MINIRES_NVRTC)")
    source = mc.SOURCES[name]
    program = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(program), source.code.encode(),
                                  f"{name}.cu".encode(), 0, None, None) == 0
    for expression in source.name_expressions:
        assert lib.nvrtcAddNameExpression(program, expression.encode()) == 0
    # the options CuPy adds for a RawModule without jitify, and a modern GPU
    options = [b"-arch=compute_90", b"--device-as-default-execution-space"]
    status = lib.nvrtcCompileProgram(program, len(options),
                                     (ctypes.c_char_p * len(options))(*options))
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(program, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(program, log)
    assert status == 0, log.value.decode()
    assert log.value.decode().strip() == "", f"NVRTC warnings:\n{log.value.decode()}"
    for expression in source.name_expressions:
        lowered = ctypes.c_char_p()
        assert lib.nvrtcGetLoweredName(program, expression.encode(),
                                       ctypes.byref(lowered)) == 0, expression
    lib.nvrtcDestroyProgram(ctypes.byref(program))


# --------------------------------------------------------------------------- the CPU build


@pytest.fixture(scope="module")
def host_built(tmp_path_factory):
    if host.compiler() is None:
        pytest.skip("no C++ compiler (g++ or clang++) to build the kernels for the CPU")
    folder = str(tmp_path_factory.mktemp("host_kernels"))
    for source in mc.SOURCES.values():
        host.build(source, folder)


@pytest.fixture
def on_host(host_built, monkeypatch):
    """Kernels run on the CPU; returns the list of kernels launched."""
    launched = []

    def get_function(source, expression):
        launched.append(expression)
        return host.function(source, expression)

    monkeypatch.setattr(_launch, "get_function", get_function)
    return launched


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASE_PARAMS)
def test_kernel_source_on_cpu_matches_reference(case, dtype, on_host):
    failure = parity.run_case(case, mc.KERNELS[case.helper], np, dtype)
    assert failure is None, failure
    ctype = "float" if dtype is np.float32 else "double"
    assert on_host and all(e.endswith(f"<{ctype}>") for e in on_host), \
        f"the kernel did not run (fell back to the reference?): {on_host}"


# Deliberately broken kernels must fail the parity cases: tests the tester.
MUTANTS = [
    ("conv", "int h = oh * SH - PH + i * DH;", "int h = oh * SH - PH + i * DW;", "im2col"),
    ("conv", "int ws = w + PW - j * DW;", "int ws = w + PW - j;", "col2im"),
    ("pool", "v > best ||", "v >= best ||", "max_pool2d_forward"),
    ("pool", "int hs = h + PH - i;", "int hs = h - i;", "max_pool2d_backward"),
    ("norm", "g -= xhat[k] * gw_mean[c] + gb_mean[c];", "g -= xhat[k] * gw_mean[c];",
     "batch_norm_backward"),
    ("loss", "smoothing * (sum_logp / C)", "smoothing * sum_logp", "cross_entropy_forward"),
]


@pytest.mark.parametrize("module, old, new, helper", MUTANTS, ids=[m[3] for m in MUTANTS])
def test_broken_kernels_fail(module, old, new, helper, on_host, monkeypatch):
    source = mc.SOURCES[module]
    assert source.code.count(old) == 1, f"mutant no longer applies: {old!r}"
    broken = _launch.Source(source.code.replace(old, new), source.kernels)
    monkeypatch.setattr(getattr(mc, module), "SOURCE", broken)
    failures = [parity.run_case(c, mc.KERNELS[helper], np, np.float64)
                for c in CASES if c.helper == helper]
    assert any(failures), f"no parity case catches the broken {helper}"


def test_host_launch_checks_argument_types(host_built):
    fn = host.function(mc.SOURCES["norm"], "batch_norm_backward<float>")
    a = np.zeros(4, np.float32)
    with pytest.raises(TypeError, match="argument 6 is int"):  # a Python int: CuPy guesses
        fn((1,), (32,), (a, a, a, a, a, a, 1, 1, 1, 4))
    with pytest.raises(TypeError, match="the kernel takes"):  # double where float is due
        fn((1,), (32,), (a, a.astype(np.float64), a, a, a, a, *_launch.int32(1, 1, 1, 4)))


class _NotNumpy(types.ModuleType):
    """A stand-in array module that is not ``numpy``, so the dispatcher picks kernels."""

    def __getattr__(self, name):
        return getattr(np, name)


def test_dispatcher_runs_registered_kernels(on_host, monkeypatch):
    monkeypatch.setattr(backend, "_kernels", dict(mc.KERNELS))
    monkeypatch.setattr(backend, "_kernels_enabled", True)  # also under MINIRES_KERNELS=0
    xp = _NotNumpy("fake_cupy")
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 5))
    geometry = (3, 3, (2, 1), (1, 1), (1, 2))
    col = minires.ops.conv.im2col(xp, x, *geometry)
    assert on_host == ["im2col<double>"]
    np.testing.assert_array_equal(col, minires.ops.conv.im2col.reference(np, x, *geometry))
    monkeypatch.setattr(backend, "_kernels_enabled", False)  # use_kernels(False)
    minires.ops.conv.im2col(xp, x, *geometry)
    assert on_host == ["im2col<double>"], "use_kernels(False) must bypass the kernels"


def test_unsupported_dtypes_and_windows_fall_back_to_the_reference(on_host):
    # dtypes without a kernel, and max-pool padding that would leave a window empty
    x = np.arange(2 * 3 * 5 * 5, dtype=np.float16).reshape(2, 3, 5, 5)
    for got, want in [
        (mc.conv.im2col(np, x, 3, 3, (1, 1), (1, 1)),
         minires.ops.conv.im2col.reference(np, x, 3, 3, (1, 1), (1, 1))),
        (mc.pool.max_pool2d_forward(np, x.astype(np.float32), 2, 2, (1, 1), (2, 2))[1],
         minires.ops.pool.max_pool2d_forward.reference(np, x.astype(np.float32), 2, 2,
                                                       (1, 1), (2, 2))[1]),
    ]:
        np.testing.assert_array_equal(got, want)
    assert on_host == []


def test_selftest_on_cpu_passes_every_check(host_built):
    """``minires selftest --device cpu --quick`` passes (about 10 seconds)."""
    from minires.tools import selftest

    results = selftest.run_checks("cpu", quick=True)
    failed = [r for r in results if r.status == "FAIL"]
    assert results and not failed, selftest.format_table(results)


DEVICE_SAMPLES = opspec.samples(tag="devices")


@pytest.mark.parametrize("spec, sample", DEVICE_SAMPLES, ids=[x.name for _, x in DEVICE_SAMPLES])
def test_selftest_device_comparison_of_the_cpu_with_itself_finds_no_difference(spec, sample):
    """The selftest's NumPy-vs-CuPy check, run CPU against CPU: its code path works."""
    from minires.tools import selftest

    assert "max |difference| 0.0e+00" in selftest._numpy_vs_device(spec, sample, ("cpu", "cpu"))


# --------------------------------------------------------------------------- on the GPU


@pytest.fixture
def cupy():
    if not mr.cuda.is_available():
        pytest.skip("no CUDA GPU (or CuPy) available")
    return backend.cupy


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASE_PARAMS)
def test_kernel_matches_reference_on_gpu(case, dtype, cupy):
    failure = parity.run_case(case, mc.KERNELS[case.helper], cupy, dtype)
    assert failure is None, failure


@pytest.mark.cuda
def test_kernels_are_registered_on_gpu(cupy):
    assert mc.registered == list(mc.KERNELS)
    for name, fn in mc.KERNELS.items():
        assert backend._kernels.get(name) is fn


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spec, sample", DEVICE_SAMPLES, ids=[x.name for _, x in DEVICE_SAMPLES])
def test_ops_with_kernels_on_and_off_agree_on_gpu(spec, sample, dtype, cupy):
    """Forward and input gradients of each op's ``devices`` sample (conv2d, max_pool2d,
    batch_norm, cross_entropy: every kernel), through the kernels and through the
    references (use_kernels(False))."""
    arrays = [a.astype(dtype) for a in sample.arrays()]
    gy = None

    def run():
        nonlocal gy
        inputs = [mr.tensor(a, device="cuda", requires_grad=True) for a in arrays]
        y = spec.run(sample, inputs, "cuda")
        if gy is None:
            gy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
        y.backward(mr.tensor(gy, device="cuda"))
        return [backend.to_numpy(t.data) for t in [y] + [x.grad for x in inputs]]

    previous = mr.use_kernels(True)
    try:
        with_kernels = run()
        mr.use_kernels(False)
        without = run()
    finally:
        mr.use_kernels(previous)  # MINIRES_KERNELS=0 stays off for the tests after this
    rtol, atol = (1e-4, 1e-5) if dtype is np.float32 else (1e-10, 1e-12)
    for a, b in zip(with_kernels, without):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)
