"""The documentation site: it builds without warnings, and what it says is true.

* ``mkdocs build --strict`` passes (broken links, missing pages, API objects that do
  not resolve all fail it). Skipped, with the reason, where MkDocs is not installed,
  except when ``CI`` or ``MINIRES_REQUIRE_DOCS`` is set: there a missing MkDocs fails.
* Every ```python block of a page runs (one interpreter per page, blocks in order);
  ```py blocks are excerpts of files and are only shown.
* The getting-started page carries the README's quickstart commands word for word;
  every file path and every ``minires`` subcommand the pages name exists; the API page
  of ``F`` lists every function in ``minires.nn.functional``; the teaching page lists
  every assignment; the results table has the reproduction script's columns; the op
  table (``docs/ops.md``) is the one the op specs generate.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import minires.nn.functional as F
from minires.cli import main
from minires.course import ASSIGNMENTS, OPS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# the pages of this site's authors; docs/gradient_flow.md has tests of its own
PAGES = ["index.md", "architecture.md", "adding_an_op.md", "backend.md", "gradcheck.md",
         "ops.md", "pytorch_differences.md", "results.md", "teaching.md", "training.md"]


def read(page: str) -> str:
    return (DOCS / page).read_text(encoding="utf-8")


def fenced(text: str, language: str) -> list:
    """The bodies of the ```language blocks of a Markdown text (exact info string)."""
    pattern = re.compile(r"^```" + re.escape(language) + r"[ \t]*\n(.*?)^```[ \t]*$",
                         re.S | re.M)
    return pattern.findall(text)


def test_mkdocs_build_is_strictly_clean(tmp_path):
    if importlib.util.find_spec("mkdocs") is None or \
            importlib.util.find_spec("mkdocstrings") is None or \
            importlib.util.find_spec("material") is None:
        message = ('MkDocs is not installed: pip install mkdocs-material "mkdocstrings[python]" '
                   '(or the docs extra)')
        if os.environ.get("CI") or os.environ.get("MINIRES_REQUIRE_DOCS"):
            pytest.fail(message)
        pytest.skip(message)
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                          str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log
    assert "WARNING" not in log, log
    assert (tmp_path / "site" / "api" / "functional" / "index.html").is_file()


@pytest.mark.parametrize("page", [p for p in PAGES if "```python" in read(p)])
def test_python_blocks_run(page, tmp_path):
    code = "\n\n".join(fenced(read(page), "python"))
    script = tmp_path / "blocks.py"
    script.write_text(code, encoding="utf-8")
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"a python block of docs/{page} failed:\n{run.stderr}"


def _commands(markdown: str) -> list:
    """The command lines of the ```bash blocks, without comments and extra spaces."""
    return [" ".join(line.split(" #", 1)[0].split()) for block in fenced(markdown, "bash")
            for line in block.splitlines() if line.split(" #", 1)[0].strip()]


def test_getting_started_has_the_readme_quickstart_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    commands = _commands(quickstart)
    assert len(commands) >= 2, "README.md's quickstart has no commands"
    ours = _commands(read("index.md"))
    assert ours[:2] == commands[:2], "docs/index.md must open with the README's two commands"
    missing = [c for c in commands if c not in ours]
    assert not missing, f"docs/index.md lacks the README's quickstart commands {missing}"


def test_paths_named_in_the_pages_exist():
    missing = []
    for page in PAGES:
        for path in re.findall(r"`((?:minires|tests|tutorials|scripts|benchmarks|docs)/"
                               r"[A-Za-z0-9_./-]*)`", read(page)):
            if not (ROOT / path.rstrip("/")).exists():
                missing.append(f"docs/{page}: {path}")
    assert not missing, missing


