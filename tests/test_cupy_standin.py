"""The CuPy behaviours that minires relies on, and the stand-in that imitates them.

The tests of CuPy's rules (no implicit conversion to NumPy, no NumPy operands, NumPy
functions handed to CuPy's, wrapping integer indices, only CuPy's names and keywords)
run against whatever ``cupy`` is: the real one on a GPU, where they check that the
stand-in imitates the right thing, and the stand-in of tests/cupy_standin in CI
(``MINIRES_CUPY_STANDIN=1``). The tests of the stand-in's own machinery (its name list,
the host-read counter, kernels built for the CPU, failing libraries) run on it alone.
"""

import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import minires as mr
import minires.nn.functional as F
from minires import backend

pytestmark = pytest.mark.cuda
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def cp():
    if not mr.cuda.is_available():
        pytest.skip("no CUDA GPU (or CuPy) available")
    return backend.cupy


@pytest.fixture
def standin(cp):
    module = sys.modules.get("cupy_standin")
    if not getattr(module, "IS_STANDIN", False):
        pytest.skip("a test of the CuPy stand-in itself (MINIRES_CUPY_STANDIN=1)")
    return module


# --------------------------------------------------------------------------- CuPy's rules


def test_no_implicit_conversion_to_numpy(cp):
    a = cp.arange(3.0)
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array"):
        np.asarray(a)
    with pytest.raises(TypeError):
        np.testing.assert_allclose(a, [0.0, 1.0, 2.0])


@pytest.mark.parametrize("numpy_first", [False, True])
def test_numpy_operands_are_refused(cp, numpy_first):
    a, h = cp.arange(3.0), np.arange(3.0)
    with pytest.raises(TypeError, match="Unsupported type"):
        (h + a) if numpy_first else (a + h)
    with pytest.raises(TypeError, match="Unsupported type"):
        cp.maximum(a, h)


def test_numpy_functions_go_to_cupy_or_are_refused(cp):
    a = cp.arange(4.0)
    assert isinstance(np.exp(a), cp.ndarray)  # __array_ufunc__: cupy.exp
    assert isinstance(np.sum(a), cp.ndarray)  # __array_function__: cupy.sum, 0-d
    with pytest.raises(TypeError):
        np.insert(a, 0, 1.0)  # CuPy has no insert: NumPy finds no implementation
    with pytest.raises(TypeError):
        np.spacing(a)  # nor a spacing ufunc


def test_integer_array_indices_wrap_and_scalars_are_checked(cp):
    a = cp.arange(5) * 10
    assert a[cp.asarray([1, 5, -6])].tolist() == [10, 0, 40]  # no bounds check on a GPU
    assert a[[7]].tolist() == [20]
    b = cp.zeros(3)
    b[cp.asarray([4])] = 1.0
    assert b.tolist() == [0.0, 1.0, 0.0]
    import cupyx

    c = cp.zeros(3)
    cupyx.scatter_add(c, cp.asarray([0, 3, 5]), 1.0)
    assert c.tolist() == [2.0, 0.0, 1.0]
    assert cp.take_along_axis(a.reshape(1, 5), cp.asarray([[6]]), axis=1).tolist() == [[10]]
    with pytest.raises(IndexError):
        a[5]


def test_only_cupys_names_and_keywords(cp):
    a = cp.ones((2, 3))
    with pytest.raises(TypeError):
        a.sum(where=a > 0)  # NumPy has where=, CuPy does not
    with pytest.raises(AttributeError):
        cp.random.default_rng(0).normal(size=3)  # CuPy's Generator has standard_normal only
    with pytest.raises(AttributeError):
        a.flags.writeable  # noqa: B018  (CuPy's flags: contiguity and owndata only)
    assert a.sum(axis=1, keepdims=True).shape == (2, 1)


def test_reductions_stay_on_the_device(cp):
    a = cp.arange(6.0).reshape(2, 3)
    assert isinstance(a.sum(), cp.ndarray) and a.sum().ndim == 0
    assert isinstance(a.max(), cp.ndarray) and float(a.max()) == 5.0


