"""The ops against PyTorch's CPU build (when installed): for every sample of every spec
with a PyTorch counterpart (``minires/opspec``), fixed and randomly drawn, on every
device, the same float64 inputs and random upstream gradient give the same output, the
same input gradients and the same updated settings (running statistics), and minires
warns about nothing."""

import importlib
import warnings

import numpy as np
import pytest

import minires as mr
import minires.nn as nn
import minires.nn.functional as F
from minires import opspec

torch = pytest.importorskip("torch")

PARITY = [(s, x) for s, x in opspec.samples() if s.torch and s.parity and not x.mixed]


def torch_function(name: str):
    """'torch.nn.functional.conv2d' -> the function; 'torch.Tensor.sum' -> the method."""
    module, _, attribute = name.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attribute)
    except ModuleNotFoundError:  # a class: torch.Tensor
        owner, _, cls = module.rpartition(".")
        return getattr(getattr(importlib.import_module(owner), cls), attribute)


def _close(ours, theirs, what):
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-10, equal_nan=True,
                               err_msg=what)


@pytest.mark.parametrize("spec, sample", PARITY, ids=[x.name for _, x in PARITY])
def test_forward_backward_and_settings_match_pytorch(spec, sample, device):
    arrays = sample.arrays()
    ours_settings = spec.settings(sample, lambda a: mr.tensor(a.copy(), device=device))
    theirs_settings = spec.settings(sample, lambda a: torch.tensor(a.copy()))
    ours = [mr.tensor(a, device=device, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    yt = spec.run(sample, theirs, fn=torch_function(spec.torch), settings=theirs_settings)
    gy = np.random.default_rng(0).standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(gy))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # quietly, as in PyTorch (a mean over no target)
        y = spec.run(sample, ours, settings=ours_settings)
        y.backward(mr.tensor(gy, device=device))
    what = f"{sample.name}: {sample.describe()} against {spec.torch}"
    _close(y.detach().cpu().numpy(), yt.detach().numpy(), f"{what}: output")
    for k, (a, b) in enumerate(zip(ours, theirs)):
        _close(a.grad.cpu().numpy(), b.grad.numpy(), f"{what}: gradient of input {k}")
    for key, value in ours_settings[1].items():
        if isinstance(value, mr.Tensor) and value.dtype.kind == "f":
            _close(value.cpu().numpy(), theirs_settings[1][key].numpy(), f"{what}: {key}")


def test_every_pytorch_name_resolves():
    for spec in opspec.SPECS:
        if spec.torch and spec.parity:
            assert callable(torch_function(spec.torch)), spec.torch


def test_dropout_statistics_and_eval_identity():
    x = mr.ones(200, 500)
    y = F.dropout(x, p=0.3).numpy()
    np.testing.assert_allclose(np.unique(y), [0.0, 1 / 0.7], rtol=1e-6)  # dropped or scaled
    assert abs((y == 0).mean() - 0.3) < 0.01  # 100,000 draws: the rate is within 1%
    assert F.dropout(x, p=0.3, training=False) is x
    mr.manual_seed(5)
    a = F.dropout(x, 0.5).numpy()
    mr.manual_seed(5)
    np.testing.assert_array_equal(a, F.dropout(x, 0.5).numpy())  # seeded: reproducible


def test_loss_modules_take_weight_and_ignore_index_like_pytorch():
    weight = np.array([0.5, 2.0, 1.0, 1.5, 0.25])
    x, w = np.random.default_rng(0).standard_normal((7, 5)), mr.tensor(weight)
    ours = nn.CrossEntropyLoss(weight=w, ignore_index=4, label_smoothing=0.1)
    theirs = torch.nn.CrossEntropyLoss(weight=torch.tensor(weight), ignore_index=4,
                                       label_smoothing=0.1)
    target = np.array([2, 0, 4, 1, 3, 4, 0])
    np.testing.assert_allclose(ours(mr.tensor(x), mr.tensor(target)).item(),
                               theirs(torch.tensor(x), torch.tensor(target)).item(), rtol=1e-12)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["weight"]
    assert list(nn.NLLLoss().state_dict()) == list(torch.nn.NLLLoss().state_dict()) == []
    ignored = np.array([2, -100, 4, 1, 3, -100, 0])
    nll = nn.NLLLoss(weight=w, reduction="sum")
    np.testing.assert_allclose(
        nll(mr.tensor(x), mr.tensor(ignored)).item(),
        torch.nn.NLLLoss(weight=torch.tensor(weight), reduction="sum")(
            torch.tensor(x), torch.tensor(ignored)).item(), rtol=1e-12)
