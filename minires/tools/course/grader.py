"""The local autograder: ``minires grade 05 [--project PATH]``.

It runs ``checks.py`` in a fresh Python process whose ``PYTHONPATH`` starts with the
student's project, so the student's ``minires`` is the one under test while the checks
and the gradient checker come from this installation. Nothing goes over the network.
Each check is worth one point; the report names every failure and says what is wrong.
The settings the checks draw at random come from one seed per run, printed in the
report: ``minires grade 05 --seed N`` repeats a run exactly.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .assignments import select
from .student_copy import PACKAGE_DIR

CHECKS = Path(__file__).resolve().parent / "checks.py"
GRADECHECK = PACKAGE_DIR / "gradient_check.py"
OPSPEC = PACKAGE_DIR / "opspec"


@dataclass
class CheckResult:
    assignment: str
    op: str
    kind: str  # "gradcheck" or "test"
    name: str
    passed: bool
    message: str = ""
    scored: bool = True  # False: the check never ran the student's backward


@dataclass
class GradeReport:
    assignments: list
    project: str
    results: list = field(default_factory=list)
    error: str = ""  # set when the checks could not run at all
    minires: str = ""  # where the graded minires was imported from
    seed: int = 0  # of the settings drawn at random

    @property
    def scored(self) -> list:
        return [r for r in self.results if r.scored]

    @property
    def score(self) -> int:
        return sum(r.passed for r in self.scored)

    @property
    def total(self) -> int:
        return len(self.scored)

    @property
    def passed(self) -> bool:
        return not self.error and self.total > 0 and self.score == self.total

    def format(self) -> str:
        lines = [f"grading {self.project}"]
        if self.minires:
            lines.append(f"minires imported from {self.minires}")
        numbers = " ".join(a.number for a in self.assignments)
        lines.append(f"random settings drawn with seed {self.seed} (repeat this run with: "
                     f"minires grade {numbers} --seed {self.seed})")
        for a in self.assignments:
            mine = [r for r in self.results if r.assignment == a.number]
            lines += ["", f"assignment {a.number}: {a.title} (tutorials/{a.tutorial})"]
            previous = None
            for r in mine:
                kind = "gradient check" if r.kind == "gradcheck" else "test"
                status = ("PASS" if r.passed else "FAIL") if r.scored else "----"
                lines.append(f"  {status}  {r.op}: {kind}: {r.name}")
                if not r.passed or not r.scored:
                    message = "(the same as above)" if r.message == previous else r.message
                    lines += [f"        {part}" for part in message.splitlines()]
                    previous = r.message
            mine = [r for r in mine if r.scored]
            if mine:
                lines.append(f"  assignment {a.number}: {sum(r.passed for r in mine)}/"
                             f"{len(mine)}")
        if self.error:
            lines += ["", "the checks could not run:", self.error, "", "score: 0"]
            return "\n".join(lines)
        grad = [r for r in self.scored if r.kind == "gradcheck"]
        tests = [r for r in self.scored if r.kind != "gradcheck"]
        lines += ["", f"score: {self.score}/{self.total} (gradient checks "
                  f"{sum(r.passed for r in grad)}/{len(grad)}, tests "
                  f"{sum(r.passed for r in tests)}/{len(tests)})"]
        if self.passed:
            lines.append("every check passed")
        return "\n".join(lines)


def default_project() -> Path:
    """The folder being graded when none is given: the current folder if it holds a
    ``minires`` package, else the project of the minires running this command."""
    here = Path.cwd()
    if (here / "minires" / "__init__.py").is_file():
        return here
    return PACKAGE_DIR.parent


def run_seed(seed=None) -> int:
    """``seed``, else ``MINIRES_SPEC_SEED`` if set, else a fresh one."""
    if seed is not None:
        return int(seed)
    given = os.environ.get("MINIRES_SPEC_SEED", "").strip()
    return int(given) if given else secrets.randbelow(2**31)


def grade(assignments=None, project=None, *, timeout: float = 600,
          python: str = sys.executable, seed: int | None = None) -> GradeReport:
    """Grade ``assignments`` (numbers like ``'05'``; None or 'all': every one) of the
    minires in ``project``, with the random settings drawn from ``seed`` (default:
    ``MINIRES_SPEC_SEED``, else a fresh seed). Returns a ``GradeReport``;
    ``report.format()`` is the text ``minires grade`` prints."""
    chosen = select(list(assignments) if assignments else None)
    project = Path(project).resolve() if project is not None else default_project().resolve()
    report = GradeReport(chosen, str(project), seed=run_seed(seed))
    if not (project / "minires" / "__init__.py").is_file():
        report.error = (f"no minires package in {project} (expected {project}/minires/"
                        "__init__.py); pass the student's project folder with --project")
        return report
    ops = [op for a in chosen for op in a.ops]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(project)] + ([env["PYTHONPATH"]]
                                                          if env.get("PYTHONPATH") else []))
    env.update(MINIRES_KERNELS="0", PYTHONDONTWRITEBYTECODE="1", MPLBACKEND="Agg")
    with tempfile.TemporaryDirectory(prefix="minires-grade-") as tmp:
        out = Path(tmp) / "results.json"
        command = [python, str(CHECKS), "--ops", ",".join(ops), "--project", str(project),
                   "--gradcheck", str(GRADECHECK), "--opspec", str(OPSPEC),
                   "--seed", str(report.seed), "--out", str(out)]
        try:
            run = subprocess.run(command, cwd=project, env=env, capture_output=True,
                                 text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            report.error = (f"the checks took longer than {timeout:g} s (an endless loop in "
                            "a backward pass?)")
            return report
        if not out.is_file():
            report.error = (f"the checks crashed (exit code {run.returncode}):\n"
                            + (run.stderr or run.stdout).strip()[-3000:])
            return report
        data = json.loads(out.read_text(encoding="utf-8"))
    if "error" in data:
        report.error = data["error"]
        return report
    report.minires = data["minires"]
    owner = {op: a.number for a in chosen for op in a.ops}
    report.results = [CheckResult(owner[r["op"]], r["op"], r["kind"], r["name"], r["passed"],
                                  r["message"], r.get("scored", True))
                      for r in data["results"]]
    report.results.sort(key=lambda r: r.assignment)  # stable: checks keep their order
    return report
