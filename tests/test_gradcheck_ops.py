"""Every differentiable op passes the float64 gradient check, on every device."""

import numpy as np
import pytest
from op_registry import OPS

import minires as mr
from minires.autograd import Function


@pytest.mark.parametrize("op", OPS, ids=[op.name for op in OPS])
def test_gradcheck(op, device):
    rng = np.random.default_rng(0)
    inputs = [mr.tensor(a, dtype=mr.float64, device=device, requires_grad=True)
              for a in op.make_inputs(rng)]
    assert mr.gradcheck(op.fn, inputs, rtol=1e-6)


def test_every_op_has_a_gradcheck_entry():
    covered = {name for op in OPS for name in op.covers}
    ops = {cls.__name__ for key, cls in Function.registry.items()
           if key.startswith("minires.")}
    missing = sorted(ops - covered)
    assert not missing, f"Functions without a gradient-check entry in op_registry.py: {missing}"


def test_registry_entries_name_real_functions():
    ops = {cls.__name__ for key, cls in Function.registry.items()
           if key.startswith("minires.")}
    unknown = sorted({name for op in OPS for name in op.covers} - ops)
    assert not unknown, f"op_registry.py names Functions that do not exist: {unknown}"
