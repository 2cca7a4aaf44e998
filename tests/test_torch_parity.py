"""Forward and backward of the ops against PyTorch's CPU build (when installed)."""

import numpy as np
import pytest

import minires as mr
import minires.nn.functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional


def run_both(mr_fn, torch_fn, arrays, device="cpu", seed=0):
    """Run both frameworks on the same float64 inputs and random upstream gradient."""
    ours = [mr.tensor(a, device=device, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    y, yt = mr_fn(*ours), torch_fn(*theirs)
    gy = np.random.default_rng(seed).standard_normal(yt.shape)
    y.backward(mr.tensor(gy, device=device))  # the upstream gradient on the output's device
    yt.backward(torch.tensor(gy))
    np.testing.assert_allclose(y.detach().cpu().numpy(), yt.detach().numpy(), rtol=1e-9,
                               atol=1e-10)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.grad.cpu().numpy(), b.grad.numpy(), rtol=1e-9, atol=1e-10)


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("stride, padding, dilation, bias", [
    (1, 1, 1, True), (2, 1, 1, False), ((2, 1), (0, 2), 1, True), (1, 2, 2, False),
])
def test_conv2d(stride, padding, dilation, bias, device):
    arrays = [rand(3, 4, 9, 8), rand(5, 4, 3, 3, seed=1)] + ([rand(5, seed=2)] if bias else [])
    kw = dict(stride=stride, padding=padding, dilation=dilation)
    run_both(lambda *a: F.conv2d(*a, **kw), lambda *a: TF.conv2d(*a, **kw), arrays, device)


@pytest.mark.parametrize("k, s, p", [(2, None, 0), (3, 2, 1), ((3, 2), (1, 2), (1, 0))])
def test_pooling(k, s, p, device):
    x = [rand(2, 3, 8, 7)]
    run_both(lambda x: F.max_pool2d(x, k, s, p), lambda x: TF.max_pool2d(x, k, s, p), x, device)
    run_both(lambda x: F.avg_pool2d(x, k, s, p), lambda x: TF.avg_pool2d(x, k, s, p), x, device)


def test_adaptive_avg_pool2d(device):
    for size in (1, (2, 3)):
        run_both(lambda x, size=size: F.adaptive_avg_pool2d(x, size),
                 lambda x, size=size: TF.adaptive_avg_pool2d(x, size), [rand(2, 3, 4, 6)], device)


@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 5), (4, 3, 5, 5)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_outputs_gradients_and_running_stats(shape, training, device):
    rm, rv = rand(3, seed=5), np.abs(rand(3, seed=6)) + 0.5
    ours_stats = [mr.tensor(rm, device=device), mr.tensor(rv, device=device)]
    torch_stats = [torch.tensor(rm), torch.tensor(rv)]
    run_both(lambda x, w, b: F.batch_norm(x, *ours_stats, w, b, training, 0.2, 1e-3),
             lambda x, w, b: TF.batch_norm(x, *torch_stats, w, b, training, 0.2, 1e-3),
             [rand(*shape), rand(3, seed=1), rand(3, seed=2)], device)
    for a, b in zip(ours_stats, torch_stats):
        np.testing.assert_allclose(a.cpu().numpy(), b.numpy(), rtol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_cross_entropy(reduction, smoothing, device):
    target = np.array([3, 0, 1, 4, 4, 2])
    kw = dict(reduction=reduction, label_smoothing=smoothing)
    run_both(lambda x: F.cross_entropy(x, mr.tensor(target, device=device), **kw),
             lambda x: TF.cross_entropy(x, torch.tensor(target), **kw), [rand(6, 5) * 3],
             device)


def test_cross_entropy_spatial(device):
    target = np.random.default_rng(0).integers(0, 4, (2, 3, 5))
    run_both(lambda x: F.cross_entropy(x, mr.tensor(target, device=device)),
             lambda x: TF.cross_entropy(x, torch.tensor(target)), [rand(2, 4, 3, 5)], device)


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "leaky_relu"])
def test_activations(name, device):
    run_both(getattr(F, name), getattr(TF, name), [rand(4, 5) * 3], device)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_and_log_softmax(dim, device):
    run_both(lambda x: F.softmax(x, dim), lambda x: TF.softmax(x, dim), [rand(3, 4, 5)], device)
    run_both(lambda x: F.log_softmax(x, dim), lambda x: TF.log_softmax(x, dim), [rand(3, 4, 5)],
             device)


def test_linear_matmul_and_reductions(device):
    run_both(F.linear, TF.linear, [rand(2, 3, 4), rand(5, 4, seed=1), rand(5, seed=2)], device)
    run_both(lambda a, b: a @ b, torch.matmul, [rand(2, 1, 3, 4), rand(5, 4, 2, seed=1)], device)
    run_both(lambda a: a.sum(dim=(0, 2), keepdim=True), lambda a: a.sum(dim=(0, 2), keepdim=True),
             [rand(2, 3, 4)], device)
    run_both(lambda a: a.max(dim=1).values, lambda a: a.max(dim=1).values, [rand(3, 4, 5)],
             device)
    run_both(lambda a: a.var(dim=1), lambda a: a.var(dim=1), [rand(3, 4, 5)], device)


def test_pad_and_cat(device):
    run_both(lambda x: F.pad(x, (1, 2, 3, 0), value=0.5),
             lambda x: TF.pad(x, (1, 2, 3, 0), value=0.5), [rand(2, 3, 4, 4)], device)
    run_both(lambda a, b: mr.cat([a, b], dim=1), lambda a, b: torch.cat([a, b], dim=1),
             [rand(2, 3), rand(2, 5, seed=1)], device)


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
