"""Check a minires installation on a device: ``minires selftest --device cuda``.

The test suite is not installed with the package; this module runs the checks that
prove minires works on a new machine, above all on a GPU, from the op specs that ship
with it:

* gradient checks (float64, central differences, random upstream gradient) of every
  sample of the op specs (``minires.opspec``), fixed and drawn for this run (with
  ``--quick``, one per op), run on the device;
* every CUDA kernel against the pure-xp helper it replaces (the specs' kernel cases,
  ``minires.opspec.kernels``), float32 and float64; with ``--device cpu`` the kernels'
  own source is built for the CPU by a C++ compiler (``minires.cuda_kernels.host``), which
  checks their index arithmetic;
* NumPy against CuPy for the specs' ``devices`` samples (conv2d, max_pool2d,
  batch_norm, cross_entropy), forward and backward (GPU only);
* a float32 matmul in TF32 (``mr.set_float32_matmul_precision('high')``): its error must
  be the size of TF32's rounding, on tensor cores where the GPU has them;
* a few ResNet-20 training steps on one random batch: the loss must fall;
* a model saved from the device loads on the CPU and computes the same outputs.

It prints a table and exits with status 1 if any check failed. Asked for ``cuda`` on a
machine without CuPy or without a GPU, it says so and exits 0; with a GPU but without a
CUDA library that CuPy needs (NVRTC compiles the kernels, cuBLAS multiplies matrices), it
names the library and exits 1 before running any check.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy

from .. import backend
from ..precision import tf32_tensor_cores


@dataclass
class Result:
    check: str
    status: str  # PASS, FAIL or SKIP
    detail: str = ""
    seconds: float = 0.0


def _run(results: list, name: str, fn) -> None:
    """Run one check; a check returns a detail string, or raises to fail."""
    start = time.perf_counter()
    try:
        outcome = fn()
        status, detail = ("SKIP", outcome[5:].strip()) if isinstance(outcome, str) and \
            outcome.startswith("SKIP:") else ("PASS", outcome or "")
    except Exception as error:  # a failing check must not stop the others
        status, detail = "FAIL", f"{type(error).__name__}: {str(error).strip()}"
    results.append(Result(name, status, detail, time.perf_counter() - start))


# --------------------------------------------------------------------------- gradients


def _gradient_samples(quick: bool) -> list:
    """(spec, sample) to check: every gradient-check sample of the op specs, fixed and
    drawn for this run; with ``quick``, the first fixed one of each spec."""
    from ..opspec import samples

    chosen = samples(gradcheck=True)
    if quick:
        first = {}
        for spec, sample in chosen:
            first.setdefault(spec.name, (spec, sample))
        chosen = list(first.values())
    return chosen


def _gradient_check(device, spec, sample):
    import minires as mr

    arrays = sample.arrays()
    inputs = [mr.tensor(a, device=device, requires_grad=True) for a in arrays]
    mr.gradcheck(lambda *tensors: spec.run(sample, tensors, device), inputs)
    return f"{sum(a.size for a in arrays)} input elements, {backend.device_of(inputs[0].data)}"


# --------------------------------------------------------------------------- kernels


def _kernel_parity(device, helper):
    from ..cuda_kernels import KERNELS, _launch, host
    from ..opspec import kernels as parity

    cases = [c for c in parity.cases() if c.helper == helper]
    if device == "cuda":
        xp, where = backend.cupy, "GPU"
        if backend._kernels.get(helper) is not KERNELS[helper]:
            raise AssertionError(f"{helper}: kernel not registered with the dispatcher")
    else:
        if host.compiler() is None:
            return "SKIP: no C++ compiler to build the kernels for the CPU"
        xp, where = numpy, "CPU build of the CUDA source"
    saved = _launch.get_function
    if device != "cuda":
        _launch.get_function = host.function
    try:
        failures = [f"{c.id} {numpy.dtype(d).name}: {failure}"
                    for c in cases for d in parity.DTYPES
                    if (failure := parity.run_case(c, KERNELS[helper], xp, d))]
    finally:
        _launch.get_function = saved
    if failures:
        raise AssertionError("; ".join(failures))
    return f"{len(cases)} cases x float32/float64, {where}"


# --------------------------------------------------------------------------- devices


def _numpy_vs_device(spec, sample, devices=("cpu", "cuda")):
    """The same float32 call (a ``devices`` sample of an op spec) on the CPU and on the
    GPU: outputs and input gradients agree. (``devices=("cpu", "cpu")`` runs the
    comparison itself where there is no GPU.)"""
    import minires as mr

    arrays = [a.astype(numpy.float32) for a in sample.arrays()]
    upstream = None
    outputs = []
    for device in devices:
        inputs = [mr.tensor(a, device=device, requires_grad=True) for a in arrays]
        y = spec.run(sample, inputs, device)
        if upstream is None:
            upstream = numpy.random.default_rng(1).standard_normal(y.shape).astype(numpy.float32)
        y.backward(mr.tensor(upstream, device=device))
        outputs.append([backend.to_numpy(y.data)] + [backend.to_numpy(t.grad.data)
                                                     for t in inputs])
    worst = 0.0
    for k, (a, b) in enumerate(zip(*outputs)):
        what = "output" if k == 0 else f"gradient of input {k - 1}"
        numpy.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5,
                                      err_msg=f"{spec.name}: {what}, CuPy against NumPy")
        worst = max(worst, float(numpy.max(numpy.abs(a - b))))
    return f"forward and backward, float32, max |difference| {worst:.1e}"


# --------------------------------------------------------------------------- training


def _model_and_batch(device, batch: int):
    import minires as mr

    from ..models import get_model

    mr.manual_seed(0)
    rng = numpy.random.default_rng(0)
    model = get_model("resnet20", num_classes=10).to(device)
    x = mr.tensor(rng.standard_normal((batch, 3, 32, 32)).astype(numpy.float32),
                  device=device)
    y = mr.tensor(rng.integers(0, 10, batch), device=device)
    return model, x, y


def _training_smoke(device, quick: bool):
    import minires.nn.functional as F

    from ..optim import SGD

    batch, steps = (8, 4) if quick else (64, 10)
    model, x, y = _model_and_batch(device, batch)
    optimizer = SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(steps):  # fitting one fixed batch: the loss has to fall
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    if not all(numpy.isfinite(losses)):
        raise AssertionError(f"loss is not finite: {losses}")
    if not losses[-1] < losses[0]:
        raise AssertionError(f"loss did not fall over {steps} steps: {losses}")
    return f"resnet20, batch {batch}: loss {losses[0]:.3f} -> {losses[-1]:.3f} in {steps} steps"


def _save_load(device):
    import minires as mr

    from ..models import get_model

    model, x, _ = _model_and_batch(device, 4)
    model.eval()
    with mr.no_grad():
        expected = backend.to_numpy(model(x).data)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.mr")
        mr.save(model.state_dict(), path)
        state = mr.load(path)  # map_location='cpu': NumPy arrays
    for key, value in model.state_dict().items():
        data = value.data if hasattr(value, "data") else value
        loaded = state[key].data if hasattr(state[key], "data") else state[key]
        if backend.device_of(loaded) != "cpu":
            raise AssertionError(f"{key} did not load onto the CPU")
        numpy.testing.assert_array_equal(backend.to_numpy(loaded), backend.to_numpy(data),
                                         err_msg=key)
    cpu_model = get_model("resnet20", num_classes=10)
    cpu_model.load_state_dict(state)
    cpu_model.eval()
    with mr.no_grad():
        got = cpu_model(x.to("cpu")).data
    numpy.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    return f"{len(state)} entries saved on {device}, loaded on cpu; eval outputs agree"


def _tf32_matmul(device):
    import minires as mr

    rng = numpy.random.default_rng(0)
    a, b = rng.standard_normal((256, 512)), rng.standard_normal((512, 256))
    exact = a @ b
    errors = {}
    for precision in ("highest", "high"):
        mr.set_float32_matmul_precision(precision)
        try:
            y = (mr.tensor(a.astype(numpy.float32), device=device)
                 @ mr.tensor(b.astype(numpy.float32), device=device))
        finally:
            mr.set_float32_matmul_precision("highest")
        errors[precision] = numpy.abs(y.cpu().numpy() - exact).max() / numpy.abs(exact).max()
    unit = 2.0**-11  # the largest relative rounding error of one TF32 input
    if not errors["highest"] < 1e-5:
        raise AssertionError(f"float32 matmul error {errors['highest']:.1e} (expected < 1e-5)")
    if not unit / 20 < errors["high"] < 2 * unit:
        raise AssertionError(f"TF32 matmul error {errors['high']:.1e}, expected between "
                             f"{unit / 20:.1e} and {2 * unit:.1e}")
    tensor_cores = device == "cuda" and tf32_tensor_cores(backend.cupy.cuda.Device().id)
    return (f"relative error float32 {errors['highest']:.1e}, TF32 {errors['high']:.1e} "
            f"({'cuBLAS tensor cores' if tensor_cores else 'inputs rounded by minires'})")


# --------------------------------------------------------------------------- driver


def run_checks(device: str = "cuda", quick: bool = False) -> list:
    """Run every check on ``device``; return a list of ``Result``."""
    from ..cuda_kernels import KERNELS
    from ..opspec import samples

    results: list = []
    for spec, sample in _gradient_samples(quick):
        _run(results, f"gradcheck {sample.name}",
             lambda spec=spec, sample=sample: _gradient_check(device, spec, sample))
    for helper in KERNELS:
        _run(results, f"kernel vs reference: {helper}",
             lambda helper=helper: _kernel_parity(device, helper))
    for spec, sample in samples(tag="devices"):
        _run(results, f"NumPy vs CuPy: {spec.name}",
             lambda spec=spec, sample=sample: _numpy_vs_device(spec, sample)
             if device == "cuda" else "SKIP: compares the CPU with the GPU (--device cuda)")
    _run(results, "TF32 matmul (set_float32_matmul_precision)", lambda: _tf32_matmul(device))
    _run(results, "training smoke test", lambda: _training_smoke(device, quick))
    _run(results, f"save on {device}, load on cpu", lambda: _save_load(device))
    return results


def format_table(results) -> str:
    width = max(len(r.check) for r in results)
    lines = [f"{'check':<{width}}  result  {'time':>6}  detail", "-" * (width + 40)]
    for r in results:
        lines.append(f"{r.check:<{width}}  {r.status:<6}  {r.seconds:>5.1f}s  {r.detail}")
    counts = {s: sum(r.status == s for r in results) for s in ("PASS", "FAIL", "SKIP")}
    lines.append(f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped")
    return "\n".join(lines)


def add_arguments(parser) -> None:
    """The options of ``minires selftest`` (and ``python -m minires.tools.selftest``)."""
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                        help="where to run the checks (default: cuda)")
    parser.add_argument("--quick", action="store_true",
                        help="one gradient check per op and a smaller training smoke test")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="minires selftest",
                                     description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


def run(args) -> int:
    """Run the checks a parsed command line asks for; return the exit status."""
    problem = backend._cuda_probe() if args.device == "cuda" else None
    if problem is not None and problem[0] in ("cupy", "gpu"):
        print(f"minires selftest: no GPU to test ({problem[1]}) Nothing was checked on "
              "CUDA; run `minires selftest --device cpu` for the CPU checks.")
        return 0
    if problem is not None:  # a GPU, and CuPy, but a CUDA library it needs is missing
        print(f"minires selftest: FAIL before any check: {problem[1]}")
        return 1
    import minires

    if args.device == "cuda":
        name = backend.cupy.cuda.runtime.getDeviceProperties(0)["name"]
        where = f"cuda ({name.decode() if isinstance(name, bytes) else name}, " \
                f"CuPy {backend.cupy.__version__})"
    else:
        where = "cpu"
    from ..opspec import run_seed

    print(f"minires {minires.__version__} selftest on {where}, NumPy {numpy.__version__}, "
          f"kernels {'on' if backend.kernels_enabled() else 'off'}, op samples drawn with "
          f"seed {run_seed()} (MINIRES_SPEC_SEED={run_seed()} draws them again)")
    results = run_checks(args.device, quick=args.quick)
    print(format_table(results))
    for r in results:
        if r.status == "FAIL":
            print(f"\nFAIL {r.check}:\n  {r.detail}")
    return 1 if any(r.status == "FAIL" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
