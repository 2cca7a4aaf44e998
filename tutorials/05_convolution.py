# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Convolution: from six loops to im2col and col2im
#
# **What you will build.** A 2-D convolution four times: as six nested loops (the
# definition), as one matrix multiply over a patch matrix built by `im2col` with loops,
# then with a strided *view* and no loop over pixels, and finally with its backward
# pass, where `col2im` sends each patch's gradient back to the pixels it came from. You
# will wrap it in a `Function`, prove it with `mr.gradcheck`, compare it with
# `F.conv2d`, and time all versions.
#
# **Which minires file it re-derives.** `minires/ops/conv.py`: `im2col`, `col2im` and
# the `Conv2d` Function, line for line (same layouts, same names).

# %%
import time

import _common  # fast mode, figures, and `import minires` from a source checkout
import matplotlib.pyplot as plt
import numpy as np

import minires as mr
import minires.nn.functional as F
from minires.autograd import Function
from minires.data import CIFAR10
from minires.ops import conv as minires_conv

mr.manual_seed(0)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. The definition
#
# A convolution layer has `F` filters, each of shape `(C, KH, KW)`: it spans all `C`
# input channels and a small `KH × KW` window. Filter `f` slides over the image (with
# a `stride`, after zero-`padding` the border), and at each position takes the dot
# product of its weights with the window below it:
#
# `y[n, f, oh, ow] = b[f] + Σ_c Σ_i Σ_j x_padded[n, c, oh·S + i, ow·S + j] · w[f, c, i, j]`
#
# (Strictly this is a cross-correlation: the kernel is not flipped. Every deep-learning
# framework calls it convolution anyway.) The output has
# `OH = (H + 2P - KH) // S + 1` rows, and likewise `OW` columns.
#
# Written as loops, with the channel sum done as one dot product, that is six loops:


# %%
def output_size(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


def conv2d_loops(x, w, b, stride=1, padding=0):
    N, C, H, W = x.shape
    F_, _, KH, KW = w.shape
    OH, OW = output_size(H, KH, stride, padding), output_size(W, KW, stride, padding)
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    y = np.zeros((N, F_, OH, OW), dtype=x.dtype)
    for n in range(N):
        for f in range(F_):
            for oh in range(OH):
                for ow in range(OW):
                    total = b[f]
                    for i in range(KH):
                        for j in range(KW):
                            # all C channels at once: x[n, :, row, col] . w[f, :, i, j]
                            total += xp[n, :, oh * stride + i, ow * stride + j] @ w[f, :, i, j]
                    y[n, f, oh, ow] = total
    return y


x = rng.standard_normal((2, 3, 7, 7)).astype(np.float32)
w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
b = rng.standard_normal(4).astype(np.float32)
y_loops = conv2d_loops(x, w, b, stride=2, padding=1)
y_ref = F.conv2d(mr.tensor(x), mr.tensor(w), mr.tensor(b), stride=2, padding=1).data
print("output shape", y_loops.shape, "| max |loops - F.conv2d| =", np.abs(y_loops - y_ref).max())

# %% [markdown]
# A filter is a pattern detector. Two hand-made 3×3 filters (Sobel filters, which
# respond to horizontal and vertical changes of brightness) applied to a CIFAR-10
# image show what one layer of a network computes; a trained network *learns* its
# filters instead.

# %%
image = CIFAR10(sample=True).data[7].astype(np.float32).mean(axis=0) / 255  # grey (32, 32)
sobel = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=np.float32)
filters = np.stack([sobel, sobel.T])[:, None]  # (2, 1, 3, 3): horizontal, vertical edges
edges = conv2d_loops(image[None, None], filters, np.zeros(2, np.float32), padding=1)[0]
fig, axes = plt.subplots(1, 3, figsize=(8, 2.8))
for ax, img, title in zip(axes, [image, edges[0], edges[1]],
                          ["image", "filter 1: horizontal edges", "filter 2: vertical edges"]):
    ax.imshow(img, cmap="gray")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
