"""The course kit: a generated student copy fails the grader, the reference passes it.

Round trip: generate a student copy, grade it (low score, and messages that say what is
missing), put the instructor's files back (the reference solution), grade again (full
score). Each grading runs the checks in a fresh interpreter on the copy's own minires.
"""

import ast
import filecmp
import importlib.util
import shutil
from pathlib import Path

import pytest

import minires
import minires.opspec
from minires.tools.cli import main
from minires.tools.course import (
    ASSIGNMENTS,
    OPS,
    StudentCopyError,
    grade,
    make_student_copy,
    stub_source,
    stubbed_targets,
)
from minires.tools.course.assignments import Target
from minires.tools.course.student_copy import _find

# the checkout's package, also where CI installs minires without -e (the installed copy
# has no tutorials/ or tests/ beside it, and the copies below need them)
ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "minires"


def targets_of(*numbers):
    return sorted({f"minires/{t.path}:{t.qualname}" for n in numbers
                   for op in ASSIGNMENTS[n].ops for t in OPS[op].targets})


def test_every_target_exists_and_every_op_has_checks():
    for op in OPS.values():
        for t in op.targets:
            tree = ast.parse((PACKAGE / t.path).read_text(encoding="utf-8"))
            assert _find(tree, t.qualname) is not None, f"{t.path}: {t.qualname} not found"
    spec = importlib.util.spec_from_file_location("_course_checks",
                                                  PACKAGE / "tools" / "course" / "checks.py")
    checks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(checks)
    checks.bind(minires, minires.gradcheck, minires.opspec)
    checked = {}
    for op, kind, _, _ in checks.all_checks():
        checked.setdefault(op, set()).add(kind)
    for a in ASSIGNMENTS.values():
        for op in a.ops:
            assert checked.get(op) == {"gradcheck", "test"}, f"{op}: needs both kinds"
        if (ROOT / "tutorials").is_dir():
            assert (ROOT / "tutorials" / a.tutorial).is_file(), a.tutorial


def test_the_instructor_copy_has_no_stubs_and_passes_every_check(capsys):
    assert stubbed_targets(ROOT) == []
    with pytest.raises(SystemExit) as done:
        main(["grade", "all", "--project", str(ROOT)])
    out = capsys.readouterr().out
    assert done.value.code == 0, out
    assert "every check passed" in out and "FAIL" not in out


def test_round_trip_student_copy_fails_and_the_reference_passes(tmp_path, capsys):
    student = tmp_path / "student"
    with pytest.raises(SystemExit) as done:
        main(["make-student-copy", str(student), "-a", "05", "-a", "6"])
    assert done.value.code == 0
    assert sorted(stubbed_targets(student)) == sorted(targets_of("05", "06"))
    assert "## 05: Convolution" in (student / "ASSIGNMENTS.md").read_text()
    # every other file of the package is byte-identical to the instructor's
    changed = {"ops/conv.py", "ops/geometry.py", "ops/pool.py", "ops/norm.py"}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if "__pycache__" not in rel and rel not in changed:
            assert filecmp.cmp(path, student / "minires" / rel, shallow=False), rel
    capsys.readouterr()

    with pytest.raises(SystemExit) as done:
        main(["grade", "05", "--project", str(student)])
    out = capsys.readouterr().out
    assert done.value.code == 1
    assert "Conv2d.backward is not written yet (assignment 05)" in out
    score = next(line for line in out.splitlines() if line.startswith("score:"))
    got, total = map(int, score.split()[1].split("/"))
    assert total >= 8 and got == 0, score  # nothing the student has not written scores

    report = grade(["06"], student)
    assert not report.passed and report.score == 0 and report.total >= 16
    assert all("not written yet" in r.message for r in report.results if not r.passed)

    for name in changed:  # fill in the reference solution
        shutil.copyfile(PACKAGE / name, student / "minires" / name)
    with pytest.raises(SystemExit) as done:
        main(["grade", "05", "06", "--project", str(student)])
    out = capsys.readouterr().out
    assert done.value.code == 0, out
    assert "every check passed" in out and "FAIL" not in out and "----" not in out


