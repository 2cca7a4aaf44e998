"""scripts/gpu_acceptance.py runs end to end: on a GPU for real, here with ``--quick`` on
whatever ``cupy`` is (the stand-in in CI), writing its one report file. Its planning
arithmetic (epochs that fit the time left, the expected accuracy) is checked on its own."""

import importlib.util
import os
import subprocess
import sys

import pytest

import minires as mr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load():
    spec = importlib.util.spec_from_file_location(
        "gpu_acceptance", os.path.join(ROOT, "scripts", "gpu_acceptance.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_epochs_fit_the_time_left_and_expectations_rise_with_them():
    acceptance = load()
    epochs, epoch_s = acceptance.plan_epochs(300.0, step_ms=40.0)
    assert 1 <= epochs and 25 + epochs * epoch_s <= 300 < 25 + (epochs + 1) * epoch_s
    assert acceptance.plan_epochs(10.0, step_ms=40.0)[0] == 0
    assert acceptance.plan_epochs(10_000.0, step_ms=1.0)[0] == 30  # capped
    expected = [acceptance.expected_accuracy(e) for e in (1, 3, 5, 10, 20, 40)]
    assert expected == sorted(expected) and acceptance.expected_accuracy(0) is None


def test_without_cuda_every_step_fails_and_the_report_says_why(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)  # no stand-in on the path
    env.pop("MINIRES_CUPY_STANDIN", None)
    code = ("import sys; sys.modules['cupy'] = None\n"
            "import runpy; sys.argv = ['gpu_acceptance.py', '--out', sys.argv[1], '--quick']\n"
            "runpy.run_path('scripts/gpu_acceptance.py', run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 1, done.stdout + done.stderr
    report = (tmp_path / "gpu_acceptance.md").read_text()
    assert "| CUDA usable | FAIL |" in report and "CuPy is not installed" in report
    assert report.count("not run: CUDA is not usable") == 4


@pytest.mark.cuda
def test_quick_acceptance_run_passes_every_step_and_writes_one_report(tmp_path):
    if not mr.cuda.is_available():
        pytest.skip("no CUDA GPU (or CuPy) available")
    done = subprocess.run([sys.executable, "scripts/gpu_acceptance.py", "--quick", "--out",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    report = (tmp_path / "gpu_acceptance.md").read_text()
    assert done.returncode == 0, report
    for step in ("CUDA usable", "selftest", "pytest -m cuda", "benchmark against PyTorch",
                 "ResNet-20, CIFAR-10, one-cycle"):
        assert f"| {step} | PASS |" in report, report
    assert "5 passed, 0 failed" in report
    assert (tmp_path / "train" / "metrics.jsonl").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu_acceptance.md", "train"]
