"""The mutation suite: wrong backward passes a student might write must lose points,
and the grader's message must point at the mistake.

Each mutation edits one reference file in a copy of the package (the instructor's
minires, every backward written) and grades only the assignment it touches. The random
settings come from this run's seed (``MINIRES_SPEC_SEED`` repeats a run); every
mutation must fail whatever the seed, so the assertions name the seed.
"""

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

import minires
from minires.opspec import run_seed
from minires.tools.course import grade

PACKAGE = Path(minires.__file__).resolve().parent


@dataclass(frozen=True)
class Mutation:
    name: str
    assignment: str
    path: str  # inside the package
    old: str  # must occur exactly once in the reference file
    new: str
    message: str  # a regular expression every failure's message (or one, see below) matches
    every: bool = True  # True: every failed check's message matches; False: at least one
    not_message: str = ""  # no failure's message may match this
    failing_names: str = ""  # every failed check's name matches this (the mistake's setting)


BN_TRAINING = """        gx = xhat * (gw / M)
        gx += gb / M
        xp.subtract(gy, gx, out=gx)
        gx *= scale
"""

RELU = ("        # y = max(x, 0)  =>  gx = gy where x > 0, else 0\n"
        "        (mask,) = ctx.saved_tensors\n")

CE_TARGETS = """        g = p - s / C
        backend.scatter_add(xp, g,"""

