"""The registry of every differentiable op, with sample inputs for the gradient check.

Each ``OpInfo`` names the ``Function`` classes it exercises (``covers``); the
completeness test fails when a ``Function`` in minires has no entry here. Inputs are
float64 and placed away from kinks: relu/abs inputs keep |x| >= 0.1, max and max-pool
inputs are a shuffled ramp (every two values differ by far more than eps), log/sqrt/div
inputs stay positive or away from zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import minires as mr
import minires.nn.functional as F
from minires import ops

# the same input makers the course grader uses (it ships without tests/)
from minires.course.checks import away_from_zero, normal
from minires.ops import fast_conv, fused_norm


@dataclass
class OpInfo:
    name: str
    fn: object  # (*tensors) -> Tensor
    make_inputs: object  # (rng) -> list of float64 numpy arrays, all differentiable
    covers: tuple = field(default=())


def positive(*shape):
    return lambda rng: rng.uniform(0.5, 2.0, shape)


def ramp(*shape):
    """A shuffled ramp: distinct values 0.01 apart, so no max is ever a near-tie."""
    def make(rng):
        n = int(np.prod(shape))
        return (rng.permutation(n) * 0.01 - n * 0.005).reshape(shape)
    return make


def inputs(*makers):
    return lambda rng: [m(rng) for m in makers]


def seeded(fn, seed=0):
    """Dropout draws a mask per call; reseeding makes every call draw the same mask."""
    def run(*args):
        mr.manual_seed(seed)
        return fn(*args)
    return run


_TARGET = np.array([2, 0, 4, 1, 3, 3])
_SPATIAL_TARGET = np.random.default_rng(1).integers(0, 3, (2, 4, 5))
_IGNORED = np.array([2, -100, 4, 1, -100, 3])  # -100: PyTorch's default ignore_index
_SPATIAL_IGNORED = np.where(np.random.default_rng(2).random((2, 4, 5)) < 0.2, 7,
                            _SPATIAL_TARGET)  # with ignore_index=7


def _weight(x, classes=5):
    """Class weights on the input's device, as a user's would be (a CPU weight with a CUDA
    input is refused, as in PyTorch)."""
    return mr.tensor([0.5, 2.0, 1.0, 1.5, 0.25][:classes], dtype=mr.float64, device=x.device)


OPS = [
    # ---------------------------------------------------------------- arithmetic
    OpInfo("add", lambda a, b: a + b, inputs(normal(3, 1, 4), normal(2, 4)), ("Add",)),
    OpInfo("sub", lambda a, b: a - b, inputs(normal(2, 4), normal(3, 1, 4)), ("Sub",)),
    OpInfo("mul", lambda a, b: a * b, inputs(normal(3, 1, 4), normal(1, 5, 4)), ("Mul",)),
    OpInfo("div", lambda a, b: a / b, inputs(normal(3, 4), positive(4)), ("Div",)),
    OpInfo("neg", lambda a: -a, inputs(normal(3, 4)), ("Neg",)),
    OpInfo("pow", lambda a: a ** 2.5, inputs(positive(3, 4)), ("Pow",)),
    OpInfo("pow_int", lambda a: a ** 3, inputs(normal(3, 4)), ("Pow",)),
    OpInfo("exp", ops.exp, inputs(normal(3, 4)), ("Exp",)),
    OpInfo("log", ops.log, inputs(positive(3, 4)), ("Log",)),
    OpInfo("sqrt", ops.sqrt, inputs(positive(3, 4)), ("Sqrt",)),
    OpInfo("abs", ops.abs, inputs(away_from_zero(3, 4)), ("Abs",)),
    OpInfo("matmul", ops.matmul, inputs(normal(3, 4), normal(4, 5)), ("Matmul",)),
    OpInfo("matmul_batched_broadcast", ops.matmul,
           inputs(normal(2, 1, 3, 4), normal(5, 4, 2)), ("Matmul",)),
    OpInfo("matmul_vec_mat", ops.matmul, inputs(normal(4), normal(2, 4, 3)), ("Matmul",)),
    OpInfo("matmul_mat_vec", ops.matmul, inputs(normal(2, 3, 4), normal(4)), ("Matmul",)),
    OpInfo("matmul_dot", ops.matmul, inputs(normal(4), normal(4)), ("Matmul",)),
    OpInfo("cast", lambda a: ops.cast(a, np.float64), inputs(normal(3)), ("Cast",)),
    OpInfo("to_device", lambda a: a.to(a.device), inputs(normal(3)), ()),
    OpInfo("to_device_op", lambda a: ops.to_device(a, a.device), inputs(normal(3)),
           ("ToDevice",)),
    # ---------------------------------------------------------------- shape
    OpInfo("reshape", lambda a: a.reshape(4, -1), inputs(normal(2, 3, 4)), ("Reshape",)),
    OpInfo("flatten", lambda a: ops.flatten(a, 1), inputs(normal(2, 3, 4)), ("Reshape",)),
    OpInfo("permute", lambda a: a.permute(2, 0, 1), inputs(normal(2, 3, 4)), ("Permute",)),
    OpInfo("transpose", lambda a: a.transpose(0, 2), inputs(normal(2, 3, 4)), ("Permute",)),
    OpInfo("getitem_slice", lambda a: a[1:, ::2], inputs(normal(3, 5)), ("GetItem",)),
    OpInfo("getitem_repeated_index", lambda a: a[[0, 2, 0, 1]], inputs(normal(3, 2)),
           ("GetItem",)),
    OpInfo("getitem_mask", lambda a: a[a.detach() > 0], inputs(away_from_zero(4, 3)),
           ("GetItem",)),
    OpInfo("cat", lambda a, b, c: ops.cat([a, b, c], dim=1),
           inputs(normal(2, 1, 3), normal(2, 4, 3), normal(2, 2, 3)), ("Cat",)),
    OpInfo("pad", lambda a: ops.pad(a, (1, 2, 0, 1), value=0.5), inputs(normal(2, 2, 3, 3)),
           ("Pad",)),
    # ---------------------------------------------------------------- reductions
    OpInfo("sum_all", lambda a: a.sum(), inputs(normal(3, 4)), ("Sum",)),
    OpInfo("sum_dim_keepdim", lambda a: a.sum(dim=(0, 2), keepdim=True),
           inputs(normal(2, 3, 4)), ("Sum",)),
    OpInfo("mean_dim", lambda a: a.mean(dim=1), inputs(normal(2, 3, 4)), ("Sum", "Mul")),
    OpInfo("var", lambda a: a.var(dim=0), inputs(normal(5, 3)), ("Sum", "Sub", "Mul")),
    OpInfo("max_all", lambda a: a.max(), inputs(ramp(3, 4)), ("Max",)),
    OpInfo("max_dim", lambda a: a.max(dim=1).values, inputs(ramp(3, 4, 2)), ("Max",)),
    OpInfo("max_dim_keepdim", lambda a: a.max(dim=-1, keepdim=True).values,
           inputs(ramp(3, 4)), ("Max",)),
    OpInfo("amax_dims", lambda a: mr.amax(a, dim=(0, 2)), inputs(ramp(3, 4, 2)), ("Max",)),
    OpInfo("amax_dims_keepdim", lambda a: a.amax(dim=(-1, 1), keepdim=True),
           inputs(ramp(2, 3, 4)), ("Max",)),
    # ---------------------------------------------------------------- activations
    OpInfo("relu", F.relu, inputs(away_from_zero(3, 4)), ("ReLU",)),
    OpInfo("leaky_relu", lambda a: F.leaky_relu(a, 0.2), inputs(away_from_zero(3, 4)),
           ("LeakyReLU",)),
    OpInfo("sigmoid", F.sigmoid, inputs(normal(3, 4)), ("Sigmoid",)),
    OpInfo("tanh", F.tanh, inputs(normal(3, 4)), ("Tanh",)),
    OpInfo("softmax", lambda a: F.softmax(a, dim=1), inputs(normal(3, 5)), ("Softmax",)),
    OpInfo("softmax_dim0", lambda a: F.softmax(a, dim=0), inputs(normal(3, 2, 2)),
           ("Softmax",)),
    OpInfo("log_softmax", lambda a: F.log_softmax(a, dim=-1), inputs(normal(3, 5)),
           ("LogSoftmax",)),
    OpInfo("dropout", seeded(lambda a: F.dropout(a, p=0.3)), inputs(normal(4, 5)),
           ("Dropout",)),
    # ---------------------------------------------------------------- layers
    OpInfo("linear", F.linear, inputs(normal(4, 3), normal(5, 3), normal(5)),
           ("Matmul", "Permute", "Add")),
    OpInfo("linear_no_bias_3d", F.linear, inputs(normal(2, 4, 3), normal(5, 3)), ("Matmul",)),
    OpInfo("conv2d", lambda x, w, b: F.conv2d(x, w, b, padding=1),
           inputs(normal(2, 3, 5, 5), normal(4, 3, 3, 3), normal(4)), ("Conv2d",)),
    OpInfo("conv2d_stride2_rect_kernel_no_bias",
           lambda x, w: F.conv2d(x, w, stride=(2, 1), padding=(1, 0)),
           inputs(normal(2, 2, 6, 5), normal(3, 2, 3, 2)), ("Conv2d",)),
    # stride 1 takes the flipped-kernel path in backward, other strides col2im
    OpInfo("conv2d_stride1_rect_kernel_uneven_padding",
           lambda x, w: F.conv2d(x, w, padding=(0, 1)),
           inputs(normal(2, 2, 5, 4), normal(3, 2, 3, 2)), ("Conv2d",)),
    OpInfo("conv2d_1x1_stride2", lambda x, w: F.conv2d(x, w, stride=2),
           inputs(normal(2, 3, 5, 5), normal(2, 3, 1, 1)), ("Conv2d",)),
    OpInfo("conv2d_dilation", lambda x, w: F.conv2d(x, w, padding=2, dilation=2),
           inputs(normal(1, 2, 5, 5), normal(2, 2, 3, 3)), ("Conv2d",)),
    OpInfo("max_pool2d", lambda x: F.max_pool2d(x, 2), inputs(ramp(2, 2, 4, 4)),
           ("MaxPool2d",)),
    OpInfo("max_pool2d_overlap_pad", lambda x: F.max_pool2d(x, 3, stride=2, padding=1),
           inputs(ramp(2, 2, 5, 5)), ("MaxPool2d",)),
    OpInfo("max_pool2d_rect", lambda x: F.max_pool2d(x, (2, 3), stride=1),
           inputs(ramp(1, 2, 4, 5)), ("MaxPool2d",)),
    OpInfo("avg_pool2d", lambda x: F.avg_pool2d(x, 2), inputs(normal(2, 2, 4, 4)),
           ("AvgPool2d",)),
    OpInfo("avg_pool2d_overlap_pad", lambda x: F.avg_pool2d(x, 3, stride=1, padding=1),
           inputs(normal(2, 2, 4, 5)), ("AvgPool2d",)),
    OpInfo("adaptive_avg_pool2d_1", lambda x: F.adaptive_avg_pool2d(x, 1),
           inputs(normal(2, 3, 4, 4)), ("Sum", "Mul")),
    OpInfo("adaptive_avg_pool2d_2", lambda x: F.adaptive_avg_pool2d(x, 2),
           inputs(normal(2, 3, 4, 6)), ("AvgPool2d",)),
    OpInfo("batch_norm_train_4d",
           lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
           inputs(normal(4, 3, 3, 3), normal(3), normal(3)), ("BatchNorm",)),
    OpInfo("batch_norm_train_2d_running_stats",
           lambda x, w, b: F.batch_norm(x, mr.zeros(3, dtype=mr.float64, device=x.device),
                                        mr.ones(3, dtype=mr.float64, device=x.device), w, b,
                                        training=True),
           inputs(normal(6, 3), normal(3), normal(3)), ("BatchNorm",)),
    OpInfo("batch_norm_eval",
           lambda x, w, b: F.batch_norm(
               x, mr.tensor([0.1, -0.2, 0.3], dtype=mr.float64, device=x.device),
               mr.tensor([0.5, 1.5, 2.0], dtype=mr.float64, device=x.device), w, b,
               training=False),
           inputs(normal(4, 3, 2, 2), normal(3), normal(3)), ("BatchNorm",)),
    OpInfo("batch_norm_no_affine",
           lambda x: F.batch_norm(x, None, None, training=True), inputs(normal(5, 2, 3)),
           ("BatchNorm",)),
    # ---------------------------------------------------------------- losses
    OpInfo("cross_entropy", lambda x: F.cross_entropy(x, _TARGET), inputs(normal(6, 5)),
           ("CrossEntropy",)),
    OpInfo("cross_entropy_sum_smoothing",
           lambda x: F.cross_entropy(x, _TARGET, reduction="sum", label_smoothing=0.2),
           inputs(normal(6, 5)), ("CrossEntropy",)),
    OpInfo("cross_entropy_none", lambda x: F.cross_entropy(x, _TARGET, reduction="none"),
           inputs(normal(6, 5)), ("CrossEntropy",)),
    OpInfo("cross_entropy_spatial", lambda x: F.cross_entropy(x, _SPATIAL_TARGET),
           inputs(normal(2, 3, 4, 5)), ("CrossEntropy", "Permute", "Reshape")),
    OpInfo("cross_entropy_ignore_index_smoothing",
           lambda x: F.cross_entropy(x, _IGNORED, label_smoothing=0.3), inputs(normal(6, 5)),
           ("CrossEntropy",)),
    OpInfo("cross_entropy_ignore_index_none",
           lambda x: F.cross_entropy(x, _IGNORED, reduction="none"), inputs(normal(6, 5)),
           ("CrossEntropy",)),
    OpInfo("cross_entropy_weight", lambda x: F.cross_entropy(x, _TARGET, weight=_weight(x)),
           inputs(normal(6, 5)), ("LogSoftmax", "GetItem", "Neg", "Mul", "Sum")),
    OpInfo("cross_entropy_weight_smoothing_ignore_index",
           lambda x: F.cross_entropy(x, _IGNORED, weight=_weight(x), label_smoothing=0.2),
           inputs(normal(6, 5)), ("LogSoftmax", "GetItem", "Mul", "Sum", "Add")),
    OpInfo("cross_entropy_weight_smoothing_none",
           lambda x: F.cross_entropy(x, _IGNORED, weight=_weight(x), label_smoothing=0.2,
                                     reduction="none"),
           inputs(normal(6, 5)), ("LogSoftmax", "GetItem", "Mul", "Sum", "Add")),
    OpInfo("cross_entropy_spatial_weight_ignore_index",
           lambda x: F.cross_entropy(x, _SPATIAL_IGNORED, weight=_weight(x, 3), ignore_index=7,
                                     label_smoothing=0.1, reduction="sum"),
           inputs(normal(2, 3, 4, 5)), ("LogSoftmax", "Permute", "Reshape")),
    OpInfo("nll_loss", lambda x: F.nll_loss(x, _TARGET), inputs(normal(6, 5)),
           ("GetItem", "Neg")),
    OpInfo("nll_loss_weight_ignore_index",
           lambda x: F.nll_loss(x, _IGNORED, weight=_weight(x)), inputs(normal(6, 5)),
           ("GetItem", "Neg", "Mul")),
    OpInfo("nll_loss_spatial_ignore_index",
           lambda x: F.nll_loss(x, _SPATIAL_IGNORED, ignore_index=7),
           inputs(normal(2, 3, 4, 5)), ("GetItem", "Permute", "Reshape")),
    OpInfo("nll_loss_spatial_weight_none",
           lambda x: F.nll_loss(x, _SPATIAL_TARGET, weight=_weight(x, 3), reduction="none"),
           inputs(normal(2, 3, 4, 5)), ("GetItem", "Permute", "Reshape")),
    OpInfo("mse_loss", F.mse_loss, inputs(normal(3, 4), normal(3, 4)), ("Sub", "Mul")),
    # ---------------------------------------------------------------- CPU fast path
    # channel-major padded grids (minires.ops.channel_major): every geometry of the fast
    # convolution, inputs and gradients arriving on grids (a chain of two fast ops), and
    # the fused BatchNorm (+ residual) (+ ReLU) in training and evaluation
    OpInfo("fast_conv2d_same_3x3_bias", lambda x, w, b: fast_conv.conv2d(x, w, b, padding=1),
           inputs(normal(2, 3, 5, 4), normal(4, 3, 3, 3), normal(4)), ("GridConv2d",)),
    OpInfo("fast_conv2d_same_1x1", lambda x, w: fast_conv.conv2d(x, w),
           inputs(normal(2, 3, 4, 5), normal(2, 3, 1, 1)), ("GridConv2d",)),
    OpInfo("fast_conv2d_stride2_3x3_odd_size",
           lambda x, w: fast_conv.conv2d(x, w, stride=2, padding=1),
           inputs(normal(2, 2, 7, 6), normal(3, 2, 3, 3)), ("GridConv2d",)),
    OpInfo("fast_conv2d_stride2_1x1_bias", lambda x, w, b: fast_conv.conv2d(x, w, b, stride=2),
           inputs(normal(2, 3, 6, 5), normal(2, 3, 1, 1), normal(2)), ("GridConv2d",)),
    OpInfo("fast_conv2d_stride1_2x2_pad1", lambda x, w: fast_conv.conv2d(x, w, padding=1),
           inputs(normal(2, 2, 4, 3), normal(3, 2, 2, 2)), ("GridConv2d",)),
    OpInfo("fast_conv2d_chain_on_grids",
           lambda x, w1, w2: fast_conv.conv2d(fast_conv.conv2d(x, w1, padding=1), w2,
                                              stride=2, padding=1),
           inputs(normal(2, 2, 6, 6), normal(3, 2, 3, 3), normal(2, 3, 3, 3)), ("GridConv2d",)),
    OpInfo("batch_norm_act_train_residual_relu",
           lambda x, w, b, r: fused_norm.batch_norm_act(x, None, None, w, b, True,
                                                        residual=r),
           inputs(normal(3, 2, 4, 3), normal(2), normal(2), normal(3, 2, 4, 3)),
           ("BatchNormAct",)),
    OpInfo("batch_norm_act_train_running_stats_no_relu",
           lambda x, w, b: fused_norm.batch_norm_act(
               x, mr.zeros(3, dtype=mr.float64, device=x.device),
               mr.ones(3, dtype=mr.float64, device=x.device), w, b, True, relu=False),
           inputs(normal(2, 3, 3, 4), normal(3), normal(3)), ("BatchNormAct",)),
    OpInfo("batch_norm_act_eval_relu",
           lambda x, w, b: fused_norm.batch_norm_act(
               x, mr.tensor([0.1, -0.2], dtype=mr.float64, device=x.device),
               mr.tensor([0.5, 1.5], dtype=mr.float64, device=x.device), w, b, False),
           inputs(normal(3, 2, 3, 3), normal(2), normal(2)), ("BatchNormAct",)),
    OpInfo("batch_norm_act_between_fast_convs",
           lambda x, w1, b, w2: fast_conv.conv2d(fused_norm.batch_norm_act(
               fast_conv.conv2d(x, w1, padding=1), None, None, None, b, True,
               residual=x), w2, padding=1),
           inputs(normal(2, 2, 4, 4), normal(2, 2, 3, 3), normal(2), normal(2, 2, 3, 3)),
           ("GridConv2d", "BatchNormAct")),
]

# ---------------------------------------------------------------- data parallelism
# SyncBatchNorm in a world of one process, where its collectives are the identity;
# tests/test_distributed_mpi.py checks its backward across 2 ranks.
OPS += [
    OpInfo("sync_batch_norm_world_of_one",
           lambda x, w, b: mr.distributed.sync_batch_norm(x, None, None, w, b),
           inputs(normal(4, 3, 3, 2), normal(3), normal(3)), ("SyncBatchNormFunction",)),
]
