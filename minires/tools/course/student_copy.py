"""Generate a student's copy of the project from the instructor's (this installation).

The instructor's copy is the full project. The student's copy is the same files with
the bodies of the chosen backward passes replaced by a stub that raises a clear error;
every other byte is left as it was. It is always generated, never edited by hand::

    minires make-student-copy student/ --assignment 05

Python's ``ast`` locates each function; the text is cut by line numbers, so comments,
blank lines and formatting outside the removed bodies stay byte-identical.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

from .assignments import OPS, select

PACKAGE_DIR = Path(__file__).resolve().parents[2]  # the installed minires package

# Skipped everywhere in the tree: version control and caches.
_SKIP_ANYWHERE = {".git", ".hg", ".svn", "__pycache__", ".pytest_cache", ".ruff_cache",
                  ".mypy_cache", ".ipynb_checkpoints", ".DS_Store", ".tox", ".nox",
                  ".benchmarks"}
# Skipped at the top of a project only: build outputs, environments, training runs.
_SKIP_TOP = {"build", "dist", "site", "runs", "venv", ".venv", ".whl", ".data"}

# The text that replaces a removed body. A template (a string), so the instructor's own
# ops never contain a stub; ``{indent}`` is the body's indentation.
STUB = (
    "{indent}raise NotImplementedError(\n"
    "{indent}    \"{qualname} is not written yet (assignment {number}): implement it in \"\n"
    "{indent}    \"{path}, then check it with: minires grade {number}\"\n"
    "{indent})\n"
)
STUB_HEADER = "{indent}# ASSIGNMENT {number}: write this body.\n{indent}# {contract}\n"


class StudentCopyError(RuntimeError):
    """The student copy cannot be generated as asked."""


def project_root(package_dir: Path = PACKAGE_DIR):
    """The instructor's project folder (holding pyproject.toml next to the package), or
    None when minires is installed without its project (e.g. in site-packages)."""
    root = package_dir.parent
    return root if (root / "pyproject.toml").is_file() else None


# --------------------------------------------------------------------------- stubbing


def _find(tree: ast.Module, qualname: str):
    """The FunctionDef for ``Class.method`` or ``function`` at module level, or None."""
    scope, found = tree.body, None
    for part in qualname.split("."):
        found = next((node for node in scope
                      if isinstance(node, (ast.ClassDef, ast.FunctionDef))
                      and node.name == part), None)
        if found is None:
            return None
        scope = found.body
    return found if isinstance(found, ast.FunctionDef) else None


def _is_comment_or_blank(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def _body_region(lines: list, node: ast.FunctionDef):
    """-> (first, last, hints, indent): the 0-based line range to replace (the body after
    any docstring), the comment lines that open it, and the body's indentation."""
    body = node.body
    has_doc = (isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
               and isinstance(body[0].value.value, str))
    indent = lines[body[0].lineno - 1][:body[0].col_offset]
    if has_doc:
        first = body[0].end_lineno  # the line after the docstring (0-based index)
    else:
        # the header may span several lines; the comments just above the first
        # statement belong to the body
        first = body[0].lineno - 1
        while first - 1 >= node.lineno and _is_comment_or_blank(lines[first - 1]) \
                and lines[first - 1].startswith(indent):
            first -= 1
    last = node.end_lineno - 1
    # comments trailing the last statement, at the body's indentation, go too
    k = last + 1
    while k < len(lines) and _is_comment_or_blank(lines[k]):
        if lines[k].strip() and lines[k].startswith(indent):
            last = k
        k += 1
    if has_doc and len(body) == 1:
        raise StudentCopyError(f"{node.name} has only a docstring: nothing to remove")
    start_stmt = body[1] if has_doc else body[0]
    hints = [ln for ln in lines[first:start_stmt.lineno - 1] if ln.strip()]
    return first, last, hints, indent


