"""The assignment map: which backward passes each assignment asks a student to write.

Each assignment belongs to one tutorial in ``tutorials/`` and names the ops whose
backward pass the student copy leaves out. An op lists its *targets*: the methods and
array-level helpers whose bodies the student copy replaces with a stub (a helper is
removed too when the op's backward only calls it, otherwise the assignment would be a
one-line call; ``SCATTER_WINDOWS`` belongs to two ops). ``contract`` becomes a comment
in the stub: what the function receives and must return, never how to compute it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    path: str  # inside the package, e.g. "ops/activation.py"
    qualname: str  # "ReLU.backward" (a method) or "col2im" (a module-level function)
    contract: str


@dataclass(frozen=True)
class Op:
    name: str  # the name F.* users know
    targets: tuple


@dataclass(frozen=True)
class Assignment:
    number: str  # "05": the tutorial it comes with
    title: str
    tutorial: str  # file in tutorials/
    ops: tuple


_GY = "gy: d loss / d y, shaped like the output y; ctx: what forward saved"

# Every backward that reads windows (col2im, max and average pooling) ends in this
# helper; left in a copy, max pooling's backward would be one call, with AvgPool2d's
# backward beside it showing how. So the conv2d and the max_pool2d assignments both
# remove it (a copy with both asks for it once, in the lower-numbered assignment).
SCATTER_WINDOWS = Target(
    "ops/geometry.py", "scatter_windows",
    "slab(i, j), shaped (..., OH, OW), is what kernel offset (i, j) of every\n"
    "window received; add it to the input pixel each element was read from\n"
    "(windows may overlap: their contributions add up; padding gets nothing).\n"
    "Return (..., H, W), cropped to the unpadded input.")

OPS = {
    "matmul": Op("matmul", (
        Target("ops/basic.py", "Matmul.backward",
               f"{_GY}.\n"
               "Return (ga, gb), shaped like a and b. a and b may be 1-D, 2-D or batched,\n"
               "(..., M, K) @ (..., K, N) with broadcast batch axes (sum_to helps); a\n"
               "gradient may be None where ctx.needs_input_grad says it is not needed."),
    )),
    "relu": Op("relu", (
        Target("ops/activation.py", "ReLU.backward",
               f"{_GY} (the mask x > 0).\nReturn gx, shaped like x."),
    )),
    "cross_entropy": Op("cross_entropy", (
        Target("ops/loss.py", "CrossEntropy.backward",
               f"{_GY}:\n"
               "the softmax probabilities p (N, C) and the targets (N,). ctx.reduction is\n"
               "'mean', 'sum' or 'none' (then gy has shape (N,)); ctx.label_smoothing is s.\n"
               "A row whose target equals ctx.ignore_index gets no gradient, and 'mean'\n"
               "divides by the number of the other rows. Return (gx, None): gx shaped\n"
               "(N, C); the targets, the second input, get no gradient."),
    )),
    "conv2d": Op("conv2d", (
        Target("ops/conv.py", "Conv2d.backward",
               f"{_GY}:\n"
               "col (C*KH*KW, N*OH*OW) and w (F, C, KH, KW); also ctx.x_shape and\n"
               "ctx.geometry = (stride, padding, dilation). gy is (N, F, OH, OW).\n"
               "Return (gx, gw, gb); a gradient may be None where ctx.needs_input_grad\n"
               "says it is not needed (always for gb when the bias b is None)."),
        Target("ops/conv.py", "col2im",
               "The reverse of im2col: add every column of the patch-matrix gradient back\n"
               "to the pixels its patch was read from (overlapping patches add up).\n"
               "Return (N, C, H, W)."),
        SCATTER_WINDOWS,
    )),
    "max_pool2d": Op("max_pool2d", (
        Target("ops/pool.py", "MaxPool2d.backward",
               f"{_GY}:\n"
               "argmax (N, C, OH, OW), the flat offset i*KW + j of each window's maximum;\n"
               "also ctx.x_shape and ctx.geometry = (KH, KW, stride, padding).\n"
               "Return gx, shaped like x."),
        Target("ops/pool.py", "max_pool2d_backward",
               "Route each window's gradient gy (N, C, OH, OW) to the element that won its\n"
               "max; windows may overlap (their gradients add up), padding gets none.\n"
               "Return (N, C, H, W)."),
        SCATTER_WINDOWS,
    )),
    "batch_norm": Op("batch_norm", (
        Target("ops/norm.py", "BatchNorm.backward",
               f"{_GY}:\n"
               "xhat (the normalised input) and scale = w / sqrt(var + eps) (w = 1 without\n"
               "weight); also ctx.training and ctx.param_shape = (C,).\n"
               "Return (gx, gw, gb, None, None): gx shaped like x, gw and gb shaped (C,)\n"
               "(or None where ctx.needs_input_grad says so); the running statistics,\n"
               "the last two inputs, get no gradient."),
        Target("ops/norm.py", "batch_norm_backward",
               "In training mode every output of a channel depends on every input of that\n"
               "channel (through the batch mean and variance); in eval mode the running\n"
               "statistics are constants."),
    )),
}

ASSIGNMENTS = {
    "02": Assignment("02", "Tensors and Functions: matmul (the backward of F.linear)",
                     "02_tensors_and_functions.py", ("matmul",)),
    "04": Assignment("04", "An MLP on MNIST: ReLU and softmax cross-entropy",
                     "04_mlp_mnist.py", ("relu", "cross_entropy")),
    "05": Assignment("05", "Convolution: conv2d and col2im", "05_convolution.py",
                     ("conv2d",)),
    "06": Assignment("06", "Pooling and BatchNorm: max_pool2d and batch_norm",
                     "06_pooling_batchnorm.py", ("max_pool2d", "batch_norm")),
}


def get_assignment(number) -> Assignment:
    """``'5'``, ``'05'`` or ``5`` -> the assignment; a clear error for an unknown one."""
    key = str(number).strip().zfill(2)
    if key not in ASSIGNMENTS:
        raise KeyError(f"no assignment {number!r}: choose one of "
                       f"{', '.join(sorted(ASSIGNMENTS))} (or 'all')")
    return ASSIGNMENTS[key]


def select(numbers) -> list:
    """Assignment numbers (or 'all', or nothing: every assignment) -> Assignments."""
    if not numbers or "all" in numbers:
        return [ASSIGNMENTS[k] for k in sorted(ASSIGNMENTS)]
    chosen = {}
    for n in numbers:
        a = get_assignment(n)
        chosen[a.number] = a
    return [chosen[k] for k in sorted(chosen)]