def test_bit_generators_are_seeded_like_cupys(cp):
    """``Philox4x3210(seed, *, size)`` takes an int, a sequence of ints or a SeedSequence;
    CuPy hands cuRAND ``SeedSequence(seed).generate_state(1, uint32)[0]``, so the same
    seed, and two seeds with the same 32-bit cut, give the same numbers."""

    def draw(seed, size=4096):
        generator = cp.random.Generator(cp.random.Philox4x3210(seed, size=size))
        return generator.random(16, dtype=np.float32)

    a = draw(np.random.SeedSequence([3, 1, 4]))
    assert isinstance(a, cp.ndarray) and a.dtype == np.float32 and a.shape == (16,)
    assert np.array_equal(a.get(), draw([3, 1, 4]).get())
    assert not np.array_equal(a.get(), draw([3, 1, 5]).get())
    cut = [np.random.SeedSequence(s).generate_state(1, np.uint32)[0] for s in (14375, 53572)]
    assert cut[0] == cut[1]  # two seeds, one 32-bit cuRAND seed
    assert np.array_equal(draw(14375).get(), draw(53572).get())
    with pytest.raises(TypeError):
        cp.random.Philox4x3210(0, 4096)  # size is keyword-only
    rng = cp.random.default_rng(cp.random.Philox4x3210(7, size=64))  # wrapped as it is
    assert isinstance(rng, cp.random.Generator) and cp.random.default_rng(rng) is rng
    assert rng.integers(0, 5, size=(2, 3)).dtype == np.int64


# --------------------------------------------------------------------------- the stand-in


STANDIN_MODULES = ["cupy", "cupy.cuda", "cupy.cuda.runtime", "cupy.random", "cupy.linalg",
                   "cupy.lib", "cupy.lib.stride_tricks", "cupy.fft", "cupy._core",
                   "cupy._core._routines_linalg", "cupyx"]
STANDIN_CLASSES = {"cupy.ndarray": "cupy_standin._array.ndarray",
                   "cupy.ufunc": "cupy_standin._array.ufunc",
                   "cupy.cuda.Device": "cupy_standin._cuda.Device",
                   "cupy.cuda.Stream": "cupy_standin._cuda.Stream",
                   "cupy.cuda.Event": "cupy_standin._cuda.Event",
                   "cupy.RawModule": "cupy_standin._cuda.RawModule",
                   "cupy.RawKernel": "cupy_standin._cuda.RawKernel",
                   "cupy.random.Generator": "cupy_standin._random.Generator",
                   # what XORWOW, MRG32k3a and Philox4x3210 share (CuPy's _cuRANDGenerator)
                   "cupy.random.XORWOW": "cupy_standin._random._CuRandBitGenerator"}


def api():
    from cupy_standin import _api

    return _api.data()


def test_standin_defines_only_names_the_real_cupy_has(standin):
    real = api()
    extra = []
    for path in STANDIN_MODULES:
        module = importlib.import_module(path)
        for name in vars(module):
            if name.startswith("__") or name.startswith("_standin"):
                continue
            if name not in real["modules"][path]:
                extra.append(f"{path}.{name}")
    for public, where in STANDIN_CLASSES.items():
        module_path, _, class_name = where.rpartition(".")
        cls = getattr(importlib.import_module(module_path), class_name)
        members = real["classes"][public]["members"]
        for name in vars(cls):
            if name.startswith("__") or name in ("_a", "_module", "_names", "_library",
                                                  "_fn", "_params", "_method", "_out",
                                                  "_of_module", "_values", "_previous"):
                continue
            if name not in members:
                extra.append(f"{public}.{name}")
    assert not extra, f"the stand-in offers what CuPy {real['version']} lacks: {extra}"


def test_standin_random_classes_take_the_real_signatures(standin, cp):
    """The stand-in's cupy.random classes take the parameters (names, kinds, which have
    defaults) of the real CuPy's, as the API list records them."""
    import inspect

    for name in ("XORWOW", "MRG32k3a", "Philox4x3210", "Generator"):
        real = api()["modules"]["cupy.random"][name]["parameters"]
        ours = [[p.name, p.kind.name.lower(), p.default is not inspect.Parameter.empty]
                for p in inspect.signature(getattr(cp.random, name)).parameters.values()]
        assert ours == real, f"cupy.random.{name}: {ours} != {real}"


def test_api_list_is_cupy_14_and_names_what_minires_calls(standin):
    real = api()
    assert real["version"].startswith("14.") and real["package"] == "cupy-cuda12x"
    assert "dump_cupy_api.py" in real["regenerate"]
    for name in ("ascontiguousarray", "einsum", "take_along_axis", "copyto", "pad",
                 "RawModule", "asnumpy"):
        assert name in real["modules"]["cupy"], name
    assert "as_strided" in real["modules"]["cupy.lib.stride_tricks"]
    assert "scatter_add" in real["modules"]["cupyx"]
    assert "set_compute_type" in real["modules"]["cupy._core._routines_linalg"]
    assert "normal" not in real["classes"]["cupy.random.Generator"]["members"]


