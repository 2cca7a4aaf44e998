"""Tests of the tester: deliberately wrong backward passes must FAIL the gradient check.

Each bug below is one a student really writes. If the checker let any of them through,
every "passed" in test_gradcheck_ops.py would mean nothing.
"""

import numpy as np
import pytest

import minires as mr
from minires import backend
from minires.autograd import Function
from minires.ops.basic import Mul, sum_to
from minires.ops.conv import Conv2d
from minires.ops.geometry import output_size, scatter_windows
from minires.ops.norm import BatchNorm
from minires.ops.pool import MaxPool2d


class MulForgetsGy(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, gy):
        a, b = ctx.saved_tensors
        return b, a  # forgot to multiply by gy


class MatmulTransposedWeightGrad(Function):
    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x @ w

    @staticmethod
    def backward(ctx, gy):
        x, w = ctx.saved_tensors
        return gy @ w.T, (x.T @ gy).T  # gw transposed: same shape for a square w


class AddMeanInsteadOfSum(Function):
    @staticmethod
    def forward(ctx, a, b):
        return a + b

    @staticmethod
    def backward(ctx, gy):
        return gy, gy.mean(axis=0)  # b was broadcast over axis 0: must SUM, not average


class BatchNormWithoutMeanTerm(Function):
    forward = BatchNorm.forward

    @staticmethod
    def backward(ctx, gy):
        xhat, scale = ctx.saved_tensors
        M = gy.size // xhat.shape[1]
        axes = (0,) + tuple(range(2, gy.ndim))  # every axis but the channel axis
        gw = (gy * xhat).sum(axis=axes, keepdims=True)
        gb = gy.sum(axis=axes, keepdims=True)
        gx = scale * (gy - xhat * gw / M)  # forgot "- gb / M": the path through the mean
        return gx, gw.reshape(-1), gb.reshape(-1), None, None


class BatchNormWithoutVarianceTerm(Function):
    forward = BatchNorm.forward

    @staticmethod
    def backward(ctx, gy):
        xhat, scale = ctx.saved_tensors
        M = gy.size // xhat.shape[1]
        axes = (0,) + tuple(range(2, gy.ndim))  # every axis but the channel axis
        gw = (gy * xhat).sum(axis=axes, keepdims=True)
        gb = gy.sum(axis=axes, keepdims=True)
        gx = scale * (gy - gb / M)  # forgot the path through the variance
        return gx, gw.reshape(-1), gb.reshape(-1), None, None


class SoftmaxIgnoringGy(Function):
    @staticmethod
    def forward(ctx, x):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        y = e / e.sum(axis=1, keepdims=True)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, gy):
        (y,) = ctx.saved_tensors
        return gy * y * (1 - y)  # only the diagonal of the Jacobian


class ReluPassesEverything(Function):
    @staticmethod
    def forward(ctx, x):
        return np.maximum(x, 0)

    @staticmethod
    def backward(ctx, gy):
        return gy  # forgot the mask


class ConvCol2imOverwrites(Function):
    forward = Conv2d.forward

    @staticmethod
    def backward(ctx, gy):
        col, w = ctx.saved_tensors
        F, C, KH, KW = w.shape
        (SH, SW), (PH, PW), _ = ctx.geometry
        N, _, H, W = ctx.x_shape
        OH, OW = output_size(H, KH, SH, PH), output_size(W, KW, SW, PW)
        gy2 = gy.transpose(1, 0, 2, 3).reshape(F, -1)
        cols = (w.reshape(F, -1).T @ gy2).reshape(C, KH, KW, N, OH, OW)
        gx = np.zeros((C, N, H + 2 * PH, W + 2 * PW))
        for i in range(KH):
            for j in range(KW):
                # "=" instead of "+=": overlapping patches overwrite each other
                gx[:, :, i:i + SH * OH:SH, j:j + SW * OW:SW] = cols[:, i, j]
        gx = gx[:, :, PH:PH + H, PW:PW + W].transpose(1, 0, 2, 3)
        return gx, (gy2 @ col.T).reshape(w.shape), None  # no bias


class MaxPoolRoutesToFirst(Function):
    forward = MaxPool2d.forward

    @staticmethod
    def backward(ctx, gy):
        KH, KW, stride, padding = ctx.geometry
        # sends the gradient to the window's first element instead of its maximum
        return scatter_windows(np, ctx.x_shape, KH, KW, stride, padding,
                               lambda i, j: gy * (i == 0 and j == 0))


class CrossEntropyForgetsMean(Function):
    @staticmethod
    def forward(ctx, x, *, target):
        logp = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
        ctx.save_for_backward(np.exp(logp), target)
        return -logp[np.arange(len(target)), target].mean()

    @staticmethod
    def backward(ctx, gy):
        p, target = ctx.saved_tensors
        g = p.copy()
        g[np.arange(len(target)), target] -= 1
        return g * gy  # forgot the 1/N of the mean


def t64(rng, *shape):
    return mr.tensor(rng.standard_normal(shape), dtype=mr.float64, requires_grad=True)


