"""Every tutorial runs end to end as a plain script, in fast mode, on the CPU.

Each tutorial is a jupytext percent-format ``.py`` file: a notebook when opened with
Jupyter, a script for ``python``. Here each one runs in its own process with
``MINIRES_FAST=1`` (small data, few steps), and must exit cleanly and print its key
results. Figures go to a temporary folder (``MINIRES_TUTORIAL_OUT``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"

# What each tutorial must print: the results it exists to show.
EXPECTED = {
    "01_scalar_autograd.py": [
        "buggy engine:   d(a + a)/da = 1.0",
        "loss fell from",
        "minires and the Value engine agree on every gradient",
    ],
    "02_tensors_and_functions.py": [
        "MyMatmul vs minires matmul, max difference of ga: 0.0",
        "matches minires.ops.basic.sum_to",
        "AddWithoutSumTo.backward returned a gradient of shape (5, 3)",
        "fitted y =",
    ],
    "03_gradient_checking.py": [
        "-> passes: the bug is invisible",
        "-> fails: caught",
        "gradcheck caught 4 of 4 wrong backward passes",
        "conv2d (stride 2, padding 1)",
    ],
    "04_mlp_mnist.py": [
        "gradcheck: True",
        "bare-tensor MLP: test accuracy",
        "nn.Module MLP with momentum: test accuracy",
    ],
    "05_convolution.py": [
        "columns each pixel appears in (most: 4 of 4):",
        "strided == loops: True | strided == minires.ops.conv.im2col: True",
        "gradcheck MyConv2d stride=2 padding=1: True",
        "minires F.conv2d",
    ],
    "06_pooling_batchnorm.py": [
        "gradcheck MyMaxPool2d: True",
        "gradcheck MyBatchNorm: True",
        "eval  mode: image 0's logits differ between the two batches by up to 0.0000",
        "train mode, one class per batch",
    ],
    "07_residual_vanishing_gradient.py": [
        "inspect agrees with the hand-written hooks: True",
        "sigmoid + shortcuts",
        "the gradient still reaches x through the shortcut: True",
        "residual 20-layer tanh MLP",
    ],
    "08_resnet_cifar10.py": [
        "same outputs after copying the weights: max difference 0.0",
        "ResNet-20 after 1 epochs",
        "checkpoint.mr  exists: True",
        "resumable from epoch 1",
    ],
    "09_gpu_and_kernels.py": [
        "GPU: ",
        "the kernel's index arithmetic matches minires.ops.conv.im2col",
        "relu_backward_raw",  # the kernel source is shown with or without a GPU
    ],
    "10_fine_tuning.py": [
        "missing keys (left as initialised): ['head.weight', 'head.bias']",
        "features identical to the ones loaded by hand: True | same trainable parameters: True",
        "frozen BatchNorm running_mean unchanged: True",
        "task B, fine-tune everything",
    ],
    "11_data_parallel.py": [
        "average of the 2 shard gradients equals the big-batch gradient",
        "ring all-reduce == sum: True",
        "combined shard statistics equal the big batch's: mean True | variance True",
        "2-process run:",  # the comparison, or why it was skipped (no mpi4py/mpiexec)
    ],
    "12_pretrained_resnet.py": [
        "weights: ",  # torchvision's if they are in the cache, else the stand-in
        "of 122 tensors; the classifier head 'fc' (2 tensors) starts fresh",
        "fine-tuning: trains the head 'fc' only",
        "loaded 122 of 122 tensors, the classifier head 'fc' too",
        "parameter groups: [('head', 2, 0.01), ('backbone', 60, 0.001)]",
        "fine-tuned (two stages,",
    ],
}


def numbered_tutorials() -> list[str]:
    return sorted(p.name for p in TUTORIALS.glob("[0-9][0-9]_*.py"))


def test_every_tutorial_is_tested():
    assert numbered_tutorials() == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_tutorial_is_a_percent_notebook_with_exercises(name):
    text = (TUTORIALS / name).read_text()
    assert "format_name: percent" in text  # jupytext opens it as a notebook
    assert text.count("# %% [markdown]") >= 3
    assert "**What you will build.**" in text
    assert "## Exercises" in text
    assert re.search(r"minires/[a-z_/]+\.py", text), "names the minires file it re-derives"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_tutorial_runs_in_fast_mode(name, tmp_path):
    env = dict(os.environ, MINIRES_FAST="1", MPLBACKEND="Agg",
               MINIRES_TUTORIAL_OUT=str(tmp_path / "figures"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, str(TUTORIALS / name)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{name} failed:\n{output[-4000:]}"
    for text in EXPECTED[name]:
        assert text in result.stdout, f"{name} did not print {text!r}:\n{output[-4000:]}"
