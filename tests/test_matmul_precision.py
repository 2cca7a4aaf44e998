"""mr.set_float32_matmul_precision: TF32 and bfloat16 inputs for float32 matrix multiplies.

On the GPU cuBLAS rounds the inputs in its tensor cores; elsewhere minires rounds them
itself (precision.round_mantissa). Either way a reduced precision must show an error of
the size its mantissa allows, and must leave float64 and the default alone.
"""

import numpy as np
import pytest

import minires as mr
import minires.nn.functional as F
from minires import backend, precision
from minires.train import run_training

# mantissa bits kept -> the largest relative rounding error of one input, 2**-(bits+1)
UNIT_ROUNDOFF = {"high": 2.0**-11, "medium": 2.0**-8}


@pytest.fixture(autouse=True)
def _restore_precision():
    yield
    mr.set_float32_matmul_precision("highest")


def rel_error(actual, expected):
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def conv_data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((4, 8, 10, 10)), rng.standard_normal((16, 8, 3, 3))


def conv_forward_and_grads(x, w, gy, device, dtype):
    """conv2d output and input/weight gradients, as float64 NumPy arrays."""
    xt = mr.tensor(x.astype(dtype), device=device, requires_grad=True)
    wt = mr.tensor(w.astype(dtype), device=device, requires_grad=True)
    y = F.conv2d(xt, wt, padding=1)
    y.backward(mr.tensor(gy.astype(dtype), device=device))
    return [t.detach().cpu().numpy().astype(np.float64) for t in (y, xt.grad, wt.grad)]


def test_the_default_is_float32_and_changes_nothing():
    assert mr.get_float32_matmul_precision() == "highest"
    rng = np.random.default_rng(1)
    a = rng.standard_normal((33, 17)).astype(np.float32)
    b = rng.standard_normal((17, 9)).astype(np.float32)
    np.testing.assert_array_equal(precision.matmul(a, b), a @ b)


def test_an_unknown_precision_is_refused_by_name():
    with pytest.raises(ValueError, match="set_float32_matmul_precision.*'high'.*'fast'"):
        mr.set_float32_matmul_precision("fast")
    assert mr.get_float32_matmul_precision() == "highest"


def test_round_mantissa_rounds_to_nearest_and_halves_away_from_zero():
    one_ulp = 2.0**-10  # TF32's spacing of numbers just above 1
    x = np.array([1 + one_ulp / 2 - 2.0**-20, 1 + one_ulp / 2, 1 + 1.5 * one_ulp,
                  -(1 + one_ulp / 2), 2 - one_ulp / 4], dtype=np.float32)
    expected = [1.0, 1 + one_ulp, 1 + 2 * one_ulp, -(1 + one_ulp), 2.0]
    np.testing.assert_array_equal(precision.round_mantissa(x, 10), expected)


@pytest.mark.parametrize("bits", [10, 7])
def test_round_mantissa_keeps_bits_and_bounds_the_error(bits):
    x = np.random.default_rng(2).standard_normal(20_000).astype(np.float32) * 1e3
    r = precision.round_mantissa(x, bits)
    assert r.dtype == np.float32
    assert not (r.view(np.uint32) & np.uint32((1 << (23 - bits)) - 1)).any()
    error = np.abs(r.astype(np.float64) - x) / np.abs(x)
    assert error.max() <= 2.0 ** -(bits + 1)
    assert error.max() > 0.9 * 2.0 ** -(bits + 1)  # it does round, by up to half a step
    np.testing.assert_array_equal(precision.round_mantissa(-x, bits), -r)


def test_round_mantissa_keeps_special_values():
    special = np.array([np.inf, -np.inf, 0.0, -0.0, np.nan], dtype=np.float32)
    nan_with_full_payload = np.array([0x7FFFFFFF], dtype=np.uint32).view(np.float32)
    r = precision.round_mantissa(np.concatenate([special, nan_with_full_payload]), 10)
    np.testing.assert_array_equal(r[:4], special[:4])
    assert np.signbit(r[3]) and np.isnan(r[4:]).all()
    with pytest.raises(TypeError, match="round_mantissa.*float64"):
        precision.round_mantissa(np.ones(3), 10)


@pytest.mark.parametrize("precision", ["high", "medium"])
def test_reduced_precision_conv2d_errors_are_the_size_of_its_mantissa(device, precision):
    x, w = conv_data()
    gy = np.random.default_rng(3).standard_normal((4, 16, 10, 10))
    exact = conv_forward_and_grads(x, w, gy, "cpu", np.float64)
    full = conv_forward_and_grads(x, w, gy, device, np.float32)
    mr.set_float32_matmul_precision(precision)
    reduced = conv_forward_and_grads(x, w, gy, device, np.float32)
    u = UNIT_ROUNDOFF[precision]
    for name, e, f, r in zip(["output", "input gradient", "weight gradient"],
                             exact, full, reduced):
        assert rel_error(f, e) < 1e-5, name  # float32: about 1e-7
        # each product carries two rounded inputs: well above float32, below 2u per product
        assert u / 20 < rel_error(r, e) < 2 * u, (name, rel_error(r, e))


