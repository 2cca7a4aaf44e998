"""``mr.cuda.is_available()`` means usable: CuPy, a GPU, a kernel compiled by NVRTC and a
matrix multiply by cuBLAS. A missing library is named, by is_available's reason, by the
first CUDA request and by the selftest (which then fails before any check)."""

import os
import subprocess
import sys
import types

import numpy as np
import pytest

import minires as mr
from minires import backend

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def fresh_probe():
    backend._cuda_probe.cache_clear()
    yield
    backend._cuda_probe.cache_clear()


def fake_cupy(fail_compile=None, fail_matmul=None, devices=1):
    """Just enough of CuPy for the probe, with chosen failures."""
    def get_device_count():
        return devices

    class RawModule:
        def __init__(self, code):
            self.code = code

        def get_function(self, name):
            if fail_compile:
                raise fail_compile
            return lambda grid, block, args: None

    class Matrix:
        def __matmul__(self, other):
            if fail_matmul:
                raise fail_matmul
            return self

    runtime = types.SimpleNamespace(getDeviceCount=get_device_count)
    device = types.SimpleNamespace(synchronize=lambda: None)
    return types.SimpleNamespace(
        cuda=types.SimpleNamespace(runtime=runtime, Device=lambda: device),
        RawModule=RawModule, zeros=lambda *a, **k: Matrix(), ones=lambda *a, **k: Matrix())


@pytest.mark.parametrize("library, kwargs", [
    ("NVRTC", {"fail_compile": RuntimeError('Failure finding "libnvrtc.so.12"')}),
    ("cuBLAS", {"fail_matmul": ImportError('Failure finding "libcublas.so.12"')}),
])
def test_a_missing_cuda_library_is_named(library, kwargs, monkeypatch, fresh_probe):
    monkeypatch.setattr(backend, "cupy", fake_cupy(**kwargs))
    assert mr.cuda.is_available() is False
    reason = mr.cuda.unavailable_reason()
    assert library in reason and "minires[cuda12]" in reason, reason
    with pytest.raises(RuntimeError, match=f"CUDA was asked for, but .*{library}"):
        backend.to_device(np.zeros(2), "cuda")


def test_a_working_install_is_available_and_checked_once(monkeypatch, fresh_probe):
    calls = []
    cupy = fake_cupy()
    count = cupy.cuda.runtime.getDeviceCount
    cupy.cuda.runtime.getDeviceCount = lambda: calls.append(1) or count()
    monkeypatch.setattr(backend, "cupy", cupy)
    assert mr.cuda.is_available() and mr.cuda.is_available()
    assert mr.cuda.unavailable_reason() is None and len(calls) == 1


def test_no_gpu_is_not_a_missing_library(monkeypatch, fresh_probe):
    monkeypatch.setattr(backend, "cupy", fake_cupy(devices=0))
    assert not mr.cuda.is_available()
    assert "finds no GPU" in mr.cuda.unavailable_reason()


# ------------------------------------------------------------ on the CuPy stand-in


def standin_only():
    if not getattr(sys.modules.get("cupy_standin"), "IS_STANDIN", False):
        pytest.skip("needs the CuPy stand-in (MINIRES_CUPY_STANDIN=1): it makes a library "
                    "fail to load")


@pytest.mark.cuda
@pytest.mark.parametrize("missing, named", [("nvrtc", "NVRTC"), ("cublas", "cuBLAS")])
def test_standin_without_a_library_fails_early_with_its_name(missing, named, monkeypatch,
                                                             fresh_probe):
    standin_only()
    monkeypatch.setenv("CUPY_STANDIN_MISSING_LIBS", missing)
    assert not mr.cuda.is_available()
    assert named in mr.cuda.unavailable_reason()
    with pytest.raises(RuntimeError, match=named):
        mr.zeros(3).to("cuda")
    done = subprocess.run([sys.executable, "-m", "minires", "selftest", "--device", "cuda"],
                          capture_output=True, text=True, cwd=ROOT, env=dict(os.environ))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL before any check" in done.stdout and f"lib{missing}" in done.stdout, \
        done.stdout


@pytest.mark.cuda
def test_standin_with_every_library_is_available(fresh_probe):
    standin_only()
    assert mr.cuda.is_available() and mr.cuda.unavailable_reason() is None