_common.show(fig, "05_sobel")

# %% [markdown]
# ## 2. im2col: a convolution is a matrix multiply
#
# Python loops over pixels are slow: every iteration does a tiny amount of work. The
# trick that made convolutions fast on CPUs and GPUs alike: copy every window the
# filter visits into one column of a big matrix, the **patch matrix** `col`. Row
# `(c, i, j)` of `col` holds pixel `(i, j)` of channel `c` of each window, so a filter
# flattened to a row, `w.reshape(F, C·KH·KW)`, dotted with column `(n, oh, ow)` is
# exactly `y[n, f, oh, ow]`. All filters at all positions: **one matrix multiply**,
# which BLAS runs close to the machine's peak speed.
#
# Shapes: `col` is `(C·KH·KW, N·OH·OW)`; `w2 @ col` is `(F, N·OH·OW)`. Here is
# im2col with loops over output positions (the copying is slow, the multiply is not):


# %%
def im2col_loops(x, KH, KW, stride, padding):
    N, C, H, W = x.shape
    OH, OW = output_size(H, KH, stride, padding), output_size(W, KW, stride, padding)
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    col = np.empty((C * KH * KW, N * OH * OW), dtype=x.dtype)
    for n in range(N):
        for oh in range(OH):
            for ow in range(OW):
                window = xp[n, :, oh * stride:oh * stride + KH, ow * stride:ow * stride + KW]
                col[:, (n * OH + oh) * OW + ow] = window.reshape(-1)  # rows (c, i, j)
    return col


def conv2d_im2col(x, w, b, stride=1, padding=0, im2col=im2col_loops):
    N, C, H, W = x.shape
    F_, _, KH, KW = w.shape
    OH, OW = output_size(H, KH, stride, padding), output_size(W, KW, stride, padding)
    col = im2col(x, KH, KW, stride, padding)  # (C*KH*KW, N*OH*OW)
    y = w.reshape(F_, -1) @ col + b[:, None]  # (F, N*OH*OW)
    return y.reshape(F_, N, OH, OW).transpose(1, 0, 2, 3)  # (N, F, OH, OW)


print("max |im2col - loops| =",
      np.abs(conv2d_im2col(x, w, b, stride=2, padding=1) - y_loops).max())

# %% [markdown]
# What does the patch matrix look like? For a 1-channel 4×4 image holding the numbers
# 0 to 15 and a 3×3 kernel there are 2×2 windows, so four columns, one per window.
# Neighbouring columns share most of their pixels: the four middle pixels appear in all
# four columns. In a larger image a pixel appears in up to `KH·KW` = nine columns, so
# im2col trades memory (up to `KH·KW` times the input) for speed.

# %%
tiny = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
tiny_col = im2col_loops(tiny, 3, 3, stride=1, padding=0)
fig, (ax_img, ax_col) = plt.subplots(1, 2, figsize=(8, 3.5),
                                     gridspec_kw={"width_ratios": [1, 1.3]})
ax_img.imshow(tiny[0, 0], cmap="viridis")
for (r, c), v in np.ndenumerate(tiny[0, 0]):
    ax_img.text(c, r, int(v), ha="center", va="center", color="w")
ax_img.set(title="image (4×4)", xticks=range(4), yticks=range(4))
ax_col.imshow(tiny_col, cmap="viridis", aspect="auto")
for (r, c), v in np.ndenumerate(tiny_col):
    ax_col.text(c, r, int(v), ha="center", va="center", color="w", fontsize=8)
ax_col.set(title="im2col: one column per output pixel", xlabel="output position (oh, ow)",
           ylabel="kernel offset (i, j)")
_common.show(fig, "05_im2col_matrix")
print(tiny_col.astype(int))
copies = np.bincount(tiny_col.astype(int).ravel(), minlength=16).reshape(4, 4)
print(f"columns each pixel appears in (most: {copies.max()} of {tiny_col.shape[1]}):")
print(copies)