def test_a_wrong_backward_is_caught_with_a_gradient_message(tmp_path):
    """BatchNorm without the path through the batch mean (a classic bug)."""
    student = tmp_path / "student"
    make_student_copy(student, ["06"], package_dir=PACKAGE)
    for name in ("ops/pool.py", "ops/norm.py", "ops/geometry.py"):
        shutil.copyfile(PACKAGE / name, student / "minires" / name)
    norm = student / "minires" / "ops" / "norm.py"
    source = norm.read_text()
    assert "gx += gb / M\n" in source
    norm.write_text(source.replace("gx += gb / M\n", "\n"))
    report = grade(["06"], student)
    failed = [r for r in report.results if not r.passed]
    assert failed and all(r.op == "batch_norm" for r in failed)
    assert any("wrong gradient: gradcheck failed" in r.message for r in failed)
    assert any("x.grad must be 0" in r.message and "path through the batch mean is missing"
               in r.message for r in failed)


def test_grader_reports_import_errors_and_missing_projects(tmp_path):
    report = grade(["04"], tmp_path)
    assert not report.passed and "no minires package" in report.error
    student = tmp_path / "student"
    make_student_copy(student, ["04"], package_dir=PACKAGE)
    (student / "minires" / "ops" / "loss.py").write_text("def broken(:\n")
    report = grade(["04"], student)
    assert not report.passed and "could not import minires" in report.error
    assert "SyntaxError" in report.format()


def test_stub_source_replaces_bodies_only():
    source = (
        "import numpy\r\n\r\n\r\n"
        "class Op:\r\n"
        "    @staticmethod\r\n"
        "    def backward(ctx,\r\n"
        "                 gy):  # a long signature\r\n"
        "        # y = 2x  =>  gx = 2 gy\r\n"
        "        g = 2 * gy\r\n"
        "        return g\r\n"
        "        # trailing note\r\n\r\n"
        "    def keep(self):\r\n"
        "        return 1\r\n\r\n\r\n"
        "def helper(x):\r\n"
        '    """Its interface stays."""\r\n'
        "    return x\r\n"
    )
    targets = [Target("ops/x.py", "Op.backward", "Return gx."),
               Target("ops/x.py", "helper", "Return x.")]
    out = stub_source(source, targets, "09")
    assert "2 * gy" not in out and "trailing note" not in out and "return x" not in out
    assert "# y = 2x" not in out
    assert "gy):  # a long signature\r\n" in out
    assert "    def keep(self):\r\n        return 1\r\n" in out
    assert '"""Its interface stays."""' in out and "Return gx." in out
    assert "\n" not in out.replace("\r\n", "")  # line endings kept
    assert "minires grade 09" in out
    hinted = stub_source(source, targets, "09", keep_hints=True)
    assert "        # y = 2x  =>  gx = 2 gy\r\n" in hinted and "2 * gy" not in hinted
    with pytest.raises(StudentCopyError, match="not found"):
        stub_source(source, [Target("ops/x.py", "Op.forward", "")], "09")


def test_student_copy_from_an_installed_package(tmp_path):
    site = tmp_path / "site-packages"
    shutil.copytree(PACKAGE, site / "minires",
                    ignore=shutil.ignore_patterns("__pycache__", "samples"))
    out = tmp_path / "student"
    result = make_student_copy(out, ["04"], package_dir=site / "minires")
    assert (out / "pyproject.toml").is_file() and not (out / "tests").exists()
    assert sorted(result["stubbed"]) == targets_of("04")
    # the copy says what it lacks, and points at no folder it does not have
    assert "no tutorials/ and no tests/" in result["note"]
    assigned = (out / "ASSIGNMENTS.md").read_text()
    assert "`tutorials/" not in assigned and "not in this copy" in assigned
    assert "source checkout" in assigned
    report = grade(["04"], out)
    assert report.total >= 8 and report.score == 0