def test_unknown_names_and_keywords_say_the_real_cupy_lacks_them(standin, cp):
    with pytest.raises(AttributeError, match="the real CuPy 14.* does not have it"):
        cp.no_such_function  # noqa: B018
    with pytest.raises(TypeError, match="unexpected keyword argument 'where'.*real CuPy"):
        cp.ones(3).sum(where=True)
    with pytest.raises(AttributeError, match="does not implement"):
        cp.ElementwiseKernel  # noqa: B018  (real, but not needed by minires)


def test_host_reads_are_recorded_with_the_minires_line(standin, cp):
    t = mr.tensor([1.0, 2.0], device="cuda")
    with standin.syncs.recording() as events:
        t.sum().item()
        t.tolist()
        repr(t)
        (t * 2).sum()  # stays on the device
    assert [e.what for e in events] == ["ndarray.item", "ndarray.get", "ndarray.get"]
    assert all(e.site.startswith("minires/tensors.py:") for e in events), events
    with standin.syncs.recording() as events:
        t.data[t.data > 1]  # a boolean mask: CuPy reads how many are true
        cp.cuda.Device().synchronize()
    assert [e.kind for e in events] == ["implicit", "synchronize"]


def test_fresh_allocations_hold_garbage(standin, cp):
    assert bool(cp.isnan(cp.empty(4)).all()) and bool(cp.isnan(cp.empty_like(cp.ones(2))).all())


def test_kernels_run_on_the_cpu_build_of_their_source(standin):
    standin.launches.clear()
    previous = mr.use_kernels(True)
    try:
        x = mr.randn(2, 3, 6, 6, device="cuda", requires_grad=True)
        F.max_pool2d(F.conv2d(x, mr.randn(4, 3, 3, 3, device="cuda"), padding=1), 2) \
            .sum().backward()
    finally:
        mr.use_kernels(previous)
    assert {"im2col<float>", "max_pool2d_forward<float>", "max_pool2d_backward<float>"} \
        <= set(standin.launches), standin.launches


def test_kernel_arguments_are_checked_like_cupy(standin, cp):
    kernel = cp.RawModule(code='extern "C" __global__ void k(float* x) { x[0] = 1; }') \
        .get_function("k")
    with pytest.raises(TypeError, match="numpy.ndarray of shape"):
        kernel((1,), (1,), (np.zeros(4, np.float32),))
    with pytest.raises(TypeError, match="incorrect type"):
        kernel([1], (1,), (cp.zeros(1, np.float32),))
    x = cp.zeros(1, np.float32)
    kernel((1,), (1,), (x,))
    assert x.tolist() == [1.0]


def test_tf32_compute_type_rounds_float32_matmul_inputs(standin, cp):
    linalg = cp._core._routines_linalg
    a = cp.asarray(np.float32([[1 + 2**-12]]))  # below TF32's resolution at 1
    previous = linalg.get_compute_type(np.float32)
    linalg.set_compute_type(np.float32, linalg.COMPUTE_TYPE_TF32)
    try:
        assert (a @ cp.ones((1, 1), np.float32)).tolist() == [[1.0]]
    finally:
        linalg.set_compute_type(np.float32, previous)
    assert (a @ cp.ones((1, 1), np.float32)).tolist() == [[np.float32(1 + 2**-12)]]


def test_no_device_and_a_missing_library_fail_like_cupy(standin, cp, monkeypatch):
    monkeypatch.setenv("CUPY_STANDIN_DEVICE_COUNT", "0")
    with pytest.raises(cp.cuda.runtime.CUDARuntimeError, match="no CUDA-capable device"):
        cp.cuda.runtime.getDeviceCount()
    monkeypatch.setenv("CUPY_STANDIN_DEVICE_COUNT", "1")
    monkeypatch.setenv("CUPY_STANDIN_MISSING_LIBS", "cublas")
    with pytest.raises(ImportError, match="libcublas"):
        cp.ones((2, 2)) @ cp.ones((2, 2))
    assert (cp.ones((2, 2), dtype=np.int64) @ cp.ones((2, 2), dtype=np.int64)).sum() == 8


def test_dump_script_refuses_to_dump_the_standin(standin):
    done = subprocess.run([sys.executable, "scripts/dump_cupy_api.py", "--out",
                           os.devnull], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 1 and "stand-in" in done.stderr
    with open(standin.API_FILE) as f:
        assert json.load(f)["version"] == standin.version()
