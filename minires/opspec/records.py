"""The records of an op spec: ``OpSpec``, its ``Sample`` inputs and its ``ErrorCase`` s.

A sample is an op call with its inputs: the tensors (``inputs``, float64 arrays made
from a random generator; the gradient check varies these), then the settings (``args``
and ``kwargs``). NumPy arrays among the settings (class targets, class weights, running
statistics, masks) become tensors on the inputs' device, fresh for every call: an op
may update them in place, and a class weight on another device is an error.

The op is called through ``spec.call(f, *tensors, *args, **kwargs)`` where ``f`` is
minires's function, PyTorch's (the parity tests) or the NumPy loop reference (the
reference tests): all three take the same arguments, so one sample serves them all.
"""

from __future__ import annotations

import os
import secrets
import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

TAGS = {
    "course": "one of the course grader's gradient checks (minires grade)",
    "devices": "float32 and larger: the same call on the CPU and the GPU must agree "
               "(selftest, kernels on and off)",
}


def plain_call(f, *args, **kwargs):
    return f(*args, **kwargs)


@dataclass(frozen=True)
class Sample:
    name: str  # unique over every spec: the test id
    inputs: tuple  # makers, rng -> float64 array: the tensors
    args: tuple = ()  # positional settings after the tensors
    kwargs: dict = field(default_factory=dict)  # keyword settings
    note: str = ""  # what the sample is for, in a few words (reports show it)
    gradcheck: bool = True  # False: forward and parity only (ties, NaN outputs)
    tags: frozenset = frozenset()  # keys of TAGS
    call: Callable | None = None  # replaces the spec's call (a chain of two ops)
    mixed: bool = False  # the call also runs other ops: no reference or PyTorch stands in

    def __post_init__(self):
        unknown = set(self.tags) - set(TAGS)
        if unknown:
            raise ValueError(f"sample {self.name}: unknown tags {sorted(unknown)}; "
                             f"known: {sorted(TAGS)}")

    def arrays(self, seed: int = 0) -> list:
        """The input arrays (float64), the same for a given seed."""
        rng = np.random.default_rng(seed)
        return [make(rng) for make in self.inputs]

    def describe(self) -> str:
        return self.note or self.name


@dataclass(frozen=True)
class ErrorCase:
    """A bad call and the error it must raise: ``call(device)`` must raise ``error``
    with a message matching the regular expression ``match``. ``devices`` cases mix
    the CPU with ``device`` and run where a GPU (or the CuPy stand-in) is present."""

    name: str
    call: Callable  # (device) -> anything; must raise
    match: str
    error: type | tuple = (ValueError, TypeError, IndexError, RuntimeError)
    devices: bool = False


@dataclass
class OpSpec:
    """Everything the tests, the selftest, the grader and the docs need about one op."""

    name: str  # the op's name in minires.ops / F (or the method, "Tensor.to")
    fn: Callable  # minires's function: fn(*tensors, *args, **kwargs) -> Tensor
    samples: tuple  # the fixed samples
    draw: Callable | None = None  # rng -> Samples drawn afresh every run
    torch: str | None = None  # PyTorch's name, "torch.nn.functional.conv2d"
    parity: bool = True  # the samples also run through ``torch`` and must agree
    kinks: str = "none: smooth where the samples lie"  # and how the samples avoid them
    reference: Callable | None = None  # NumPy loops, called like fn on arrays
    reference_grad: Callable | None = None  # (gy, *arrays, *args, **kw) -> input grads
    errors: tuple = ()  # ErrorCases
    kernel_cases: Callable | None = None  # () -> Cases of its CUDA kernels (kernels.py)
    call: Callable = plain_call  # (f, *tensors, *args, **kwargs) -> output

    def random_samples(self, seed: int | None = None) -> list:
        """The samples drawn for this run (``run_seed()``), from a generator of their
        own per spec, so one spec's draws do not shift when another spec changes."""
        if self.draw is None:
            return []
        seed = run_seed() if seed is None else seed
        return list(self.draw(np.random.default_rng([seed, zlib.crc32(self.name.encode())])))

    def all_samples(self, seed: int | None = None) -> list:
        return list(self.samples) + self.random_samples(seed)

    def caller(self, sample: Sample) -> Callable:
        return sample.call or self.call

    def settings(self, sample: Sample, convert) -> tuple:
        """(args, kwargs) of ``sample`` with every NumPy array replaced by
        ``convert(array)`` (a tensor on a device, a torch tensor, a copy)."""
        def one(value):
            return convert(value) if isinstance(value, np.ndarray) else value
        return [one(a) for a in sample.args], {k: one(v) for k, v in sample.kwargs.items()}

    def run(self, sample: Sample, tensors, device=None, fn=None, settings=None):
        """Call ``fn`` (default: minires's function) on ``tensors`` with the sample's
        settings (``settings``, or its arrays as fresh tensors on ``device``)."""
        if settings is None:
            from .. import tensor as make_tensor

            settings = self.settings(sample, lambda a: make_tensor(a.copy(),
                                                                   device=device or "cpu"))
        args, kwargs = settings
        return self.caller(sample)(fn or self.fn, *tensors, *args, **kwargs)


# --------------------------------------------------------------------------- the run seed

_SEED: list = []


def run_seed() -> int:
    """The seed of this run's random samples: ``MINIRES_SPEC_SEED`` if set, else a
    fresh one per process (reports print it, so a failure can be repeated)."""
    if not _SEED:
        given = os.environ.get("MINIRES_SPEC_SEED", "").strip()
        _SEED.append(int(given) if given else secrets.randbelow(2**31))
    return _SEED[0]
