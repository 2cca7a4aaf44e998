"""Which ``Function`` classes a call actually runs, measured, not declared by hand.

``recording()`` wraps ``Function.apply`` for the length of a ``with`` block and lists
the class of every op applied inside it. The completeness test runs each sample under
it: a ``Function`` that no sample runs has no gradient check.
"""

from __future__ import annotations

from contextlib import contextmanager

from ..autograd import Function


@contextmanager
def recording():
    """``with recording() as ran: ...`` -> ``ran`` lists the Function classes applied."""
    ran = []
    original = Function.__dict__["apply"]  # the classmethod object itself

    def apply(cls, *inputs, **attrs):
        ran.append(cls)
        return original.__func__(cls, *inputs, **attrs)

    Function.apply = classmethod(apply)
    try:
        yield ran
    finally:
        Function.apply = original


def functions_run(fn, *args, **kwargs) -> list:
    """The Function classes that ``fn(*args, **kwargs)`` applies, in order, once each."""
    with recording() as ran:
        fn(*args, **kwargs)
    return list(dict.fromkeys(ran))
