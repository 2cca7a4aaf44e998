"""Forward results against slow, obviously-correct loop implementations."""

import numpy as np
import pytest

import minires as mr
import minires.nn.functional as F


def conv2d_loops(x, w, b, stride, padding, dilation=(1, 1)):
    N, C, H, W = x.shape
    Fo, _, KH, KW = w.shape
    (SH, SW), (PH, PW), (DH, DW) = stride, padding, dilation
    xp = np.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)))
    OH = (H + 2 * PH - DH * (KH - 1) - 1) // SH + 1
    OW = (W + 2 * PW - DW * (KW - 1) - 1) // SW + 1
    y = np.zeros((N, Fo, OH, OW))
    for n in range(N):
        for f in range(Fo):
            for oh in range(OH):
                for ow in range(OW):
                    total = 0.0 if b is None else b[f]
                    for c in range(C):
                        for i in range(KH):
                            for j in range(KW):
                                total += w[f, c, i, j] * xp[n, c, oh * SH + i * DH,
                                                            ow * SW + j * DW]
                    y[n, f, oh, ow] = total
    return y


def pool_loops(x, k, stride, padding, reduce, pad_value):
    N, C, H, W = x.shape
    (KH, KW), (SH, SW), (PH, PW) = k, stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)), constant_values=pad_value)
    OH, OW = (H + 2 * PH - KH) // SH + 1, (W + 2 * PW - KW) // SW + 1
    y = np.zeros((N, C, OH, OW))
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    y[n, c, oh, ow] = reduce(xp[n, c, oh * SH:oh * SH + KH, ow * SW:ow * SW + KW])
    return y


CONV_CASES = [
    # x shape, w shape, bias, stride, padding, dilation
    ((2, 3, 7, 7), (4, 3, 3, 3), True, (1, 1), (1, 1), (1, 1)),
    ((1, 2, 8, 6), (3, 2, 3, 2), False, (2, 1), (0, 1), (1, 1)),
    ((2, 4, 5, 5), (2, 4, 1, 1), True, (2, 2), (0, 0), (1, 1)),
    ((1, 2, 9, 9), (2, 2, 3, 3), False, (2, 2), (2, 2), (2, 2)),
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_matches_loops(case, device):
    xs, ws, bias, stride, padding, dilation = case
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    b = rng.standard_normal(ws[0]) if bias else None
    y = F.conv2d(mr.tensor(x, device=device), mr.tensor(w, device=device),
                 None if b is None else mr.tensor(b, device=device),
                 stride=stride, padding=padding, dilation=dilation)
    np.testing.assert_allclose(y.cpu().numpy(), conv2d_loops(x, w, b, stride, padding, dilation),
                               rtol=1e-10, atol=1e-10)


POOL_CASES = [((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (1, 1)), ((2, 3), (1, 2), (1, 1))]


@pytest.mark.parametrize("k, stride, padding", POOL_CASES)
def test_max_pool2d_matches_loops(k, stride, padding, device):
    x = np.random.default_rng(1).standard_normal((2, 3, 7, 6))
    y = F.max_pool2d(mr.tensor(x, device=device), k, stride, padding)
    expected = pool_loops(x, k, stride, padding, np.max, -np.inf)
    np.testing.assert_array_equal(y.cpu().numpy(), expected)


@pytest.mark.parametrize("k, stride, padding", POOL_CASES)
def test_avg_pool2d_matches_loops(k, stride, padding, device):
    x = np.random.default_rng(2).standard_normal((2, 3, 7, 6))
    y = F.avg_pool2d(mr.tensor(x, device=device), k, stride, padding)
    expected = pool_loops(x, k, stride, padding, np.mean, 0.0)  # zeros count, as in PyTorch
    np.testing.assert_allclose(y.cpu().numpy(), expected, rtol=1e-12)


def test_max_pool2d_backward_routes_to_argmax_only():
    x = np.array([[[[1.0, 5.0], [3.0, 2.0]]]])
    t = mr.tensor(x, requires_grad=True)
    F.max_pool2d(t, 2).backward(np.array([[[[7.0]]]]))
    np.testing.assert_array_equal(t.grad.numpy(), [[[[0.0, 7.0], [0.0, 0.0]]]])


def test_batch_norm_matches_formula(device):
    x = np.random.default_rng(3).standard_normal((5, 3, 2, 2))
    w, b = np.array([1.0, 2.0, -1.0]), np.array([0.0, 0.5, 1.0])
    y = F.batch_norm(mr.tensor(x, device=device), None, None, mr.tensor(w, device=device),
                     mr.tensor(b, device=device), training=True)
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    var = x.var(axis=(0, 2, 3), keepdims=True)
    expected = (x - mean) / np.sqrt(var + 1e-5) * w[None, :, None, None] + b[None, :, None, None]
    np.testing.assert_allclose(y.cpu().numpy(), expected, rtol=1e-10, atol=1e-12)


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


# ------------------------------------------------------------------ CPU fast path


def conv2d_grad_loops(x, w, gy, stride, padding):
    """gx and gw of a convolution by its definition: each output pixel's gradient flows
    back to every input pixel and weight that made it."""
    N, C, H, W = x.shape
    Fo, _, KH, KW = w.shape
    (SH, SW), (PH, PW) = stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)))
    gxp, gw = np.zeros_like(xp), np.zeros_like(w)
    for n in range(N):
        for f in range(Fo):
            for oh in range(gy.shape[2]):
                for ow in range(gy.shape[3]):
                    g = gy[n, f, oh, ow]
                    patch = (n, slice(None), slice(oh * SH, oh * SH + KH),
                             slice(ow * SW, ow * SW + KW))
                    gw[f] += g * xp[patch]
                    gxp[patch] += g * w[f]
    return gxp[:, :, PH:PH + H, PW:PW + W], gw