MUTATIONS = [
    # --- assignment 02: matmul
    Mutation("matmul_missing_transpose", "02", "ops/basic.py",
             "ga = precision.matmul(gy2, xp.swapaxes(b2, -1, -2))",
             "ga = precision.matmul(gy2, b2)",
             r"matmul|shape|wrong gradient", every=True),
    Mutation("matmul_batch_mean_not_sum", "02", "ops/basic.py",
             "gb = sum_to(xp, gb, b2.shape).reshape(b.shape)",
             "gb = (gb.reshape(-1, *b2.shape[-2:]).mean(axis=0) if gb.ndim > 2 "
             "else gb).reshape(b.shape)",
             r"^wrong gradient: gradcheck failed for input 1", every=False),
    Mutation("matmul_dot_swapped", "02", "ops/basic.py",
             "return gy * b if ctx.needs_input_grad[0] else None, gy * a",
             "return gy * a if ctx.needs_input_grad[0] else None, gy * b",
             r"^wrong gradient: gradcheck failed for input 0", failing_names=r"\(4,\) @ \(4,\)"),
    # --- assignment 04: relu and cross_entropy
    Mutation("relu_zeroes_gy_in_place", "04", "ops/activation.py",
             RELU + "        return gy * mask\n",
             RELU + "        gy[~mask] = 0\n        return gy\n",
             r"^in-place write .*ReLU\.backward", not_message=r"^wrong gradient"),
    Mutation("relu_zeroes_gy_past_the_read_only_view", "04", "ops/activation.py",
             RELU + "        return gy * mask\n",
             RELU + "        gy.flags.writeable = True\n        gy[~mask] = 0\n        return gy\n",
             r"ReLU\.backward wrote into gy", every=False, not_message=r"^wrong gradient"),
    Mutation("relu_inverted_mask", "04", "ops/activation.py",
             RELU + "        return gy * mask\n", RELU + "        return gy * ~mask\n",
             r"^wrong gradient|relu gradient|differs"),
    Mutation("relu_ignores_gy", "04", "ops/activation.py",
             RELU + "        return gy * mask\n", RELU + "        return mask.astype(gy.dtype)\n",
             r"^wrong gradient|relu gradient|differs"),
    Mutation("cross_entropy_edits_saved_softmax", "04", "ops/loss.py", CE_TARGETS,
             "        g = p\n        g -= s / C\n        backend.scatter_add(xp, g,",
             r"^in-place write .*CrossEntropy\.backward", failing_names=r"^(?!.*relu)",
             every=False, not_message=r"^wrong gradient"),
    Mutation("cross_entropy_edits_saved_softmax_past_the_read_only_view", "04", "ops/loss.py",
             CE_TARGETS, "        g = p\n        g.flags.writeable = True\n        g -= s / C\n"
             "        backend.scatter_add(xp, g,",
             r"CrossEntropy\.backward changed an array that forward saved|second backward",
             every=False, not_message=r"^wrong gradient"),
    Mutation("cross_entropy_smoothing_ignored_under_mean", "04", "ops/loss.py",
             "        s = ctx.label_smoothing\n",
             "        s = 0.0 if ctx.reduction == 'mean' else ctx.label_smoothing\n",
             r"^wrong gradient|reduction='mean', label_smoothing=0\.\d",
             failing_names=r"reduction='mean', label_smoothing=0\.[1-9]|label_smoothing=0\.0[5-9]"
             r"|drawn: .*reduction='mean', label_smoothing=0\.\d*[1-9]|every reduction"),
    Mutation("cross_entropy_mean_over_every_row", "04", "ops/loss.py",
             "xp.maximum(counted.sum(), 1)", "xp.asarray(N)",
             r"^wrong gradient|reduction='mean'", every=False),
    Mutation("cross_entropy_none_ignores_gy", "04", "ops/loss.py",
             "return g * gy[:, None], None", "return g, None",
             r"^wrong gradient|reduction='none'", every=False),
    # --- assignment 05: conv2d, col2im, scatter_windows
    Mutation("col2im_vertical_dilation_for_horizontal", "05", "ops/conv.py",
             "lambda i, j: cols[:, i, j], dilation)",
             "lambda i, j: cols[:, i, j], (dilation[0], dilation[0]))",
             r"^wrong gradient: gradcheck failed for input 0|conv2d x\.grad vs loops|"
             r"^ValueError \(minires/ops/geometry\.py", failing_names=r"dilation \((1, 2|2, 1)\)"),
    Mutation("scatter_windows_vertical_stride_for_horizontal", "05", "ops/geometry.py",
             "columns = slice(j * DW, j * DW + SW * OW, SW)",
             "columns = slice(j * DW, j * DW + SH * OW, SH)",
             r"^wrong gradient: gradcheck failed for input 0|x\.grad vs loops|geometry\.py"),
    Mutation("scatter_windows_overwrites_overlaps", "05", "ops/geometry.py",
             "g[..., rows, columns] += s", "g[..., rows, columns] = s",
             r"^wrong gradient: gradcheck failed for input 0|x\.grad vs loops"),
    Mutation("conv2d_weight_gradient_transposed", "05", "ops/conv.py",
             "gw = precision.matmul(col, gy2.T).T.reshape(w.shape)",
             "gw = precision.matmul(col, gy2.T).reshape(w.shape)",
             r"^wrong gradient: gradcheck failed for input 1|w\.grad", every=False),
    Mutation("conv2d_bias_summed_over_the_wrong_axes", "05", "ops/conv.py",
             "gb = gy2.sum(axis=1) if", "gb = gy.sum(axis=(0, 1, 2)) if",
             r"Conv2d\.backward returned a gradient of shape|input 2|b\.grad", every=False),
    Mutation("conv2d_stride1_kernel_not_flipped", "05", "ops/conv.py",
             "w_flipped = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)",
             "w_flipped = w.transpose(1, 0, 2, 3)",
             r"^wrong gradient: gradcheck failed for input 0|x\.grad", every=False),
    # --- assignment 06: max_pool2d and batch_norm
    Mutation("max_pool_gradient_to_every_window_element", "06", "ops/pool.py",
             "lambda i, j: gy * (argmax == i * KW + j))", "lambda i, j: gy)",
             r"^wrong gradient|max_pool2d x\.grad", failing_names=r"max|windows|stride|drawn"),
    Mutation("max_pool_offset_decoded_with_the_wrong_width", "06", "ops/pool.py",
             "lambda i, j: gy * (argmax == i * KW + j))",
             "lambda i, j: gy * (argmax == i * KH + j))",
             r"^wrong gradient|max_pool2d x\.grad"),
    Mutation("max_pool_offset_decoded_transposed", "06", "ops/pool.py",
             "lambda i, j: gy * (argmax == i * KW + j))",
             "lambda i, j: gy * (argmax == j * KH + i))",
             r"^wrong gradient|max_pool2d x\.grad"),
    # not a backward: the forward's argmax keeps the last of equal maxima, which only
    # the tie test can see (the gradient checks avoid ties)
    Mutation("max_pool_argmax_takes_the_last_of_tied_maxima", "06", "ops/pool.py",
             "wins = slab > y\n", "wins = slab >= y\n",
             r"tied maxima", failing_names=r"tied"),
    Mutation("batch_norm_writes_gx_into_gy", "06", "ops/norm.py", BN_TRAINING,
             "        gx = gy\n        gx -= xhat * (gw / M) + gb / M\n        gx *= scale\n",
             r"^in-place write .*BatchNorm\.backward", failing_names=r"^(?!.*max_pool)",
             every=False, not_message=r"^wrong gradient|path through"),
    Mutation("batch_norm_wrong_count", "06", "ops/norm.py",
             "M = gy.size // gb.size  # values per channel", "M = gy.shape[0]",
             r"the count M is wrong", every=False, not_message=r"path through the batch mean"),
    Mutation("batch_norm_missing_the_path_through_the_mean", "06", "ops/norm.py",
             "        gx += gb / M\n", "",
             r"path through the batch mean is missing", every=False,
             not_message=r"count M is wrong"),
    Mutation("batch_norm_missing_the_path_through_the_variance", "06", "ops/norm.py",
             "        gx = xhat * (gw / M)\n", "        gx = xhat * 0\n",
             r"path through the batch variance is missing", every=False,
             not_message=r"path through the batch mean|count M"),
    Mutation("batch_norm_evaluation_formula_in_training", "06", "ops/norm.py",
             "    if training:\n        # gx = scale", "    if False:\n        # gx = scale",
             r"evaluation-mode formula", every=False),
    Mutation("batch_norm_weight_and_bias_gradients_swapped", "06", "ops/norm.py",
             "return gx, gw, gb, None, None", "return gx, gb, gw, None, None",
             r"^wrong gradient: gradcheck failed for input [12]|weight\.grad|bias\.grad",
             every=False),
]