# %% [markdown]
# ## 3. im2col without a loop: a strided view
#
# A NumPy array is a block of memory plus *strides*: how many bytes to step for each
# index. `x.strides` for a `(N, C, H, W)` float32 array is
# `(C·H·W·4, H·W·4, W·4, 4)`. A view with six axes `(C, KH, KW, N, OH, OW)` whose
# element `[c, i, j, n, oh, ow]` is `x[n, c, oh·S + i, ow·S + j]` needs no copying at
# all, just the right strides: stepping `i` moves one row (`sH`), stepping `oh` moves
# `S` rows (`sH·S`), and so on. `as_strided` builds that view; one `reshape` then
# copies it into the patch matrix. This is `im2col` in `minires/ops/conv.py`.


# %%
def im2col_strided(x, KH, KW, stride, padding):
    N, C, H, W = x.shape
    OH, OW = output_size(H, KH, stride, padding), output_size(W, KW, stride, padding)
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    sN, sC, sH, sW = x.strides
    # a view, no copy: patches[c, i, j, n, oh, ow] = x[n, c, oh*S + i, ow*S + j]
    patches = np.lib.stride_tricks.as_strided(
        x, (C, KH, KW, N, OH, OW), (sC, sH, sW, sN, sH * stride, sW * stride))
    return patches.reshape(C * KH * KW, N * OH * OW)  # the one copy


col_loops = im2col_loops(x, 3, 3, 2, 1)
col_strided = im2col_strided(x, 3, 3, 2, 1)
col_minires = minires_conv.im2col(np, x, 3, 3, (2, 2), (1, 1))
print("strided == loops:", np.array_equal(col_strided, col_loops),
      "| strided == minires.ops.conv.im2col:", np.array_equal(col_strided, col_minires))

# %% [markdown]
# `as_strided` does no bounds checking: wrong strides read memory outside the array
# without an error. That is why the strided version is tested against the loop version
# here, and in minires against slow loop references (`tests/test_loop_reference.py`).
#
# ## 4. The backward pass, and col2im
#
# With `y2 = w2 @ col` (the output as an `(F, N·OH·OW)` matrix), tutorial 02's matrix
# multiply rule gives the two gradients at once:
#
# * `gw = gy2 @ col.T`, reshaped to `(F, C, KH, KW)`: each weight's gradient sums
#   over every position where it was used;
# * `gcol = w2.T @ gy2`: the gradient of every entry of the patch matrix;
# * `gb = gy2.sum(axis=1)`.
#
# But `col` is not the input: each pixel was *copied* into up to `KH·KW` columns. So
# (tutorial 01's `+=` once more) the pixel's gradient is the **sum** of the gradients
# of all its copies. `col2im` undoes im2col by adding each column back onto the
# window it came from:


# %%
def col2im_loops(col, x_shape, KH, KW, stride, padding):
    N, C, H, W = x_shape
    OH, OW = output_size(H, KH, stride, padding), output_size(W, KW, stride, padding)
    gx = np.zeros((N, C, H + 2 * padding, W + 2 * padding), dtype=col.dtype)
    for n in range(N):
        for oh in range(OH):
            for ow in range(OW):
                patch = col[:, (n * OH + oh) * OW + ow].reshape(C, KH, KW)
                gx[n, :, oh * stride:oh * stride + KH, ow * stride:ow * stride + KW] += patch
    return gx[:, :, padding:padding + H, padding:padding + W]  # drop the padding


# %% [markdown]
# minires vectorises this the other way round: it loops over the `KH·KW` kernel offsets
# only (9 iterations for a 3×3 kernel, whatever the image size), and each iteration
# adds one strided slab covering every image, channel and output pixel:


