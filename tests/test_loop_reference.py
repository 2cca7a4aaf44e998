"""Forward results (and, where the spec has one, input gradients) against the slow,
obviously-correct NumPy loops of the op specs (``minires/opspec``), for every sample
of every spec that has a loop reference, fixed and randomly drawn, on every device."""

import functools

import numpy as np
import pytest

import minires as mr
import minires.nn.functional as F
from minires import opspec

REFERENCED = [(s, x) for s, x in opspec.samples() if s.reference is not None and not x.mixed]
WITH_GRAD = [(s, x) for s, x in REFERENCED if s.reference_grad is not None and x.call is None]


def _close(actual, expected, what):
    np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-10, equal_nan=True,
                               err_msg=what)


@pytest.mark.parametrize("spec, sample", REFERENCED, ids=[x.name for _, x in REFERENCED])
def test_forward_and_updated_settings_match_the_loops(spec, sample, device):
    """The output, and every array setting the op updates in place (running statistics),
    equal the loop reference's on the same inputs."""
    arrays = sample.arrays()
    ours = spec.settings(sample, lambda a: mr.tensor(a.copy(), device=device))
    loops = spec.settings(sample, np.copy)
    y = spec.run(sample, [mr.tensor(a, device=device) for a in arrays], settings=ours)
    expected = spec.caller(sample)(spec.reference, *arrays, *loops[0], **loops[1])
    what = f"{sample.name}: {sample.describe()} (run seed {opspec.run_seed()})"
    _close(y.cpu().numpy(), expected, what)
    for key, value in ours[1].items():
        if isinstance(value, mr.Tensor) and value.dtype.kind == "f":
            _close(value.cpu().numpy(), loops[1][key], f"{what}: {key} after the call")


@pytest.mark.parametrize("spec, sample", WITH_GRAD, ids=[x.name for _, x in WITH_GRAD])
def test_input_gradients_match_the_loops(spec, sample, device):
    arrays = sample.arrays()
    inputs = [mr.tensor(a, device=device, requires_grad=True) for a in arrays]
    y = spec.run(sample, inputs, device)
    gy = np.random.default_rng(1).standard_normal(y.shape)
    y.backward(mr.tensor(gy, device=device))
    loops = spec.settings(sample, np.copy)
    expected = spec.call(functools.partial(spec.reference_grad, gy), *arrays, *loops[0],
                         **loops[1])
    assert len(expected) == len(inputs)
    for k, (t, g) in enumerate(zip(inputs, expected)):
        _close(t.grad.cpu().numpy(), g, f"{sample.name}: gradient of input {k}")


def test_max_pool2d_backward_routes_to_argmax_only():
    x = np.array([[[[1.0, 5.0], [3.0, 2.0]]]])
    t = mr.tensor(x, requires_grad=True)
    F.max_pool2d(t, 2).backward(np.array([[[[7.0]]]]))
    np.testing.assert_array_equal(t.grad.numpy(), [[[[0.0, 7.0], [0.0, 0.0]]]])


def test_cross_entropy_matches_formula_and_is_stable_for_huge_logits():
    logits = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4]])
    target = np.array([0, 2])
    loss = F.cross_entropy(mr.tensor(logits, dtype=mr.float64), target, reduction="none")
    np.testing.assert_allclose(loss.numpy(), [0.0, np.log(2)], atol=1e-12)
    assert np.isfinite(loss.numpy()).all()
    x = mr.tensor(logits.astype(np.float32), requires_grad=True)
    F.cross_entropy(x, target).backward()
    assert np.isfinite(x.grad.numpy()).all()
    np.testing.assert_allclose(x.grad.numpy(), [[0, 0, 0], [0, 0.25, -0.25]], atol=1e-6)


def test_the_loops_catch_a_wrong_forward():
    """The reference test can fail: a convolution with its kernel flipped (a true
    convolution, not the cross-correlation every framework computes) differs."""
    conv = opspec.spec("conv2d")
    sample = conv.samples[0]
    x, w, b = sample.arrays()
    right = conv.reference(x, w, b, padding=1)
    flipped = conv.reference(x, w[:, :, ::-1, ::-1], b, padding=1)
    y = F.conv2d(mr.tensor(x), mr.tensor(w), mr.tensor(b), padding=1).numpy()
    np.testing.assert_allclose(y, right, rtol=1e-10, atol=1e-10)
    assert not np.allclose(y, flipped)
