"""Ops check the device of everything they touch, settings included, with the error that
mixed inputs get: BatchNorm's running statistics arrive as settings, not inputs, and a
CPU buffer next to a CUDA input used to fail deep inside CuPy."""

import pytest

import minires as mr
import minires.nn as nn
import minires.nn.functional as F

pytestmark = pytest.mark.cuda


@pytest.fixture(autouse=True)
def _needs_cuda():
    if not mr.cuda.is_available():
        pytest.skip("no CUDA GPU (or CuPy) available")


@pytest.mark.parametrize("x_device, stats_device", [("cuda", "cpu"), ("cpu", "cuda")])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_refuses_running_statistics_on_another_device(x_device, stats_device,
                                                                  training):
    x = mr.randn(4, 3, 2, 2, device=x_device)
    mean, var = mr.zeros(3, device=stats_device), mr.ones(3, device=stats_device)
    with pytest.raises(RuntimeError, match="BatchNorm: expected all tensors to be on the "
                                           "same device, but found tensors on cpu and cuda"):
        F.batch_norm(x, mean, var, training=training)
    assert mean.cpu().numpy().tolist() == [0.0, 0.0, 0.0]  # nothing was updated


def test_batch_norm_layer_moved_whole_works_on_the_device():
    layer = nn.BatchNorm2d(3).to("cuda")
    y = layer(mr.randn(4, 3, 2, 2, device="cuda"))
    assert y.device == "cuda" and layer.running_mean.device == "cuda"
    assert layer.running_mean.cpu().numpy().any()  # the statistics moved with the batch