FAST_CONV_CASES = [
    # x shape, w shape, bias, stride, padding: "same" 3x3 and 1x1 (block copies), and the
    # strided path (stride 2, kernels other than 2P+1), odd and non-square sizes
    ((2, 3, 5, 4), (4, 3, 3, 3), True, 1, 1),
    ((2, 3, 4, 5), (2, 3, 1, 1), False, 1, 0),
    ((2, 2, 7, 6), (3, 2, 3, 3), False, 2, 1),
    ((3, 4, 6, 5), (2, 4, 1, 1), True, 2, 0),
    ((1, 2, 5, 5), (3, 2, 2, 2), False, 1, 1),
    ((2, 2, 6, 7), (2, 2, 3, 3), True, 2, 0),
]


@pytest.mark.parametrize("case", FAST_CONV_CASES)
def test_fast_conv2d_forward_and_gradients_match_loops(case, device):
    from minires.ops import fast_conv

    xs, ws, bias, stride, padding = case
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    b = rng.standard_normal(ws[0]) if bias else None
    tensors = [mr.tensor(a, device=device, requires_grad=True) for a in (x, w)]
    y = fast_conv.conv2d(*tensors, None if b is None else mr.tensor(b, device=device),
                         stride=stride, padding=padding)
    expected = conv2d_loops(x, w, b, (stride, stride), (padding, padding))
    np.testing.assert_allclose(y.detach().cpu().numpy(), expected, rtol=1e-10, atol=1e-10)
    gy = rng.standard_normal(expected.shape)
    y.backward(mr.tensor(gy, device=device))
    gx, gw = conv2d_grad_loops(x, w, gy, (stride, stride), (padding, padding))
    np.testing.assert_allclose(tensors[0].grad.cpu().numpy(), gx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(tensors[1].grad.cpu().numpy(), gw, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_act_matches_formula(training, device):
    from minires.ops import fused_norm

    rng = np.random.default_rng(5)
    x, r = rng.standard_normal((4, 3, 3, 5)), rng.standard_normal((4, 3, 3, 5))
    w, b = np.array([1.0, 2.0, -1.0]), np.array([0.0, 0.5, 1.0])
    rm, rv = np.array([0.2, -0.1, 0.3]), np.array([0.5, 1.5, 2.0])
    y = fused_norm.batch_norm_act(
        mr.tensor(x, device=device), mr.tensor(rm, device=device), mr.tensor(rv, device=device),
        mr.tensor(w, device=device), mr.tensor(b, device=device), training,
        residual=mr.tensor(r, device=device))
    mean = x.mean(axis=(0, 2, 3), keepdims=True) if training else rm[None, :, None, None]
    var = x.var(axis=(0, 2, 3), keepdims=True) if training else rv[None, :, None, None]
    z = (x - mean) / np.sqrt(var + 1e-5) * w[None, :, None, None] + b[None, :, None, None]
    np.testing.assert_allclose(y.cpu().numpy(), np.maximum(z + r, 0), rtol=1e-10, atol=1e-12)
