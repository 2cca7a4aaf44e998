import os
import sys

# MINIRES_CUPY_STANDIN=1: `import cupy` gets the strict CuPy stand-in of tests/cupy_standin
# (NumPy underneath, CuPy's rules on top; docs/backend.md), so `pytest -m cuda` runs the
# GPU tests on machines without a GPU. It must be on sys.path before minires imports
# cupy, and in PYTHONPATH for the commands that tests start.
STANDIN = os.environ.get("MINIRES_CUPY_STANDIN", "0") not in ("", "0")
if STANDIN:
    _path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cupy_standin")
    if "cupy" in sys.modules and not getattr(sys.modules["cupy"], "__file__", "").startswith(
            _path):
        raise RuntimeError("MINIRES_CUPY_STANDIN=1, but the real cupy was imported first")
    sys.path.insert(0, _path)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [_path] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])

import pytest  # noqa: E402

import minires as mr  # noqa: E402

# The same test bodies run on every device; CUDA runs carry the `cuda` marker and are
# skipped where no GPU is present.
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]

# tests that need a real GPU, not the stand-in, and why
NEEDS_REAL_GPU = {
    "test_training_steps_never_make_the_host_wait_for_the_gpu":
        "times a real GPU's queue (a spinning kernel); on the stand-in "
        "tests/test_host_syncs.py counts the same host reads",
}


def pytest_report_header(config):
    from minires.opspec import run_seed

    return f"op spec samples drawn with seed {run_seed()} (MINIRES_SPEC_SEED={run_seed()} " \
        "draws them again)"


def pytest_collection_modifyitems(config, items):
    if not STANDIN:
        return
    for item in items:
        reason = NEEDS_REAL_GPU.get(item.name.split("[")[0])
        if reason:
            item.add_marker(pytest.mark.skip(reason=f"CuPy stand-in: {reason}"))


@pytest.fixture(params=DEVICES)
def device(request):
    if request.param == "cuda" and not mr.cuda.is_available():
        pytest.skip("no CUDA GPU (or CuPy) available")
    return request.param


@pytest.fixture(autouse=True)
def _seed():
    mr.manual_seed(0)


@pytest.fixture(autouse=True)
def _kernel_switch_is_restored():
    """A test that switches the CUDA kernels must put back what it found: switching them
    on in its cleanup would override MINIRES_KERNELS=0 for every later test."""
    from minires import backend

    before = backend.kernels_enabled()
    yield
    after = backend.kernels_enabled()
    if after != before:
        backend.use_kernels(before)
        pytest.fail(f"the test left mr.use_kernels at {after}, it found {before}: restore "
                    "the value that use_kernels returns", pytrace=False)