def test_on_the_cpu_reduced_precision_is_float32_math_on_rounded_inputs():
    x, w = conv_data(4)
    gy = np.random.default_rng(5).standard_normal((4, 16, 10, 10))
    rounded = [precision.round_mantissa(a.astype(np.float32), 10).astype(np.float64)
               for a in (x, w)]
    mr.set_float32_matmul_precision("high")
    reduced = conv_forward_and_grads(x, w, gy, "cpu", np.float32)
    y_of_rounded = conv_forward_and_grads(*rounded, gy, "cpu", np.float64)[0]
    assert rel_error(reduced[0], y_of_rounded) < 1e-6


def test_float64_is_never_rounded(device):
    x, w = conv_data(6)
    gy = np.random.default_rng(7).standard_normal((4, 16, 10, 10))
    before = conv_forward_and_grads(x, w, gy, device, np.float64)
    mr.set_float32_matmul_precision("medium")
    after = conv_forward_and_grads(x, w, gy, device, np.float64)
    for b, a in zip(before, after):
        np.testing.assert_array_equal(a, b)
    a = mr.randn(5, 4, dtype=mr.float64, device=device, requires_grad=True)
    b = mr.randn(4, 3, dtype=mr.float64, device=device, requires_grad=True)
    assert mr.gradcheck(mr.matmul, (a, b))


def test_linear_and_matmul_backward_use_the_precision(device):
    rng = np.random.default_rng(8)
    a, b = rng.standard_normal((64, 96)), rng.standard_normal((96, 32))
    gy = rng.standard_normal((64, 32))

    def grads(dtype):
        at = mr.tensor(a.astype(dtype), device=device, requires_grad=True)
        bt = mr.tensor(b.astype(dtype), device=device, requires_grad=True)
        (at @ bt).backward(mr.tensor(gy.astype(dtype), device=device))
        return [t.grad.cpu().numpy().astype(np.float64) for t in (at, bt)]

    exact = grads(np.float64)
    mr.set_float32_matmul_precision("high")
    for r, e in zip(grads(np.float32), exact):
        assert UNIT_ROUNDOFF["high"] / 20 < rel_error(r, e) < 2 * UNIT_ROUNDOFF["high"]


def test_the_cublas_tf32_switch_is_restored_even_when_the_multiply_fails(monkeypatch):
    """CuPy's compute type is process-wide: switched to TF32 for one multiply, it must
    come back, also after an error. (A stand-in for CuPy's linalg module runs this on
    any machine; the GPU test below checks the real one.)"""
    from types import SimpleNamespace

    log = []
    linalg = SimpleNamespace(COMPUTE_TYPE_TF32="tf32", current="default")
    linalg.get_compute_type = lambda dtype: linalg.current

    def set_compute_type(dtype, compute_type):
        assert dtype == np.float32
        linalg.current = compute_type
        log.append(compute_type)

    linalg.set_compute_type = set_compute_type

    class Spy(np.ndarray):
        def __matmul__(self, other):
            log.append(f"multiply in {linalg.current}")
            return np.asarray(self) @ np.asarray(other)

    monkeypatch.setattr(backend, "cupy", SimpleNamespace(_core=SimpleNamespace(
        _routines_linalg=linalg)))
    a = np.ones((2, 3), dtype=np.float32).view(Spy)
    np.testing.assert_array_equal(precision._cublas_tf32_matmul(a, np.ones((3, 4))), 3.0)
    assert log == ["tf32", "multiply in tf32", "default"]
    with pytest.raises(ValueError):
        precision._cublas_tf32_matmul(a, np.ones((4, 4)))
    assert linalg.current == "default"


@pytest.mark.cuda
def test_cupy_keeps_its_own_float32_setting():
    if not mr.cuda.is_available():
        pytest.skip("no CUDA GPU (or CuPy) available")
    linalg = backend.cupy._core._routines_linalg
    before = linalg.get_compute_type(np.float32)
    mr.set_float32_matmul_precision("high")
    a = mr.randn(64, 64, device="cuda")
    (a @ a).sum().item()
    assert linalg.get_compute_type(np.float32) == before


def test_training_uses_the_precision_and_restores_it(tmp_path, monkeypatch):
    seen = []
    original = precision.matmul

    def spy(a, b):
        seen.append(precision.get_float32_matmul_precision())
        return original(a, b)

    monkeypatch.setattr(precision, "matmul", spy)
    result = run_training(model="resnet20", dataset="cifar10-sample", limit_train=32,
                          batch_size=16, epochs=1, matmul_precision="high", progress=False,
                          out=str(tmp_path))
    assert seen and set(seen) == {"high"}
    assert mr.get_float32_matmul_precision() == "highest"
    assert np.isfinite(result["history"][-1]["train_loss"])


def test_the_backend_still_answers_to_the_names_that_moved_out():
    from minires import cpu_threads

    assert backend.set_float32_matmul_precision is precision.set_float32_matmul_precision
    assert backend.get_float32_matmul_precision is mr.get_float32_matmul_precision
    assert backend.MATMUL_PRECISIONS is precision.MATMUL_PRECISIONS
    assert backend.round_mantissa is precision.round_mantissa
    assert backend.parallel_rows is cpu_threads.parallel_rows
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        backend.no_such_name  # noqa: B018
