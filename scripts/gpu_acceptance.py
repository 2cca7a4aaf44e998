"""One command that proves minires on a GPU, inside nine minutes, into one report file.

    python scripts/gpu_acceptance.py --out DIR --data-root CIFAR_DIR [--budget 540]
    python scripts/gpu_acceptance.py --out DIR --quick     # tiny settings (CI, stand-in)

Run it from the repository (it needs tests/ and benchmarks/), after
``pip install ".[cuda12,test]"`` (and PyTorch with CUDA, for the comparison). It needs no
network: CIFAR-10's official binary files must already be in ``CIFAR_DIR`` (the folder
``cifar-10-batches-bin/`` or the files themselves). In order, each with PASS or FAIL
and its numbers:

1. CUDA is usable: CuPy finds the GPU, NVRTC compiles a kernel, cuBLAS multiplies.
2. ``minires selftest --device cuda``: gradient checks on the GPU, every
   kernel against its reference, NumPy against CuPy, TF32, a few training steps.
3. ``pytest -m cuda``: the test suite's GPU half (with PyTorch installed, the parity
   tests too; the tests of CuPy's rules check the stand-in used in CI against the
   real CuPy).
4. ``benchmarks/bench_gpu.py --count-launches``: ResNet-20 and ResNet-56 training steps,
   minires with its kernels and with the pure-CuPy references, against PyTorch.
5. ResNet-20 on CIFAR-10 with a one-cycle schedule, for as many epochs as the time left
   allows (estimated from the benchmark's step time), against an expected test
   accuracy for that many epochs. The expectation is an estimate, not a measurement:
   see ``EXPECTED_ACCURACY``.

The report is ``DIR/gpu_acceptance.md``; the training run writes ``DIR/train/``. The
exit status is 0 when every step passed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPORT = "gpu_acceptance.md"

# Expected CIFAR-10 test accuracy of ResNet-20 (0.27M parameters) after a one-cycle run
# of at least this many epochs (SGD, momentum 0.9, batch 128, max learning rate 0.2,
# weight decay 5e-4, random crop and flip). An ESTIMATE, not a measurement: short
# one-cycle schedules bring small ResNets close to their full-schedule accuracy (He et
# al. 2015 report 91.25% for ResNet-20 after 182 epochs; Smith & Topin 2017,
# "Super-convergence", and Page 2018, "How to train your ResNet", reach 92-94% in tens
# of epochs with larger networks), and the thresholds below are set a few points under
# what such runs reach, to catch a broken GPU path rather than to rank it.
EXPECTED_ACCURACY = [(20, 0.89), (10, 0.85), (5, 0.78), (3, 0.70), (1, 0.45)]
ONE_CYCLE = ["--schedule", "onecycle", "--lr", "0.2", "--weight-decay", "5e-4",
             "--momentum", "0.9", "--batch-size", "128"]
TRAIN_IMAGES, TEST_IMAGES, BATCH = 50_000, 10_000, 128


@dataclass
class Step:
    name: str
    status: str = "FAIL"  # PASS or FAIL
    numbers: str = ""
    seconds: float = 0.0
    command: str = ""
    output: str = ""
    details: dict = field(default_factory=dict)


def run(step: Step, command: list, timeout: float, env=None) -> subprocess.CompletedProcess:
    """Run ``command`` from the repository, keeping its output in the step."""
    step.command = " ".join(command)
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                              timeout=max(timeout, 1), env=env)
    except subprocess.TimeoutExpired as error:
        out = (error.stdout or b"") if isinstance(error.stdout, bytes) else error.stdout or ""
        step.output = (out.decode() if isinstance(out, bytes) else out)
        step.numbers = f"stopped after its {timeout:.0f} s budget"
        step.seconds = time.perf_counter() - start
        return subprocess.CompletedProcess(command, 124, step.output, "")
    step.seconds = time.perf_counter() - start
    step.output = done.stdout + (("\n" + done.stderr) if done.stderr.strip() else "")
    return done


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


# --------------------------------------------------------------------------- the steps


def check_cuda(step: Step) -> None:
    start = time.perf_counter()
    import minires as mr
    from minires import backend

    reason = mr.cuda.unavailable_reason()
    step.seconds = time.perf_counter() - start
    if reason is not None:
        step.numbers = reason
        return
    cupy = backend.cupy
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    step.details.update(gpu=name, cupy=cupy.__version__,
                        compute_capability=cupy.cuda.Device().compute_capability,
                        runtime=cupy.cuda.runtime.runtimeGetVersion(),
                        driver=cupy.cuda.runtime.driverGetVersion())
    step.status = "PASS"
    step.numbers = (f"{name}, compute capability {step.details['compute_capability']}; CuPy "
                    f"{cupy.__version__}, CUDA runtime {step.details['runtime']}, driver "
                    f"{step.details['driver']}; a kernel compiled (NVRTC) and a matmul ran "
                    "(cuBLAS)")


def selftest(step: Step, quick: bool, timeout: float) -> None:
    command = [sys.executable, "-m", "minires", "selftest", "--device", "cuda"]
    done = run(step, command + (["--quick"] if quick else []), timeout)
    summary = re.findall(r"^(\d+) passed, (\d+) failed, (\d+) skipped$", step.output, re.M)
    if summary:
        step.numbers = f"{summary[-1][0]} passed, {summary[-1][1]} failed, " \
                       f"{summary[-1][2]} skipped"
    step.status = "PASS" if done.returncode == 0 and summary else "FAIL"


def pytest_cuda(step: Step, quick: bool, timeout: float) -> None:
    command = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider",
               "--deselect", "tests/test_gpu_acceptance.py"]  # this command is running
    if quick:  # the rules of CuPy and the stand-in's machinery: seconds, not minutes
        command.append("tests/test_cupy_standin.py")
    done = run(step, command, timeout)
    summary = re.findall(r"^=*\s*(.*(?:passed|failed|error).*?)\s*=*$", step.output, re.M)
    step.numbers = summary[-1] if summary else step.numbers or "no pytest summary"
    step.status = "PASS" if done.returncode == 0 else "FAIL"


def benchmark(step: Step, quick: bool, timeout: float) -> None:
    command = [sys.executable, "benchmarks/bench_gpu.py", "--count-launches"]
    if quick:
        command += ["--models", "resnet20", "--batch-size", "8", "--repeats", "2",
                    "--warmup", "1"]
    done = run(step, command, timeout)
    rows = re.findall(r"^(resnet\d+)\s+(minires \(CUDA kernels\)|minires \(CuPy only\)|torch)"
                      r"\s+([\d.]+)\s+(\d+)", step.output, re.M)
    times = {(model, framework): float(ms) for model, framework, ms, _ in rows}
    step.details["step_ms"] = {f"{m} {f}": ms for (m, f), ms in times.items()}
    launches = re.findall(r"minires kernel launches per step: (\d+)", step.output)
    parts = []
    for model in dict.fromkeys(m for m, _ in times):
        cells = [f"{f.replace('minires ', '')} {times[(model, f)]:.1f} ms"
                 for f in ("minires (CUDA kernels)", "minires (CuPy only)", "torch")
                 if (model, f) in times]
        parts.append(f"{model}: " + ", ".join(cells))
    if launches:
        parts.append(f"minires kernel launches per step: {', '.join(launches)}")
    step.numbers = "; ".join(parts) or "no timings"
    expected_models = 1 if quick else 2
    step.status = "PASS" if done.returncode == 0 and \
        sum(f == "minires (CUDA kernels)" for _, f in times) == expected_models else "FAIL"


def expected_accuracy(epochs: int):
    for least, accuracy in EXPECTED_ACCURACY:
        if epochs >= least:
            return accuracy
    return None


def plan_epochs(seconds_left: float, step_ms) -> tuple:
    """Epochs that fit, from the benchmark's ResNet-20 step time (batch 128): a training
    epoch is 391 steps plus data handling, evaluation a forward pass of 10,000 images."""
    step_s = (step_ms or 60.0) / 1000  # no benchmark: assume a slow GPU
    epoch_s = 1.3 * math.ceil(TRAIN_IMAGES / BATCH) * step_s + 0.5 * (TEST_IMAGES / BATCH) * step_s
    startup_s = 25.0  # data loading, kernel compilation (CuPy caches it on disk)
    epochs = int((seconds_left - startup_s) // epoch_s)
    return max(0, min(epochs, 30)), epoch_s


def train(step: Step, quick: bool, data_root, seconds_left: float, step_ms, out: str) -> None:
    folder = os.path.join(out, "train")
    if quick:
        command = ["--dataset", "cifar10-sample", "--limit-train", "64", "--epochs", "1",
                   "--batch-size", "32"]
        epochs, expected = 1, None
    else:
        epochs, epoch_s = plan_epochs(seconds_left, step_ms)
        expected = expected_accuracy(epochs)
        step.details.update(planned_epochs=epochs, estimated_epoch_seconds=round(epoch_s, 1))
        if epochs < 1:
            step.numbers = (f"no time left for one epoch ({seconds_left:.0f} s left, an epoch "
                            f"estimated at {epoch_s:.0f} s)")
            return
        if data_root is None or not _has_cifar(data_root):
            step.numbers = (f"CIFAR-10 not found in --data-root {data_root!r} (expected the "
                            "official binary files, folder cifar-10-batches-bin/)")
            return
        command = ["--dataset", "cifar10", "--data-root", data_root, "--epochs", str(epochs),
                   *ONE_CYCLE]
    command = [sys.executable, "-m", "minires", "train", "--model", "resnet20", *command,
               "--device", "cuda", "--no-progress", "--out", folder]
    done = run(step, command, seconds_left - 5)
    history = _history(os.path.join(folder, "metrics.jsonl"))
    if history:
        last = history[-1]
        step.details.update(test_acc=last["test_acc"], epochs_done=len(history),
                            images_per_s=round(last["images_per_s"]))
        step.numbers = (f"{len(history)}/{epochs} epochs, test accuracy "
                        f"{100 * last['test_acc']:.2f}%, {last['images_per_s']:.0f} images/s "
                        "in training")
    if expected is not None:
        step.numbers += (f"; expected at least {100 * expected:.0f}% after {epochs} epochs "
                         "(an estimate, see EXPECTED_ACCURACY)")
    else:
        step.numbers += "; --quick: no accuracy expected, the run has to finish"
    finished = done.returncode == 0 and len(history) == epochs
    accurate = expected is None or (history and history[-1]["test_acc"] >= expected)
    step.status = "PASS" if finished and accurate else "FAIL"


def _has_cifar(root: str) -> bool:
    names = ["data_batch_1.bin", "test_batch.bin"]
    return any(all(os.path.exists(os.path.join(folder, n)) for n in names)
               for folder in (root, os.path.join(root, "cifar-10-batches-bin")))


def _history(path: str) -> list:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


# --------------------------------------------------------------------------- report


def write_report(out: str, steps: list, args, started: float) -> str:
    import minires

    total = time.perf_counter() - started
    lines = [
        "# minires GPU acceptance", "",
        f"- command: `python scripts/gpu_acceptance.py {' '.join(args.argv)}`",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}; "
        f"total {total:.0f} s of a {args.budget:.0f} s budget",
        f"- minires {minires.__version__}, Python {platform.python_version()}, "
        f"{platform.platform()}",
    ]
    if args.quick:
        lines.append("- `--quick`: tiny settings that prove the command runs; its numbers say "
                     "nothing about a GPU")
    lines += ["", "| step | result | seconds | numbers |", "|---|---|---|---|"]
    for s in steps:
        numbers = s.numbers.replace("|", "/").replace("\n", " ")
        lines.append(f"| {s.name} | {s.status} | {s.seconds:.0f} | {numbers} |")
    passed = sum(s.status == "PASS" for s in steps)
    lines += ["", f"{passed} passed, {len(steps) - passed} failed", ""]
    for s in steps:
        lines += [f"## {s.name}: {s.status}", ""]
        if s.command:
            lines += [f"`{s.command}`", ""]
        if s.details:
            lines += ["```json", json.dumps(s.details, indent=1, sort_keys=True), "```", ""]
        if s.output.strip():
            lines += ["```", tail(s.output, 60), "```", ""]
    path = os.path.join(out, REPORT)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines))
    os.replace(tmp, path)  # a report is never half written
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--out", required=True, help="folder for the report and the run")
    parser.add_argument("--data-root", help="folder holding CIFAR-10's binary files")
    parser.add_argument("--budget", type=float,
                        help="seconds for everything (default 540: nine minutes; with "
                        "--quick 3600, since the stand-in runs the kernels on one CPU core)")
    parser.add_argument("--quick", action="store_true", help="tiny settings (CI, stand-in)")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.budget is None:
        args.budget = 3600.0 if args.quick else 540.0
    started = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)

    def left() -> float:
        return args.budget - (time.perf_counter() - started)

    steps = [Step("CUDA usable"), Step("selftest"), Step("pytest -m cuda"),
             Step("benchmark against PyTorch"),
             Step("ResNet-20, CIFAR-10, one-cycle")]
    check_cuda(steps[0])
    if steps[0].status == "PASS":
        selftest(steps[1], args.quick, min(120, left()))
        write_report(args.out, steps, args, started)  # a report even if the run is cut
        pytest_cuda(steps[2], args.quick, min(240, left() - 150))
        write_report(args.out, steps, args, started)
        benchmark(steps[3], args.quick, min(150, left() - 60))
        write_report(args.out, steps, args, started)
        step_ms = steps[3].details.get("step_ms", {}).get("resnet20 minires (CUDA kernels)")
        train(steps[4], args.quick, args.data_root, left() - 10, step_ms, args.out)
    else:
        for s in steps[1:]:
            s.numbers = "not run: CUDA is not usable"
    path = write_report(args.out, steps, args, started)
    for s in steps:
        print(f"{s.status}  {s.name}: {s.numbers}")
    print(f"report: {path}")
    return 0 if all(s.status == "PASS" for s in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
