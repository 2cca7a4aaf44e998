"""One spec per op: the sample inputs, kinks, loop references, PyTorch names, error
cases and kernel cases that every check of the ops reads.

``SPECS`` lists an ``OpSpec`` per op, from one module per family of ``minires/ops/``
(``opspec/conv.py`` holds conv2d's spec, ``opspec/pool.py`` the pooling ones, ...). The
gradient checks on every device, the loop-reference tests, the PyTorch parity tests,
the error tests, the kernel parity cases, ``minires selftest``, the course grader and
the docs' op table (``docs/ops.md``) all read them; nothing else holds sample inputs.

    from minires.opspec import SPECS, spec
    conv = spec("conv2d")
    for sample in conv.all_samples():       # the fixed ones, and this run's random draws
        x, w, *b = sample.arrays()          # float64 NumPy arrays
        y = conv.run(sample, [mr.tensor(a, requires_grad=True) for a in (x, w, *b)])

Adding an op: write its file in ``minires/ops/``, its spec in the family module here,
its export; ``tests/test_gradcheck_ops.py`` says what is missing (docs/adding_an_op.md).
This package sits above the library (it imports ops, nn.functional and distributed)
and below the tools, which read it.
"""

from . import (
    activation,
    basic,
    conv,
    distributed,
    fast_conv,
    fused_norm,
    linear,
    loss,
    norm,
    pool,
    reduce,
    shape,
)
from .record import functions_run, recording
from .records import TAGS, ErrorCase, OpSpec, Sample, run_seed

SPECS = [s for family in (basic, shape, reduce, activation, linear, conv, pool, norm, loss,
                          fast_conv, fused_norm, distributed) for s in family.SPECS]


def spec(name: str) -> OpSpec:
    """The spec of the op ``name`` (``'conv2d'``); a clear error for an unknown name."""
    for s in SPECS:
        if s.name == name:
            return s
    raise KeyError(f"no op spec named {name!r}; specs: {', '.join(s.name for s in SPECS)}")


def samples(seed: int | None = None, gradcheck: bool | None = None, tag: str | None = None):
    """(spec, sample) for every sample of every spec, fixed ones first, then this run's
    random draws; only those for the gradient check (``gradcheck=True``) or with
    ``tag`` when asked."""
    out = []
    for s in SPECS:
        for sample in s.all_samples(seed):
            if gradcheck is not None and sample.gradcheck != gradcheck:
                continue
            if tag is not None and tag not in sample.tags:
                continue
            out.append((s, sample))
    return out


__all__ = ["ErrorCase", "OpSpec", "SPECS", "Sample", "TAGS", "functions_run", "recording",
           "run_seed", "samples", "spec"]