# %%
def col2im_vectorised(col, x_shape, KH, KW, stride, padding):
    N, C, H, W = x_shape
    OH, OW = output_size(H, KH, stride, padding), output_size(W, KW, stride, padding)
    cols = col.reshape(C, KH, KW, N, OH, OW)
    gx = np.zeros((N, C, H + 2 * padding, W + 2 * padding), dtype=col.dtype)
    for i in range(KH):
        for j in range(KW):
            # offset (i, j) of the window at (oh, ow) is pixel (oh*S + i, ow*S + j)
            gx[:, :, i:i + stride * OH:stride, j:j + stride * OW:stride] += \
                cols[:, i, j].transpose(1, 0, 2, 3)  # (N, C, OH, OW)
    return gx[:, :, padding:padding + H, padding:padding + W]


gcol = rng.standard_normal(col_loops.shape).astype(np.float32)
a = col2im_loops(gcol, x.shape, 3, 3, 2, 1)
c = col2im_vectorised(gcol, x.shape, 3, 3, 2, 1)
m = minires_conv.col2im(np, gcol, x.shape, 3, 3, (2, 2), (1, 1))
print("col2im: vectorised vs loops", np.abs(a - c).max(), "| minires vs loops", np.abs(a - m).max())

# %% [markdown]
# A neat way to see that col2im is *the* right backward for im2col: im2col is a linear
# map `A` (copying is linear), and the backward of a linear map is its transpose `Aᵀ`.
# A map and its transpose satisfy `<A x, c> = <x, Aᵀ c>` for every `x` and `c`. Check it
# in float64:

# %%
x64 = rng.standard_normal((2, 3, 7, 7))
c64 = rng.standard_normal((27, 2 * 4 * 4))
lhs = (im2col_strided(x64, 3, 3, 2, 1) * c64).sum()
rhs = (x64 * col2im_vectorised(c64, x64.shape, 3, 3, 2, 1)).sum()
print(f"<im2col(x), c> = {lhs:.12f}\n<x, col2im(c)> = {rhs:.12f}")

# %% [markdown]
# ## 5. A complete Conv2d Function
#
# Forward saves the patch matrix (rather than recomputing it in backward: memory for
# speed, the same choice minires makes) and the weight.


# %%
class MyConv2d(Function):
    @staticmethod
    def forward(ctx, x, w, b, *, stride, padding):
        N, C, H, W = x.shape
        F_, _, KH, KW = w.shape
        OH, OW = output_size(H, KH, stride, padding), output_size(W, KW, stride, padding)
        col = im2col_strided(x, KH, KW, stride, padding)  # (C*KH*KW, N*OH*OW)
        y = w.reshape(F_, -1) @ col + b[:, None]  # (F, N*OH*OW)
        ctx.save_for_backward(col, w)
        ctx.x_shape, ctx.stride, ctx.padding = x.shape, stride, padding
        return y.reshape(F_, N, OH, OW).transpose(1, 0, 2, 3)  # (N, F, OH, OW)

    @staticmethod
    def backward(ctx, gy):
        # y2 = w2 @ col + b  =>  gw = gy2 @ col^T, gcol = w2^T @ gy2, gb = sum of gy2,
        #                        gx = col2im(gcol)
        col, w = ctx.saved_tensors
        F_, C, KH, KW = w.shape
        gy2 = gy.transpose(1, 0, 2, 3).reshape(F_, -1)  # (F, N*OH*OW)
        gw = (gy2 @ col.T).reshape(w.shape)  # (F, C, KH, KW)
        gcol = w.reshape(F_, -1).T @ gy2  # (C*KH*KW, N*OH*OW)
        gx = col2im_vectorised(gcol, ctx.x_shape, KH, KW, ctx.stride, ctx.padding)
        return gx, gw, gy2.sum(axis=1)


def my_conv2d(x, w, b, stride=1, padding=0):
    return MyConv2d.apply(x, w, b, stride=stride, padding=padding)


def t64(*shape):
    return mr.tensor(rng.standard_normal(shape), dtype=mr.float64, requires_grad=True)


