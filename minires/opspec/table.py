"""The docs' op table, generated from the specs: ``python -m minires.opspec.table``
prints ``docs/ops.md`` (``tests/test_op_table.py`` fails when the page is out of date)."""

from __future__ import annotations

import sys

from .. import distributed, ops
from ..nn import functional as F
from ..tensors import Tensor
from . import SPECS
from .record import functions_run

# Tensor methods that users write as operators
_OPERATORS = {"__add__": "a + b", "__sub__": "a - b", "__mul__": "a * b",
              "__truediv__": "a / b", "__neg__": "-a", "__pow__": "a ** p",
              "__getitem__": "a[index]"}

_HEAD = """# The ops

Every op of minires with its spec in `minires/opspec/`: how you call it, PyTorch's
name for it (the parity tests compare the two), the `Function` classes its samples
actually run (recorded, not declared), its samples (fixed, plus those drawn afresh in
every test run), and whether a loop reference, error cases and CUDA kernels check it.
Where an op is not differentiable everywhere, the last table says where, and how its
samples keep away. [Adding an op](adding_an_op.md) says how to write a spec.

This page is generated from the specs: `python -m minires.opspec.table > docs/ops.md`.

"""


def call_name(spec) -> str:
    """How a user calls the op: ``F.conv2d``, ``a + b``, ``Tensor.reshape``, ..."""
    fn = spec.fn
    name = getattr(fn, "__name__", spec.name)
    if getattr(Tensor, name, None) is fn:
        return _OPERATORS.get(name, f"Tensor.{name}")
    import minires  # the package root sits above the specs: looked up when the table is made

    for prefix, namespace in (("F", F), ("mr", minires), ("minires.ops", ops),
                              ("minires.distributed", distributed)):
        if getattr(namespace, name, None) is fn:
            return f"{prefix}.{name}"
    return f"{fn.__module__}.{name}"


def _functions(spec) -> str:
    from .. import tensor

    seen = {}
    for sample in spec.samples:
        tensors = [tensor(a, requires_grad=True) for a in sample.arrays()]
        for cls in functions_run(spec.run, sample, tensors):
            seen.setdefault(cls.__name__, None)
    return ", ".join(f"`{n}`" for n in seen) or "none (no op runs)"


def markdown() -> str:
    rows = ["| op | minires | PyTorch | Functions run | samples | loops | errors | kernels |",
            "|---|---|---|---|---|---|---|---|"]
    kinks = ["| op | kinks, and how the samples avoid them |", "|---|---|"]
    for spec in SPECS:
        drawn = len(spec.random_samples(0))
        samples = f"{len(spec.samples)}" + (f" + {drawn} drawn" if drawn else "")
        torch = f"`{spec.torch}`" if spec.torch else "-"
        if spec.torch and not spec.parity:
            torch += " (no parity test)"
        kernels = sorted({c.helper for c in spec.kernel_cases()}) if spec.kernel_cases else []
        rows.append(f"| {spec.name} | `{call_name(spec)}` | {torch} | {_functions(spec)} | "
                    f"{samples} | {'yes' if spec.reference else '-'} | {len(spec.errors) or '-'} "
                    f"| {', '.join(f'`{k}`' for k in kernels) or '-'} |")
        if not spec.kinks.startswith("none"):
            kinks.append(f"| {spec.name} | {spec.kinks.replace('|', chr(92) + '|')} |")
    return _HEAD + "\n".join(rows) + "\n\n## Kinks\n\n" + "\n".join(kinks) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
