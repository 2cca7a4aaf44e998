"""Bad input gets an error that names the op and the shapes, not a NumPy traceback."""

import numpy as np
import pytest

import minires as mr
import minires.nn.functional as F

x4 = mr.randn(2, 3, 8, 8)
w4 = mr.randn(4, 3, 3, 3)

CASES = [
    ("conv2d wrong channels", lambda: F.conv2d(x4, mr.randn(4, 5, 3, 3)),
     r"conv2d: .*\(2, 3, 8, 8\) has 3 channels.*\(4, 5, 3, 3\)"),
    ("conv2d 3-d input", lambda: F.conv2d(mr.randn(3, 8, 8), w4), r"conv2d: .*4-D.*\(3, 8, 8\)"),
    ("conv2d kernel too big", lambda: F.conv2d(mr.randn(1, 3, 2, 2), w4), r"conv2d: kernel"),
    ("conv2d dtype", lambda: F.conv2d(x4.double(), w4), r"conv2d: .*float64.*float32"),
    ("conv2d bias shape", lambda: F.conv2d(x4, w4, mr.randn(3)), r"conv2d: bias of shape \(3,\)"),
    ("conv2d stride 0", lambda: F.conv2d(x4, w4, stride=0), r"conv2d: need stride >= 1"),
    ("conv2d bad stride type", lambda: F.conv2d(x4, w4, stride=1.5), r"conv2d: stride"),
    ("max_pool2d 3-d", lambda: F.max_pool2d(mr.randn(3, 8, 8), 2), r"max_pool2d: .*\(3, 8, 8\)"),
    ("max_pool2d big padding", lambda: F.max_pool2d(x4, 2, padding=2), r"max_pool2d: padding"),
    ("avg_pool2d too big", lambda: F.avg_pool2d(mr.randn(1, 1, 2, 2), 3), r"avg_pool2d: kernel"),
    ("batch_norm channels", lambda: F.batch_norm(x4, mr.zeros(4), mr.ones(4), training=True),
     r"batch_norm: running_mean has shape \(4,\) .*\(2, 3, 8, 8\) has 3 channels"),
    ("batch_norm one value", lambda: F.batch_norm(mr.randn(1, 3), None, None, training=True),
     r"batch_norm: expected more than 1 value per channel.*\(1, 3\)"),
    ("batch_norm eval no stats", lambda: F.batch_norm(x4, None, None), r"batch_norm: running"),
    ("cross_entropy range", lambda: F.cross_entropy(mr.randn(3, 4), np.array([0, 4, 1])),
     r"cross_entropy: target values must be in \[0, 3\]"),
    ("cross_entropy negative", lambda: F.cross_entropy(mr.randn(3, 4), np.array([0, -1, 1])),
     r"cross_entropy: target values"),
    ("cross_entropy float target", lambda: F.cross_entropy(mr.randn(3, 4), mr.randn(3)),
     r"cross_entropy: expected integer class indices.*float32"),
    ("cross_entropy shape", lambda: F.cross_entropy(mr.randn(3, 4), np.array([0, 1])),
     r"cross_entropy: target of shape \(2,\) does not match logits of shape \(3, 4\)"),
    ("cross_entropy reduction", lambda: F.cross_entropy(mr.randn(3, 4), np.array([0, 1, 2]),
                                                        reduction="avg"), r"reduction"),
    ("cross_entropy weight shape", lambda: F.cross_entropy(mr.randn(3, 4), np.array([0, 1, 2]),
                                                           weight=mr.ones(3)),
     r"cross_entropy: weight should be defined for all 4 classes .*shape \(3,\)"),
    ("cross_entropy ignore_index type", lambda: F.cross_entropy(
        mr.randn(3, 4), np.array([0, 1, 2]), ignore_index=1.5), r"ignore_index must be an int"),
    ("nll_loss range", lambda: F.nll_loss(mr.randn(3, 4), np.array([0, 4, 1])),
     r"nll_loss: target values must be in \[0, 3\] for 4 classes \(or equal "
     r"ignore_index=-100\), got 4 at position 1"),
    ("nll_loss -1 is not ignored", lambda: F.nll_loss(mr.randn(3, 4), np.array([0, -1, 1])),
     r"nll_loss: target values .* got -1 at position 1"),
    ("nll_loss -100 with another ignore_index", lambda: F.nll_loss(
        mr.randn(3, 200), np.array([0, -100, 1]), ignore_index=3), r"got -100 at position 1"),
    ("nll_loss spatial shape", lambda: F.nll_loss(mr.randn(2, 3, 4, 4), np.zeros((2, 4, 5), int)),
     r"nll_loss: target of shape \(2, 4, 5\) does not match input of shape \(2, 3, 4, 4\) "
     r"\(expected \(2, 4, 4\)\)"),
    ("nll_loss float target", lambda: F.nll_loss(mr.randn(3, 4), mr.randn(3)),
     r"nll_loss: expected integer class indices"),
    ("max over a tuple of dims", lambda: mr.randn(2, 3, 4).max(dim=(0, 2)),
     r"max: dim must be an int, got \(0, 2\).*use amax\(x, dim=\(0, 2\)\)"),
    ("argmax over a tuple of dims", lambda: mr.randn(2, 3, 4).argmax(dim=(0, 2)),
     r"argmax: dim must be an int or None, got \(0, 2\)"),
    ("amax repeated dim", lambda: mr.amax(mr.randn(2, 3), dim=(1, -1)),
     r"amax: dim \(1, -1\) lists a dimension twice"),
    ("Linear negative features", lambda: mr.nn.Linear(-1, 3),
     r"Linear: in_features must be a non-negative int, got -1"),
    ("linear features", lambda: F.linear(mr.randn(2, 5), mr.randn(3, 4)),
     r"linear: input of shape \(2, 5\) has 5 features.*\(3, 4\) expects 4"),
    ("matmul shapes", lambda: mr.randn(2, 3) @ mr.randn(4, 5),
     r"matmul: shapes \(2, 3\) and \(4, 5\)"),
    ("add broadcast", lambda: mr.randn(2, 3) + mr.randn(4), r"add: shapes \(2, 3\) and \(4,\)"),
    ("reshape", lambda: mr.randn(2, 3).reshape(4, 2), r"reshape: shape \(4, 2\) is invalid.*6"),
    ("permute", lambda: mr.randn(2, 3).permute(0, 0), r"permute: dims"),
    ("sum dim", lambda: mr.randn(2, 3).sum(dim=2), r"sum: dimension 2 is out of range"),
    ("getitem", lambda: mr.randn(2, 3)[5], r"getitem: index 5 is invalid.*\(2, 3\)"),
    ("cat", lambda: mr.cat([mr.randn(2, 3), mr.randn(3, 2)], dim=0), r"cat: sizes"),
    ("pad", lambda: F.pad(mr.randn(2, 3), (1, 1, 1)), r"pad: padding"),
    ("dropout p", lambda: F.dropout(x4, p=1.5), r"dropout: probability"),
    ("softmax dim", lambda: F.softmax(mr.randn(2, 3), dim=3), r"softmax: dimension 3"),
    ("item", lambda: mr.randn(2).item(), r"item\(\): only one-element tensors.*\(2,\)"),
    ("device", lambda: mr.randn(2).to("tpu"), r"unknown device 'tpu'"),
]


@pytest.mark.parametrize("name, call, pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input_error_names_op_and_shapes(name, call, pattern):
    with pytest.raises((ValueError, TypeError, IndexError, RuntimeError), match=pattern):
        call()


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