for stride, padding in [(1, 0), (1, 1), (2, 1)]:
    ok = mr.gradcheck(lambda x, w, b, s=stride, p=padding: my_conv2d(x, w, b, s, p),
                      [t64(2, 3, 6, 6), t64(4, 3, 3, 3), t64(4)])
    print(f"gradcheck MyConv2d stride={stride} padding={padding}: {ok}")

# the same values and gradients as minires's conv2d, in float32 on a bigger input (equal
# up to float32 rounding: the sums may run in a different order)
xs, ws, bs = mr.randn(4, 3, 16, 16), mr.randn(8, 3, 3, 3), mr.randn(8)
gy = rng.standard_normal((4, 8, 16, 16)).astype(np.float32)  # a random upstream gradient
grads = []
for conv in (my_conv2d, F.conv2d):
    leaves = [t.detach().requires_grad_() for t in (xs, ws, bs)]
    out = conv(*leaves, stride=1, padding=1)
    out.backward(gy)
    grads.append([out.data] + [t.grad.data for t in leaves])
for name, ours, theirs in zip(["y", "gx", "gw", "gb"], *grads):
    relative = np.abs(ours - theirs).max() / np.abs(theirs).max()
    print(f"{name}: max |MyConv2d - F.conv2d| / max |F.conv2d| = {relative:.1e}")

# %% [markdown]
# ## 6. How much faster?
#
# The same convolution, timed four ways. (The six loops run on a small batch only,
# and the chart uses a log scale: the gap is orders of magnitude.)


# %%
def timed(fn, repeat=3):
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


N = _common.pick(8, 2)
xb = rng.standard_normal((N, 16, 16, 16)).astype(np.float32)
wb = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
bb = np.zeros(16, np.float32)
timings = {
    "six loops": timed(lambda: conv2d_loops(xb, wb, bb, 1, 1), repeat=1),
    "im2col (loops) + matmul": timed(lambda: conv2d_im2col(xb, wb, bb, 1, 1)),
    "im2col (strided) + matmul": timed(lambda: conv2d_im2col(xb, wb, bb, 1, 1,
                                                             im2col=im2col_strided)),
    "minires F.conv2d": timed(lambda: F.conv2d(mr.tensor(xb), mr.tensor(wb), mr.tensor(bb),
                                               padding=1)),
}
for name, seconds in timings.items():
    print(f"{name:28s} {seconds * 1e3:9.2f} ms   ({timings['six loops'] / seconds:7.0f}x loops)")

fig, ax = plt.subplots(figsize=(6.5, 3))
ax.barh(list(timings), [s * 1e3 for s in timings.values()])
ax.set(xscale="log", xlabel="milliseconds (log scale)",
       title=f"conv2d forward, batch {N}×16×16×16, 16 filters 3×3")
ax.invert_yaxis()
_common.show(fig, "05_timings")

# %% [markdown]
# Open `minires/ops/conv.py` now: `im2col` is `im2col_strided` (with dilation as well),
# `col2im` is `col2im_vectorised` (accumulating in a channel-major buffer, which is
# faster on the CPU), and `Conv2d` is `MyConv2d`. On a GPU the same two helpers can be
# replaced by CUDA kernels (tutorial 09).
#
# ## Exercises
#
# 1. Add *dilation* `D` (the kernel's taps spaced `D` pixels apart) to `conv2d_loops`
#    and `im2col_strided`, and compare with `F.conv2d(..., dilation=2)`.
# 2. Write `col2im` with `=` instead of `+=`. Which settings of kernel size and stride
#    still pass `mr.gradcheck`, and which fail? Why?
# 3. How much memory does the patch matrix of ResNet-20's first layer take for a batch
#    of 128 CIFAR images (3 → 16 channels, 3×3, padding 1) in float32? And for a 3×3
#    layer with 64 channels on 8×8 feature maps?
# 4. A 1×1 convolution needs no im2col at all. Write it as a single matmul on a
#    reshaped input and check it against `F.conv2d`.
# 5. Implement `groups=C` (a depthwise convolution: each filter sees one channel). How
#    does the patch matrix change?