def test_minires_commands_in_the_pages_exist(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    choices = re.search(r"\{([a-z,-]+)\}", capsys.readouterr().out).group(1).split(",")
    named = set()
    for page in PAGES:
        for block in fenced(read(page), "bash"):
            for line in block.splitlines():
                for match in re.finditer(r"(?:^|&& )minires ([a-z-]+)", line.strip()):
                    named.add((page, match.group(1)))
    assert named
    unknown = sorted(f"docs/{page}: minires {cmd}" for page, cmd in named
                     if cmd not in choices)
    assert not unknown, unknown


def test_functional_reference_lists_every_function():
    names = {n for n, v in vars(F).items() if not n.startswith("_") and callable(v)}
    text = read("api/functional.md")
    listed = set(re.findall(r"^\s+- (\w+)$", text, re.M)) | \
        set(re.findall(r"^::: minires\.ops\.\w+\.(\w+)$", text, re.M))
    assert names <= listed, f"add to docs/api/functional.md: {sorted(names - listed)}"
    assert listed <= names, f"not in minires.nn.functional: {sorted(listed - names)}"


def test_teaching_page_lists_every_assignment():
    text = read("teaching.md")
    for a in ASSIGNMENTS.values():
        row = next((line for line in text.splitlines() if line.startswith(f"| {a.number} |")
                    and a.tutorial in line and "`minires/" in line), None)
        assert row is not None, f"assignment {a.number} is missing from docs/teaching.md"
        for op in a.ops:
            for t in OPS[op].targets:
                assert f"`{t.qualname}`" in row and f"`minires/{t.path}`" in row, (a, t)


def reproduce_script():
    spec = importlib.util.spec_from_file_location("reproduce_he2015",
                                                  ROOT / "scripts" / "reproduce_he2015.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def assert_only_rows_follow(text: str, header: str) -> None:
    """Rows appended after the header must stay part of the markdown table."""
    after = text.split(header, 1)[1]
    for line in after.splitlines():
        assert line.startswith("|"), f"not a table row after the header: {line!r}"


def test_results_table_has_the_reproduction_script_columns():
    script = reproduce_script()
    text = read("results.md")
    assert script.HEADER in text, "docs/results.md must end with the script's table header"
    assert_only_rows_follow(text, script.HEADER)


def test_reproduction_script_keeps_the_table_whole(tmp_path, monkeypatch):
    """Two reproductions, each finishing plain-20 and plain-56, append to one results
    file: four rows in one table; each one's degradation comparison is in its own file."""
    script = reproduce_script()

    def finished(out, model, plan):
        deep = model == "plain56"
        history = [{"epoch": 1, "test_acc": 0.80 if deep else 0.90, "test_loss": 0.5,
                    "train_acc": 0.85 if deep else 0.95, "train_loss": 0.4}]
        return {"model": model, "state": "done", "epoch": 2, "step": 0, "phase": "train",
                "steps": 391, "history": history, "global_step": 391}

    monkeypatch.setattr(script, "model_status", finished)
    results = tmp_path / "results.md"
    for run in ("a", "b"):
        assert script.main(["--models", "plain20,plain56", "--epochs", "1", "--device", "cpu",
                            "--out", str(tmp_path / run), "--results", str(results),
                            "--no-progress"]) == 0
    text = results.read_text()
    assert_only_rows_follow(text, script.HEADER)
    assert text.count("| plain56 |") == 2 and text.count("| plain20 |") == 2
    for run in ("a", "b"):
        summary = (tmp_path / run / "degradation.md").read_text().splitlines()
        assert len(summary) == 1 and "plain56 vs plain20" in summary[0], summary
        assert "WORSE (degradation)" in summary[0], summary


def test_the_reproduction_commands_run_the_same_configuration(monkeypatch, capsys):
    """Each results row names its `minires train` command: that command must train
    what the script trained."""
    import shlex

    import minires.train
    from minires import cli

    config = dict(model="resnet56", dataset="cifar10", epochs=30, schedule="onecycle",
                  device="cuda", data_root="data", download=True, seed=3, limit_train=512,
                  matmul_precision="high", out="runs/he2015/resnet56")
    seen = {}

    def fake_run_training(**kwargs):
        seen.update(kwargs)
        return {"test_acc": 0.5, "checkpoint": "c", "log": "l", "plot": "p"}

    monkeypatch.setattr(minires.train, "run_training", fake_run_training)
    cli.main(shlex.split(reproduce_script().train_command(config))[1:])
    assert {k: seen[k] for k in config} == config


def test_the_op_table_is_generated_from_the_specs():
    from minires.opspec import table

    assert read("ops.md") == table.markdown(), (
        "docs/ops.md is out of date: python -m minires.opspec.table > docs/ops.md")
