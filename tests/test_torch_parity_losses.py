"""Class-index losses (weight, ignore_index, label smoothing, every reduction, per-pixel
targets) and amax against PyTorch's CPU build (when installed): forward values and the
gradient for a random upstream gradient, on every device."""

import warnings

import numpy as np
import pytest

import minires as mr
import minires.nn as nn
import minires.nn.functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional


def run_both(mr_fn, torch_fn, x, device="cpu", seed=0):
    """Both frameworks on the same float64 input and random upstream gradient."""
    ours = mr.tensor(x, device=device, requires_grad=True)
    theirs = torch.tensor(x, requires_grad=True)
    y, yt = mr_fn(ours), torch_fn(theirs)
    gy = np.random.default_rng(seed).standard_normal(tuple(yt.shape))
    y.backward(mr.tensor(gy, device=device))
    yt.backward(torch.tensor(gy))
    np.testing.assert_allclose(y.detach().cpu().numpy(), yt.detach().numpy(), rtol=1e-9,
                               atol=1e-12)  # NaN matches NaN
    np.testing.assert_allclose(ours.grad.cpu().numpy(), theirs.grad.numpy(), rtol=1e-9,
                               atol=1e-12)


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


TARGET = np.array([2, -100, 4, 1, 3, -100, 0])
WEIGHT = np.array([0.5, 2.0, 1.0, 1.5, 0.25])


def both(target, weight, device):
    """(minires kwargs, torch kwargs) for the same target and weight."""
    ours = dict(target=mr.tensor(target, device=device))
    theirs = dict(target=torch.tensor(target))
    if weight is not None:
        ours["weight"] = mr.tensor(weight, device=device)
        theirs["weight"] = torch.tensor(weight)
    return ours, theirs


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.25])
@pytest.mark.parametrize("weight", [None, WEIGHT], ids=["no_weight", "weight"])
def test_cross_entropy_weight_ignore_index_smoothing(reduction, smoothing, weight, device):
    ours, theirs = both(TARGET, weight, device)
    kw = dict(reduction=reduction, label_smoothing=smoothing)
    run_both(lambda x: F.cross_entropy(x, **ours, **kw),
             lambda x: TF.cross_entropy(x, **theirs, **kw), rand(7, 5) * 3, device)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weight", [None, WEIGHT], ids=["no_weight", "weight"])
def test_nll_loss_weight_ignore_index(reduction, weight, device):
    ours, theirs = both(TARGET, weight, device)
    run_both(lambda x: F.nll_loss(x, **ours, reduction=reduction),
             lambda x: TF.nll_loss(x, **theirs, reduction=reduction), rand(7, 5), device)


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("weight", [None, WEIGHT[:3]], ids=["no_weight", "weight"])
def test_per_pixel_losses_with_an_ignored_class(reduction, weight, device):
    target = np.random.default_rng(3).integers(0, 3, (2, 4, 5))  # class 1 is ignored
    ours, theirs = both(target, weight, device)
    kw = dict(reduction=reduction, ignore_index=1)
    run_both(lambda x: F.nll_loss(x, **ours, **kw),
             lambda x: TF.nll_loss(x, **theirs, **kw), rand(2, 3, 4, 5), device)
    run_both(lambda x: F.cross_entropy(x, **ours, **kw, label_smoothing=0.1),
             lambda x: TF.cross_entropy(x, **theirs, **kw, label_smoothing=0.1),
             rand(2, 3, 4, 5), device)


@pytest.mark.parametrize("weight", [None, WEIGHT], ids=["no_weight", "weight"])
def test_mean_over_only_ignored_targets_is_nan_with_a_zero_gradient(weight, device):
    ours, theirs = both(np.full(4, -100), weight, device)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and quietly, as in PyTorch
        run_both(lambda x: F.cross_entropy(x, **ours, label_smoothing=0.1),
                 lambda x: TF.cross_entropy(x, **theirs, label_smoothing=0.1), rand(4, 5),
                 device)
        run_both(lambda x: F.nll_loss(x, **ours), lambda x: TF.nll_loss(x, **theirs),
                 rand(4, 5), device)


def test_unbatched_input_and_scalar_target():
    run_both(lambda x: F.cross_entropy(x, mr.tensor(3), weight=mr.tensor(WEIGHT)),
             lambda x: TF.cross_entropy(x, torch.tensor(3), weight=torch.tensor(WEIGHT)),
             rand(5))
    run_both(lambda x: F.nll_loss(x, mr.tensor(1), reduction="none"),
             lambda x: TF.nll_loss(x, torch.tensor(1), reduction="none"), rand(5))


def test_loss_modules_take_weight_and_ignore_index_like_pytorch():
    x, w = rand(7, 5), mr.tensor(WEIGHT)
    ours = nn.CrossEntropyLoss(weight=w, ignore_index=4, label_smoothing=0.1)
    theirs = torch.nn.CrossEntropyLoss(weight=torch.tensor(WEIGHT), ignore_index=4,
                                       label_smoothing=0.1)
    target = np.array([2, 0, 4, 1, 3, 4, 0])
    np.testing.assert_allclose(ours(mr.tensor(x), mr.tensor(target)).item(),
                               theirs(torch.tensor(x), torch.tensor(target)).item(), rtol=1e-12)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["weight"]
    assert list(nn.NLLLoss().state_dict()) == list(torch.nn.NLLLoss().state_dict()) == []
    nll = nn.NLLLoss(weight=w, reduction="sum")
    np.testing.assert_allclose(
        nll(mr.tensor(x), mr.tensor(TARGET)).item(),
        torch.nn.NLLLoss(weight=torch.tensor(WEIGHT), reduction="sum")(
            torch.tensor(x), torch.tensor(TARGET)).item(), rtol=1e-12)


@pytest.mark.parametrize("dim, keepdim", [((0, 2), False), ((-1, 1), True), ((), False)])
def test_amax_matches_torch_ties_included(dim, keepdim, device):
    x = np.round(rand(3, 4, 2), 0)  # rounded: many ties, whose gradient is shared equally
    run_both(lambda t: mr.amax(t, dim=dim, keepdim=keepdim),
             lambda t: torch.amax(t, dim=dim, keepdim=keepdim), x, device)