def bn(cls):
    return lambda x, w, b: cls.apply(x, w, b, None, None, training=True, momentum=0.1,
                                     eps=1e-5)


TARGET = np.array([1, 0, 3, 2])
ZOO = {
    "mul_forgets_gy": (lambda a, b: MulForgetsGy.apply(a, b), [(3, 4), (3, 4)]),
    "matmul_transposed_weight_grad": (lambda x, w: MatmulTransposedWeightGrad.apply(x, w),
                                      [(5, 3), (3, 3)]),
    "add_missing_broadcast_reduction": (lambda a, b: AddMeanInsteadOfSum.apply(a, b),
                                        [(4, 3), (3,)]),
    "batch_norm_without_mean_term": (bn(BatchNormWithoutMeanTerm), [(4, 3, 2, 2), (3,), (3,)]),
    "batch_norm_without_variance_term": (bn(BatchNormWithoutVarianceTerm),
                                         [(4, 3, 2, 2), (3,), (3,)]),
    "softmax_ignoring_gy": (lambda x: SoftmaxIgnoringGy.apply(x), [(3, 5)]),
    "relu_passes_everything": (lambda x: ReluPassesEverything.apply(x), [(3, 5)]),
    "conv_col2im_overwrites": (lambda x, w: ConvCol2imOverwrites.apply(
        x, w, None, stride=(1, 1), padding=(1, 1), dilation=(1, 1)),
        [(1, 2, 4, 4), (2, 2, 3, 3)]),
    "max_pool_routes_to_first": (lambda x: MaxPoolRoutesToFirst.apply(
        x, kernel_size=(2, 2), stride=(2, 2), padding=(0, 0)), [(1, 2, 4, 4)]),
    "cross_entropy_forgets_mean": (lambda x: CrossEntropyForgetsMean.apply(x, target=TARGET),
                                   [(4, 5)]),
}


@pytest.mark.parametrize("name", sorted(ZOO))
def test_wrong_backward_fails_the_check(name):
    fn, shapes = ZOO[name]
    rng = np.random.default_rng(0)
    inputs = [t64(rng, *s) for s in shapes]
    with pytest.raises(mr.GradcheckError, match="gradcheck failed for input"):
        mr.gradcheck(fn, inputs)


def test_the_correct_ops_pass_the_same_checks():
    """The zoo's inputs are fair: the real ops pass on exactly the same inputs."""
    rng = np.random.default_rng(0)
    a, b = t64(rng, 3, 4), t64(rng, 3, 4)
    assert mr.gradcheck(lambda a, b: Mul.apply(a, b), [a, b])
    x, w, c = t64(rng, 4, 3, 2, 2), t64(rng, 3), t64(rng, 3)
    assert mr.gradcheck(bn(BatchNorm), [x, w, c])


def test_an_all_ones_upstream_gradient_would_miss_the_batch_norm_variance_bug():
    """Why gradcheck draws a random upstream gradient: with gy = 1 the missing variance
    term is invisible, because it multiplies sum(gy * xhat) = sum(xhat) = 0."""
    rng = np.random.default_rng(0)
    x, w, c = t64(rng, 4, 3, 2, 2), t64(rng, 3), t64(rng, 3)
    grads = []
    for cls in (BatchNorm, BatchNormWithoutVarianceTerm):
        x.grad = None
        bn(cls)(x, w, c).backward(np.ones(x.shape))
        grads.append(x.grad.numpy().copy())
    np.testing.assert_allclose(grads[0], grads[1], atol=1e-12)  # identical under gy = 1
    x.grad = None
    with pytest.raises(mr.GradcheckError):  # ... and caught with a random gy
        mr.gradcheck(bn(BatchNormWithoutVarianceTerm), [x, w, c])


def test_failure_message_names_input_element_and_errors():
    rng = np.random.default_rng(0)
    a, b = t64(rng, 3, 4), t64(rng, 3, 4)
    with pytest.raises(mr.GradcheckError) as info:
        mr.gradcheck(lambda a, b: MulForgetsGy.apply(a, b), [a, b])
    message = str(info.value)
    for part in ("input 0", "shape (3, 4)", "worst element (", "analytic", "numeric",
                 "abs error", "rel error"):
        assert part in message


def test_large_inputs_use_random_directions_and_still_catch_bugs():
    rng = np.random.default_rng(0)
    a, b = t64(rng, 30, 40), t64(rng, 30, 40)  # 1200 elements > max_full
    with pytest.raises(mr.GradcheckError, match="random direction"):
        mr.gradcheck(lambda a, b: MulForgetsGy.apply(a, b), [a, b])
    assert mr.gradcheck(lambda a, b: a * b, [a, b])


def test_gradcheck_refuses_float32():
    x = mr.randn(3, requires_grad=True)
    with pytest.raises(TypeError, match="float64"):
        mr.gradcheck(lambda x: x * 2, [x])


def test_sum_to_sums_over_broadcast_axes():
    assert sum_to(backend.numpy, np.ones((4, 3)), (3,)).tolist() == [4.0, 4.0, 4.0]
