"""The real CuPy's names and parameters (``cupy_api.json``), and the checks against them.

Every name the stand-in answers to and every keyword it accepts is looked up here; what
the real CuPy lacks is refused with an error that says so.
"""

from __future__ import annotations

import functools
import inspect
import json
import os

_HERE = os.path.dirname(os.path.abspath(__file__))
API_FILE = os.path.join(os.path.dirname(_HERE), "cupy_api.json")

_KINDS = {
    "positional_only": inspect.Parameter.POSITIONAL_ONLY,
    "positional_or_keyword": inspect.Parameter.POSITIONAL_OR_KEYWORD,
    "var_positional": inspect.Parameter.VAR_POSITIONAL,
    "keyword_only": inspect.Parameter.KEYWORD_ONLY,
    "var_keyword": inspect.Parameter.VAR_KEYWORD,
}


@functools.lru_cache(maxsize=None)
def data() -> dict:
    with open(API_FILE) as f:
        return json.load(f)


def version() -> str:
    return data()["version"]


def real() -> str:
    """How errors name the CuPy this stand-in copies."""
    return f"the real CuPy {version()}"


def module_entry(module: str, name: str):
    """The real CuPy's entry for ``module.name``, or None when it has no such name."""
    return data()["modules"].get(module, {}).get(name)


def member_entry(cls: str, name: str):
    """The entry for attribute ``name`` of class ``cls`` (e.g. 'cupy.ndarray'), or None."""
    return data()["classes"].get(cls, {}).get("members", {}).get(name)


def class_parameters(cls: str):
    return data()["classes"].get(cls, {}).get("parameters")


def no_such_name(where: str, name: str) -> AttributeError:
    return AttributeError(
        f"{where} has no attribute {name!r}: {real()} does not have it either "
        "(the CuPy stand-in offers only what the real CuPy offers)")


def not_implemented(where: str, name: str) -> AttributeError:
    return AttributeError(
        f"{where}.{name} exists in {real()}, but the CuPy stand-in of the tests does not "
        "implement it (add it to tests/cupy_standin if minires needs it)")


@functools.lru_cache(maxsize=None)
def _signature(params: tuple) -> inspect.Signature:
    # defaults only matter for what is required: a stand-in value marks them
    return inspect.Signature([
        inspect.Parameter(name, _KINDS[kind], **({"default": None} if has_default else {}))
        for name, kind, has_default in params])


def check_call(qualname: str, params, args, kwargs) -> None:
    """Raise TypeError if the real CuPy's ``qualname`` would not accept these arguments
    by their names and count (``params`` from the API list; None: keywords refused)."""
    if params is None:
        if kwargs:
            raise TypeError(f"{qualname}() got keyword arguments {sorted(kwargs)}: "
                            f"{real()} does not document any keyword for it")
        return
    signature = _signature(tuple(tuple(p) for p in params))
    try:
        signature.bind(*args, **kwargs)
    except TypeError as error:
        known = [p[0] for p in params if p[1] not in ("var_positional", "var_keyword")]
        unknown = [k for k in kwargs if k not in known]
        if unknown and not any(p[1] == "var_keyword" for p in params):
            raise TypeError(
                f"{qualname}() got an unexpected keyword argument {unknown[0]!r}: "
                f"{real()} accepts only {known} (the CuPy stand-in refuses what the real "
                "CuPy lacks)") from None
        raise TypeError(f"{qualname}{signature}: {error} (in {real()})") from None