@pytest.fixture(scope="module")
def reference_copy(tmp_path_factory):
    """The instructor's package, without the data samples the checks never read."""
    root = tmp_path_factory.mktemp("reference")
    shutil.copytree(PACKAGE, root / "minires",
                    ignore=shutil.ignore_patterns("__pycache__", "samples"))
    return root


def mutate(reference: Path, where: Path, m: Mutation) -> Path:
    shutil.copytree(reference, where)
    file = where / "minires" / m.path
    source = file.read_text(encoding="utf-8")
    assert source.count(m.old) == 1, f"{m.name}: the reference text is not in {m.path} once"
    file.write_text(source.replace(m.old, m.new), encoding="utf-8")
    return where


def test_the_mutations_are_distinct_and_cover_every_assignment():
    assert len({m.name for m in MUTATIONS}) == len(MUTATIONS) >= 20
    assert {m.assignment for m in MUTATIONS} == {"02", "04", "05", "06"}


@pytest.mark.parametrize("m", MUTATIONS, ids=[m.name for m in MUTATIONS])
def test_a_wrong_backward_loses_points_with_a_message_that_names_the_mistake(
        m, reference_copy, tmp_path):
    seed = run_seed()
    project = mutate(reference_copy, tmp_path / "project", m)
    report = grade([m.assignment], project, seed=seed)
    context = f"mutation {m.name}, seed {seed} (MINIRES_SPEC_SEED={seed} repeats it):\n" \
        + report.format()
    assert not report.error, context
    assert report.score < report.total, context
    failed = [r for r in report.results if not r.passed]
    matching = [r for r in failed if re.search(m.message, r.message)]
    if m.every:
        assert len(matching) == len(failed), context
    else:
        assert matching, context
    if m.not_message:
        assert not [r for r in failed if re.search(m.not_message, r.message)], context
    if m.failing_names:
        assert all(re.search(m.failing_names, r.name) for r in failed), context
    assert all(r.scored for r in report.results), context