def stub_source(source: str, targets, number: str, keep_hints: bool = False) -> str:
    """``source`` with the body of every target (``assignments.Target``) replaced by a stub.

    Docstrings are kept (they state a helper's interface); the comments that open a body
    (its math) are kept only with ``keep_hints``. Everything outside the bodies is left
    byte for byte.
    """
    lines = source.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    tree = ast.parse(source)
    regions = []
    for target in targets:
        node = _find(tree, target.qualname)
        if node is None:
            raise StudentCopyError(f"{target.qualname} not found in minires/{target.path}")
        regions.append((*_body_region(lines, node), target))
    for first, last, hints, indent, target in sorted(regions, key=lambda r: r[0],
                                                     reverse=True):
        contract = target.contract.replace("\n", f"\n{indent}# ")
        text = STUB_HEADER.format(indent=indent, number=number, contract=contract)
        if keep_hints:
            text += "".join(hints)
        text += STUB.format(indent=indent, qualname=target.qualname,
                            path=f"minires/{target.path}", number=number)
        lines[first:last + 1] = [ln + newline for ln in text.splitlines()]
    result = "".join(lines)
    ast.parse(result)  # the stubbed file must still be valid Python
    return result


# --------------------------------------------------------------------------- copying


def _ignore(top: Path, out: Path):
    def ignore(folder, names):
        skipped = {n for n in names if n in _SKIP_ANYWHERE or n.endswith((".pyc", ".pyo"))
                   or n.endswith(".egg-info")}
        here = Path(folder).resolve()
        if here == top:
            skipped |= {n for n in names if n in _SKIP_TOP or n.startswith(".venv")}
        # never copy the output folder into itself
        skipped |= {n for n in names if (here / n).resolve() == out}
        return skipped
    return ignore


def _minimal_pyproject() -> str:
    """A pyproject.toml for a copy made from an installed package without its project."""
    from importlib import metadata

    try:
        requires = [r for r in (metadata.requires("minires") or []) if "extra ==" not in r]
        version = metadata.version("minires")
    except metadata.PackageNotFoundError:
        requires, version = ["numpy>=1.24", "tqdm>=4.60", "matplotlib>=3.5"], "0.1.0"
    deps = ", ".join(f'"{r}"' for r in requires)
    return (
        "[build-system]\nrequires = [\"setuptools>=68\", \"wheel\"]\n"
        "build-backend = \"setuptools.build_meta\"\n\n"
        f"[project]\nname = \"minires\"\nversion = \"{version}\"\n"
        f"requires-python = \">=3.10\"\ndependencies = [{deps}]\n\n"
        "[project.scripts]\nminires = \"minires.tools.cli:main\"\n\n"
        "[tool.setuptools.packages.find]\ninclude = [\"minires*\"]\n\n"
        "[tool.setuptools.package-data]\nminires = [\"data/samples/**/*\"]\n"
    )


def make_student_copy(out, assignments=None, *, keep_hints: bool = False,
                      force: bool = False, package_dir=PACKAGE_DIR) -> dict:
    """Copy the project into ``out`` and remove the backward passes of ``assignments``
    (numbers like ``'05'``; None or 'all': every assignment).

    Copies the whole project when this minires is a source checkout (pyproject.toml next
    to the package), else just the package plus a minimal pyproject.toml. Writes
    ``ASSIGNMENTS.md`` into ``out``. Returns ``{'out', 'assignments', 'stubbed', 'note'}``
    with ``stubbed`` listing ``minires/FILE:QUALNAME`` of every removed body and ``note``
    saying what the copy lacks ('' for a full project).
    """
    out = Path(out).resolve()
    package_dir = Path(package_dir).resolve()
    chosen = select(list(assignments) if assignments else None)
    if out.exists() and any(out.iterdir()):
        if not force:
            raise StudentCopyError(f"{out} exists and is not empty; choose a new folder "
                                   "(or pass --force to replace it)")
        if (out / "minires" / "__init__.py").resolve() == package_dir / "__init__.py" or \
                out in package_dir.parents:
            raise StudentCopyError(f"refusing to replace {out}: it holds the instructor's "
                                   "own minires")
        shutil.rmtree(out)
    root = project_root(package_dir)
    if root is not None:
        shutil.copytree(root, out, ignore=_ignore(root, out))
    else:
        out.mkdir(parents=True, exist_ok=True)
        shutil.copytree(package_dir, out / "minires", ignore=_ignore(package_dir, out))
        (out / "pyproject.toml").write_text(_minimal_pyproject())

    stubbed = []
    by_file: dict = {}
    for number, t in _targets(chosen):
        by_file.setdefault(t.path, []).append((number, t))
    for path, items in sorted(by_file.items()):
        file = out / "minires" / path
        source = file.read_bytes().decode("utf-8")
        for number in sorted({n for n, _ in items}):
            targets = [t for n, t in items if n == number]
            source = stub_source(source, targets, number, keep_hints)
            stubbed += [f"minires/{t.path}:{t.qualname}" for t in targets]
        file.write_bytes(source.encode("utf-8"))
    (out / "ASSIGNMENTS.md").write_text(_assignments_md(chosen, root is not None),
                                        encoding="utf-8")
    return {"out": str(out), "assignments": [a.number for a in chosen], "stubbed": stubbed,
            "note": "" if root is not None else INSTALLED_NOTE}


