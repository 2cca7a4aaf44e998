"""The CUDA kernels, built for the CPU, against their references on random geometries
(scripts/fuzz_kernels.py), at the limit of their 32-bit index arithmetic, and under
AddressSanitizer and UndefinedBehaviorSanitizer (``-m slow``; CI runs them)."""

import importlib.util
import os
import subprocess
import sys

import pytest

import minires.cuda_kernels as mc
from minires.cuda_kernels import _launch, host

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_fuzz():
    spec = importlib.util.spec_from_file_location(
        "fuzz_kernels", os.path.join(ROOT, "scripts", "fuzz_kernels.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fuzz(monkeypatch):
    if host.compiler() is None:
        pytest.skip("no C++ compiler (g++ or clang++) to build the kernels for the CPU")
    monkeypatch.setattr(_launch, "get_function", host.function)
    return load_fuzz()


def test_random_geometries_match_the_references(fuzz):
    assert fuzz.fuzz(cases=80, seed=7) == []


def test_index_math_at_the_int32_limit_matches_the_definition(fuzz):
    assert fuzz.at_the_limit() == []


def test_past_the_int32_limit_the_reference_takes_over(fuzz):
    assert fuzz.past_the_limit() == []


def test_window_guard_is_exact_at_the_limit():
    limit = _launch.INT32_MAX
    assert _launch.window_fits_int32(1, 1, 1, 1, ((limit - 1) // 2, 0))
    assert not _launch.window_fits_int32(2, 1, 1, 1, ((limit - 1) // 2, 0))
    assert _launch.window_fits_int32(3, 3, 46340, 46340, (1, 1))  # 46340**2 < 2**31
    assert not _launch.window_fits_int32(3, 3, 46341, 46341, (1, 1))


def test_the_fuzz_catches_a_kernel_that_breaks_ties_the_wrong_way(fuzz, monkeypatch):
    source = mc.SOURCES["pool"]
    broken = _launch.Source(source.code.replace("v > best ||", "v >= best ||"), source.kernels)
    monkeypatch.setattr(mc.pool, "SOURCE", broken)
    assert any("max_pool2d" in f for f in fuzz.fuzz(cases=60, seed=3))


# --------------------------------------------------------------------------- sanitizers


def run_sanitized(code: str):
    """Run ``code`` in a Python process with the sanitizer runtime preloaded."""
    try:
        env = dict(os.environ, **host.sanitizer_environment())
    except RuntimeError as error:
        pytest.skip(str(error))
    env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=ROOT)


PRELUDE = """
import numpy as np
import minires.cuda_kernels as mc
from minires.cuda_kernels import _launch, host
_launch.get_function = host.function
"""


@pytest.mark.slow
def test_fuzz_under_address_and_undefined_behaviour_sanitizers():
    if host.compiler() is None:
        pytest.skip("no C++ compiler")
    done = subprocess.run([sys.executable, "scripts/fuzz_kernels.py", "--cases", "150",
                           "--sanitize"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "(address, undefined)" in done.stdout and "all match" in done.stdout


@pytest.mark.slow
def test_address_sanitizer_catches_a_read_past_the_end():
    """Tests the sanitizer build: without its bounds check, the cross-entropy kernel's
    last block reads past the logits, and the process stops with a report."""
    done = run_sanitized(PRELUDE + """
source = mc.SOURCES["loss"]
mc.loss.SOURCE = _launch.Source(source.code.replace("if (n >= N) return;", ""), source.kernels)
x = np.random.default_rng(0).standard_normal((5, 7)).astype(np.float32)
mc.loss.cross_entropy_forward(np, x, np.arange(5) % 7, 0.0)
print("no error")
""")
    assert done.returncode != 0 and "no error" not in done.stdout
    assert "AddressSanitizer: heap-buffer-overflow" in done.stderr, done.stderr[-2000:]


@pytest.mark.slow
def test_undefined_behaviour_sanitizer_catches_the_overflow_the_guard_prevents():
    """Tests the int32 guard: switched off, a padded image of 2**31 rows overflows
    ``oh * SH`` in im2col, and the sanitizer stops the process."""
    done = run_sanitized(PRELUDE + """
mc.conv.window_fits_int32 = lambda *args: True
x = np.zeros((1, 1, 2, 2), np.float32)
mc.conv.im2col(np, x, 1, 1, (2**30, 1), (2**30, 0), (1, 1))
print("no error")
""")
    assert done.returncode != 0 and "no error" not in done.stdout
    assert "runtime error: signed integer overflow" in done.stderr, done.stderr[-2000:]