def test_make_student_copy_refuses_a_used_folder(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit) as done:
        main(["make-student-copy", str(tmp_path), "-a", "04"])
    assert done.value.code == 2 and "not empty" in capsys.readouterr().out
    assert (tmp_path / "keep.txt").read_text() == "mine"
    with pytest.raises(SystemExit) as done:
        main(["grade", "99", "--project", str(tmp_path)])
    assert done.value.code == 2 and "no assignment" in capsys.readouterr().out


def test_a_fresh_copy_scores_zero_on_every_assignment_and_the_reference_full_marks(tmp_path):
    """Only what the student writes scores: no check passes on the stubs."""
    student = tmp_path / "student"
    make_student_copy(student, package_dir=PACKAGE)
    fresh = grade(None, student, seed=5)
    reference = grade(None, ROOT, seed=5)
    assert not fresh.error and not reference.error
    for a in ASSIGNMENTS:
        mine = [r for r in fresh.results if r.assignment == a]
        assert mine and not any(r.passed for r in mine), a
        assert all(r.scored for r in mine), a
    assert fresh.score == 0 and fresh.total == reference.total
    assert reference.passed and all(r.scored for r in reference.results)
    assert "seed 5" in fresh.format() and "--seed 5" in fresh.format()


def test_the_drawn_settings_come_from_the_printed_seed():
    one, again, other = (grade(["05"], ROOT, seed=s) for s in (7, 7, 8))
    names = [[r.name for r in report.results] for report in (one, again, other)]
    assert names[0] == names[1] != names[2]
    drawn = [n for n in names[0] if n.startswith("drawn")]
    assert any("dilation (1, 2)" in n for n in drawn)
    assert any("dilation (2, 1)" in n for n in drawn)


def test_every_assignment_removes_the_helpers_its_backward_would_call(tmp_path):
    """Alone, each assignment stubs all its targets: max pooling's backward is not one
    call to a window scatter left in the copy."""
    for number in ASSIGNMENTS:
        out = tmp_path / number
        result = make_student_copy(out, [number], package_dir=PACKAGE)
        assert sorted(result["stubbed"]) == targets_of(number), number
        assert sorted(stubbed_targets(out)) == targets_of(number), number
    assert "minires/ops/geometry.py:scatter_windows" in targets_of("06")
    both = make_student_copy(tmp_path / "both", ["05", "06"], package_dir=PACKAGE)
    assert both["stubbed"].count("minires/ops/geometry.py:scatter_windows") == 1
    text = (tmp_path / "both" / "ASSIGNMENTS.md").read_text()
    assert "scatter_windows` (shared with assignment 05: write it once)" in text


TUTORIAL_RUN = {"MINIRES_FAST": "1", "MPLBACKEND": "Agg"}


def run_tutorials_in_a_student_copy(tmp_path, names):
    import os
    import subprocess
    import sys

    student = tmp_path / "student"
    make_student_copy(student, package_dir=PACKAGE)
    outputs = {}
    for name in names:
        env = dict(os.environ, **TUTORIAL_RUN, PYTHONPATH=str(student),
                   MINIRES_TUTORIAL_OUT=str(tmp_path / "figures"))
        run = subprocess.run([sys.executable, str(student / "tutorials" / name)],
                             cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=600)
        output = run.stdout + run.stderr
        assert run.returncode == 0, f"{name} crashed in a student copy:\n{output[-3000:]}"
        assert "student copy: not written yet" in run.stdout, name
        outputs[name] = run.stdout
    return outputs


def test_the_assignment_tutorials_skip_unwritten_cells_in_a_student_copy(tmp_path):
    names = [a.tutorial for a in ASSIGNMENTS.values()]
    outputs = run_tutorials_in_a_student_copy(tmp_path, names)
    for name, out in outputs.items():
        assert "(skipped: this cell needs" in out and "not written yet in this student copy" \
            in out, name
    assert "Matmul.backward (assignment 02)" in outputs["02_tensors_and_functions.py"]


@pytest.mark.slow
def test_every_tutorial_runs_in_a_student_copy(tmp_path):
    root_tutorials = sorted(p.name for p in (ROOT / "tutorials").glob("[0-9][0-9]_*.py"))
    run_tutorials_in_a_student_copy(tmp_path, root_tutorials)