def _targets(chosen) -> list:
    """(assignment number, Target) for every body to remove, each once: a helper that
    two chosen assignments share goes to the first of them."""
    seen, out = set(), []
    for a in chosen:
        for op in a.ops:
            for t in OPS[op].targets:
                if (t.path, t.qualname) not in seen:
                    seen.add((t.path, t.qualname))
                    out.append((a.number, t))
    return out


INSTALLED_NOTE = (
    "This minires is installed without its project, so the copy holds the package and a\n"
    "minimal pyproject.toml but no tutorials/ and no tests/. For a full student copy, run\n"
    "the command from a source checkout of minires (clone the project, `pip install -e .`\n"
    "in it, then `minires make-student-copy OUT`).")


def _assignments_md(chosen, full_project: bool) -> str:
    """The copy's ASSIGNMENTS.md; ``full_project``: tutorials/ and tests/ are in it."""
    tests = ("Until an op is written, the project's own tests (`pytest`) and the tutorial\n"
             "cells that use it cannot run; the tutorials skip those cells with a note.\n"
             if full_project else
             "\n" + INSTALLED_NOTE.replace("the copy holds", "this copy holds") + "\n")
    parts = [
        "# Assignments\n\n",
        "This is a student copy of minires, generated by `minires make-student-copy`. The\n"
        "backward passes listed below were removed: each now raises an error that names\n"
        "it. Write them, then let the local grader check your work (no network needed):\n\n",
        "```bash\npip install -e .          # once, from this folder\n"
        "minires grade 05          # gradient checks and tests of assignment 05\n"
        "minires grade all\n```\n\n",
        "The grader runs a float64 finite-difference gradient check of every op of the\n"
        "assignment with a random upstream gradient and with settings drawn afresh each\n"
        "run, plus tests against slow reference implementations and edge cases, then\n"
        "prints a score and what is wrong. " + tests,
    ]
    owner = {}
    for number, t in _targets(chosen):
        owner[(t.path, t.qualname)] = number
    for a in chosen:
        where = f"`tutorials/{a.tutorial}`" if full_project else \
            f"`{a.tutorial}` (in the minires project's tutorials/, not in this copy)"
        parts.append(f"\n## {a.number}: {a.title}\n\nTutorial: {where}\n\n")
        for op in a.ops:
            for t in OPS[op].targets:
                first = owner[(t.path, t.qualname)]
                shared = f" (shared with assignment {first}: write it once)" \
                    if first != a.number else ""
                parts.append(f"- `minires/{t.path}`: `{t.qualname}`{shared}\n")
    return "".join(parts)


def stubbed_targets(project) -> list:
    """``minires/FILE:QUALNAME`` of every assignment target in ``project`` that is still a
    stub (its body raises the generator's error)."""
    found = []
    targets = {(t.path, t.qualname): t for op in OPS.values() for t in op.targets}
    for t in targets.values():
        file = Path(project) / "minires" / t.path
        if not file.is_file():
            continue
        node = _find(ast.parse(file.read_text(encoding="utf-8")), t.qualname)
        if node is not None and _is_stub(node):
            found.append(f"minires/{t.path}:{t.qualname}")
    return found


def _is_stub(node: ast.FunctionDef) -> bool:
    for stmt in node.body:
        if isinstance(stmt, ast.Raise) and isinstance(stmt.exc, ast.Call) and \
                getattr(stmt.exc.func, "id", None) == "NotImplementedError":
            text = "".join(a.value for a in ast.walk(stmt.exc)
                           if isinstance(a, ast.Constant) and isinstance(a.value, str))
            if "is not written yet" in text:
                return True
    return False


__all__ = ["STUB", "StudentCopyError", "make_student_copy", "project_root", "stub_source",
           "stubbed_targets"]
