"""Bad input gets an error that names the op and the shapes, not a NumPy traceback."""

import numpy as np
import pytest

import minires as mr
import minires.nn.functional as F
from minires import opspec

# The op's error cases live in their specs (minires/opspec); these are the others.
CASES = [
    ("argmax over a tuple of dims", lambda: mr.randn(2, 3, 4).argmax(dim=(0, 2)),
     r"argmax: dim must be an int or None, got \(0, 2\)"),
    ("Linear negative features", lambda: mr.nn.Linear(-1, 3),
     r"Linear: in_features must be a non-negative int, got -1"),
    ("item", lambda: mr.randn(2).item(), r"item\(\): only one-element tensors.*\(2,\)"),
]
OP_CASES = [(s, e) for s in opspec.SPECS for e in s.errors if not e.devices]
DEVICE_CASES = [(s, e) for s in opspec.SPECS for e in s.errors if e.devices]


@pytest.mark.parametrize("name, call, pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input_error_names_the_function_and_shapes(name, call, pattern):
    with pytest.raises((ValueError, TypeError, IndexError, RuntimeError), match=pattern):
        call()


@pytest.mark.parametrize("spec, case", OP_CASES, ids=[e.name for _, e in OP_CASES])
def test_bad_input_to_an_op_raises_the_error_of_its_spec(spec, case):
    with pytest.raises(case.error, match=case.match):
        case.call("cpu")


@pytest.mark.cuda
@pytest.mark.parametrize("spec, case", DEVICE_CASES, ids=[e.name for _, e in DEVICE_CASES])
def test_tensors_on_two_devices_raise_the_error_of_the_spec(spec, case):
    if not mr.cuda.is_available():
        pytest.skip("no CUDA GPU (or CuPy) available")
    with pytest.raises(case.error, match=case.match):
        case.call("cuda")


# ------------------------------------------------------------ checks of GPU values


@pytest.fixture
def as_if_on_a_gpu(monkeypatch):
    """Arrays count as GPU arrays for backend.check_value: checks are queued, not read."""
    from minires import backend

    monkeypatch.setattr(backend, "device_of", lambda array: "cuda")
    yield backend
    backend._pending_checks.clear()


def test_a_failed_check_on_a_gpu_is_raised_at_the_next_read(as_if_on_a_gpu):
    backend = as_if_on_a_gpu
    # -1: NumPy's indexing wraps it around like CuPy's, so the forward pass runs
    logits, target = mr.randn(2, 3), mr.tensor([0, -1])
    loss = F.cross_entropy(logits, target)  # no read of the targets' values here
    assert len(backend._pending_checks) == 1
    with pytest.raises(ValueError, match=r"cross_entropy: target values must be in \[0, 2\] "
                                         r"for 3 classes \(or equal ignore_index=-100\), got "
                                         r"-1 at position 1 \(a check of values on the GPU"):
        loss.item()  # reading a value runs the queued checks first
    assert backend._pending_checks == []  # raised once, then forgotten
    F.cross_entropy(logits, mr.tensor([0, 2])).item()


def test_passing_checks_raise_nothing_and_the_queue_stays_bounded(as_if_on_a_gpu):
    backend = as_if_on_a_gpu
    for _ in range(backend._MAX_PENDING - 1):
        backend.check_value(np.bool_(False), lambda: "never")
    assert len(backend._pending_checks) == backend._MAX_PENDING - 1
    backend.check_value(np.bool_(False), lambda: "never")  # a full queue is run at once
    assert backend._pending_checks == []
    backend.check_value(np.bool_(True), lambda: "bad value")
    with pytest.raises(ValueError, match="bad value"):
        backend.check_pending()


def test_on_the_cpu_a_value_check_raises_at_once():
    with pytest.raises(ValueError, match=r"got -1 at position 0"):
        F.cross_entropy(mr.randn(2, 3), mr.tensor([-1, 1]))


@pytest.mark.parametrize("index, axis, size", [
    (lambda i: i, 0, 4), (lambda i: (slice(None), i), 1, 5), (lambda i: (..., i), 1, 5),
    (lambda i: (None, i), 0, 4)], ids=["first-axis", "second-axis", "after-ellipsis", "newaxis"])
def test_an_integer_index_out_of_range_raises_on_every_device(device, index, axis, size):
    """CuPy wraps an out-of-range gather index around (a wrong element, no error); the
    op checks it: at once on the CPU, at the next read on a GPU."""
    x = mr.arange(20.0, device=device).reshape(4, 5)
    with pytest.raises(ValueError, match=rf"getitem: index 7 is out of bounds for dimension "
                                         rf"{axis} with size {size}"):
        x[index(mr.tensor([1, 7, 2], device=device))].tolist()
    inside = x[index(mr.tensor([1, -1], device=device))]  # negative indices count from the end
    assert inside.tolist() == x.cpu().numpy()[index(np.array([1, -1]))].tolist()
