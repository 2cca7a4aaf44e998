"""Every differentiable op passes the float64 gradient check, on every device, for every
sample of its spec (``minires/opspec``): the fixed ones and this run's random draws
(``MINIRES_SPEC_SEED`` repeats a run's draws; the header of the test report prints it).

The completeness tests say what a new op still lacks: a ``Function`` that no sample
runs (measured by recording ``Function.apply``), a spec without a gradient-check
sample, a public ``F.*`` or ``minires.ops`` function without a spec.
"""

import numpy as np
import pytest

import minires as mr
import minires.nn.functional as F
import minires.ops
from minires import opspec

GRADCHECK = opspec.samples(gradcheck=True)


@pytest.mark.parametrize("spec, sample", GRADCHECK, ids=[s.name for _, s in GRADCHECK])
def test_gradcheck(spec, sample, device):
    inputs = [mr.tensor(a, dtype=mr.float64, device=device, requires_grad=True)
              for a in sample.arrays()]
    fn = lambda *tensors: spec.run(sample, tensors, device)
    assert mr.gradcheck(fn, inputs, rtol=1e-6), \
        f"{sample.describe()} (run seed {opspec.run_seed()})"


def _minires_functions() -> set:
    return {cls for key, cls in mr.Function.registry.items() if key.startswith("minires.")}


def test_every_function_is_run_by_a_gradcheck_sample():
    ran = {}
    for spec, sample in GRADCHECK:
        tensors = [mr.tensor(a, requires_grad=True) for a in sample.arrays()]
        for cls in opspec.functions_run(spec.run, sample, tensors):
            ran.setdefault(cls, sample.name)
    missing = sorted(cls.__name__ for cls in _minires_functions() - set(ran))
    assert not missing, (f"Functions that no gradient-check sample runs: {missing}; give "
                         "each a spec (or a sample) in minires/opspec/")


def test_the_recorder_lists_the_functions_a_call_applies_and_restores_apply():
    before = mr.Function.__dict__["apply"]
    x = mr.tensor(np.ones((2, 3)), requires_grad=True)
    names = [cls.__name__ for cls in opspec.functions_run(lambda: F.relu(x * 2).sum())]
    assert names == ["Mul", "ReLU", "Sum"]
    assert mr.Function.__dict__["apply"] is before


def test_every_spec_has_a_gradcheck_sample():
    without = [s.name for s in opspec.SPECS if not any(x.gradcheck for x in s.samples)]
    assert not without, f"specs without a fixed gradient-check sample: {without}"


def test_every_public_op_function_has_a_spec():
    names = {s.name for s in opspec.SPECS}
    public_f = {n for n in dir(F) if not n.startswith("_") and callable(getattr(F, n))}
    missing = sorted(public_f - names)
    assert not missing, f"F.* functions without a spec in minires/opspec/: {missing}"
    wrong = sorted(n for n in public_f if opspec.spec(n).fn is not getattr(F, n))
    assert not wrong, f"specs named after F.* functions that test something else: {wrong}"
    ops = set(minires.ops.__all__)
    missing = sorted(ops - names)
    assert not missing, f"minires.ops functions without a spec in minires/opspec/: {missing}"


def test_sample_names_are_unique_and_tags_known():
    names = [sample.name for _, sample in opspec.samples()]
    repeated = sorted({n for n in names if names.count(n) > 1})
    assert not repeated, f"sample names used twice: {repeated}"
    for _, sample in opspec.samples():
        assert set(sample.tags) <= set(opspec.TAGS), sample.name


def test_random_draws_repeat_for_a_seed_and_change_with_it():
    conv = opspec.spec("conv2d")
    a, b, c = (conv.random_samples(seed) for seed in (1, 1, 2))
    assert [s.note for s in a] == [s.note for s in b]
    assert [s.note for s in a] != [s.note for s in c]


@pytest.mark.parametrize("seed", range(20))
def test_random_draws_are_valid_calls_for_many_seeds(seed):
    """Drawn settings always make a valid call: odd shapes and asymmetric geometries
    that leave at least one output, class problems with a counted target."""
    for spec in opspec.SPECS:
        for sample in spec.random_samples(seed):
            y = spec.run(sample, [mr.tensor(a) for a in sample.arrays()])
            assert y.numel() >= 1, sample.note
            assert np.isfinite(y.numpy()).all(), f"{sample.name}: {sample.note}"
