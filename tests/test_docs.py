"""The documentation site: it builds without warnings, and what it says is true.

* ``mkdocs build --strict`` passes (broken links, missing pages, API objects that do
  not resolve all fail it). Skipped, with the reason, where MkDocs is not installed,
  except when ``CI`` or ``MINIRES_REQUIRE_DOCS`` is set: there a missing MkDocs fails.
* Every ```python block of a page runs (one interpreter per page, blocks in order);
  ```py blocks are excerpts of files and are only shown.
* The getting-started page carries the README's quickstart commands word for word;
  every file path and every ``minires`` subcommand the pages name exists; the API page
  of ``F`` lists every function in ``minires.nn.functional``; the teaching page lists
  every assignment; the results table has the reproduction script's columns.
"""

from __future__ import annotations

import html
import importlib
import importlib.util
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_tutorials import EXPECTED

import minires.nn.functional as F
from minires.cli import main
from minires.course import ASSIGNMENTS, OPS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# the pages of this site's authors; docs/gradient_flow.md has tests of its own
PAGES = ["index.md", "architecture.md", "adding_an_op.md", "backend.md", "gradcheck.md",
         "pytorch_differences.md", "results.md", "teaching.md", "training.md"]


def read(page: str) -> str:
    return (DOCS / page).read_text(encoding="utf-8")


def fenced(text: str, language: str) -> list:
    """The bodies of the ```language blocks of a Markdown text (exact info string)."""
    pattern = re.compile(r"^```" + re.escape(language) + r"[ \t]*\n(.*?)^```[ \t]*$",
                         re.S | re.M)
    return pattern.findall(text)


DOCS_PACKAGES = {"mkdocs": "mkdocs", "mkdocstrings": "mkdocstrings[python]",
                 "material": "mkdocs-material", "mkdocs_jupyter": "mkdocs-jupyter"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site built once with ``mkdocs build --strict`` (the tutorials executed in
    fast mode): its folder and the build's log."""
    absent = [pip for module, pip in DOCS_PACKAGES.items()
              if importlib.util.find_spec(module) is None]
    if absent:
        message = (f"the docs build needs {', '.join(absent)}: pip install "
                   f"{' '.join(absent)} (or the docs extra, pip install '.[docs]')")
        if os.environ.get("CI") or os.environ.get("MINIRES_REQUIRE_DOCS"):
            pytest.fail(message)
        pytest.skip(message)
    folder = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1",
               MINIRES_TUTORIAL_OUT=str(folder / "tutorial-files"))
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                          str(ROOT / "mkdocs.yml"), "--site-dir", str(folder / "site")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log
    return folder / "site", log


def test_mkdocs_build_is_strictly_clean(site):
    """--strict fails on MkDocs's warnings; this also catches what it leaves out: the
    warnings of the notebook kernels and mkdocstrings' INFO that signatures cannot be
    formatted (no Black or Ruff)."""
    folder, log = site
    noisy = [line for line in log.splitlines()
             if "WARNING" in line or "ERROR" in line or "Black or Ruff" in line
             or "Traceback" in line]
    assert not noisy, "\n".join(noisy)
    assert (folder / "api" / "functional" / "index.html").is_file()


def page_text(path: Path) -> str:
    """What a reader sees of an HTML page: the text without tags and entities."""
    return html.unescape(re.sub(r"<[^>]+>", "", path.read_text(encoding="utf-8")))


# a figure drawn only on a GPU: the CPU run of the docs build has no image for it
GPU_ONLY_FIGURES = {"09_gpu_and_kernels.py": 1}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_tutorial_page_shows_its_outputs_and_figures(site, name):
    folder, _ = site
    page = folder / "tutorials" / Path(name).stem / "index.html"
    assert page.is_file(), f"tutorials/{name} is not on the site (mkdocs.yml nav)"
    source = (ROOT / "tutorials" / name).read_text(encoding="utf-8")
    raw = page.read_text(encoding="utf-8")
    text = page_text(page)
    assert "fast mode (MINIRES_FAST=1)" in text, "the build did not run it in fast mode"
    missing = [line for line in EXPECTED[name] if line not in text]
    assert not missing, f"the page of {name} lacks its printed results {missing}"
    figures = len(re.findall(r'<img[^>]*src="data:image/png', raw))
    drawn = source.count("_common.show(") - GPU_ONLY_FIGURES.get(name, 0)
    assert figures == drawn, f"{name}: {figures} figures on its page, {drawn} drawn"


def test_gpu_tutorial_renders_its_cpu_path_with_the_note(site):
    text = page_text(site[0] / "tutorials" / "09_gpu_and_kernels" / "index.html")
    assert "no CUDA GPU (or no CuPy) found: the GPU parts of this notebook are skipped" in text
    assert "(skipped: the same convolution on the GPU)" in text


def test_tutorials_index_links_every_tutorial(site):
    index = (site[0] / "tutorials" / "index.html").read_text(encoding="utf-8")
    for name in EXPECTED:
        assert f'href="{Path(name).stem}/"' in index, f"tutorials/README.md: link {name}"


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


# The public API: the names these modules export (``__all__``, or their public
# attributes defined in minires where they have none).
API_MODULES = ["minires", "minires.nn", "minires.nn.functional", "minires.nn.init",
               "minires.nn.utils", "minires.optim", "minires.optim.lr_scheduler",
               "minires.data", "minires.models", "minires.distributed", "minires.inspect",
               "minires.train"]


def _function_of(member):
    """The function behind a class attribute (method, property, static or class method)."""
    if isinstance(member, property):
        return member.fget
    if isinstance(member, (staticmethod, classmethod)):
        return member.__func__
    return member if inspect.isfunction(member) else None


def public_api() -> list:
    """``(names, docstring)`` of every public callable, class and method: ``names`` are
    the anchors the API pages may give it (where it is exported, where it is defined)."""
    entries, seen = [], set()
    for module_name in API_MODULES:
        module = importlib.import_module(module_name)
        exported = getattr(module, "__all__", None) or [
            n for n, v in vars(module).items()
            if getattr(v, "__module__", "").startswith("minires")]
        for name in exported:
            obj = getattr(module, name)
            if name.startswith("_") or inspect.ismodule(obj) or not callable(obj) \
                    or not getattr(obj, "__module__", "").startswith("minires") \
                    or id(obj) in seen:
                continue  # numpy's dtypes under minires's names are numpy's to document
            seen.add(id(obj))
            names = list(dict.fromkeys([f"{module_name}.{name}",
                                        f"{obj.__module__}.{obj.__qualname__}"]))
            entries.append((names, obj.__doc__))
            if inspect.isclass(obj):
                entries += [([f"{n}.{method}" for n in names], doc)
                            for method, doc in _documented_methods(obj)]
    return entries


def _documented_methods(cls) -> list:
    """``(name, docstring)`` of the public methods and properties a class defines that
    need their own docstring: all but overrides of a method documented in a base class
    (``forward``, ``step``, ``get_lr``: the base says what they do)."""
    out = []
    for name, member in vars(cls).items():
        function = _function_of(member)
        if name.startswith("_") or function is None:
            continue
        in_bases = [_function_of(vars(base)[name]) for base in cls.__mro__[1:]
                    if name in vars(base)]
        if function.__doc__ is None and any(f is not None and f.__doc__ for f in in_bases):
            continue
        out.append((name, function.__doc__))
    return out


def trivial(doc) -> bool:
    """No docstring, or a first line too short to say what the object computes."""
    first = inspect.cleandoc(doc or "").split("\n", 1)[0]
    return len(first.split()) < 3


def test_public_api_is_found():
    entries = public_api()
    names = {n for names, _ in entries for n in names}
    for name in ("minires.nn.functional.conv2d", "minires.Tensor.backward",
                 "minires.nn.Module.state_dict", "minires.optim.SGD",
                 "minires.distributed.DistributedDataParallel", "minires.train.run_training"):
        assert name in names, name
    assert len(entries) > 300


def test_every_public_function_has_a_docstring():
    missing = [names[0] for names, doc in public_api() if trivial(doc)]
    assert not missing, (f"{len(missing)} public names have no docstring (or one of fewer "
                         f"than three words): {missing}")


def test_every_public_function_is_in_the_api_pages(site):
    anchors = set()
    for page in (site[0] / "api").glob("*/index.html"):
        anchors |= set(re.findall(r'id="([\w.]+)"', page.read_text(encoding="utf-8")))
    missing = [names[0] for names, _ in public_api() if not anchors & set(names)]
    assert not missing, f"not in the API pages (docs/api/*.md): {missing}"


def recorded_runs() -> list:
    """The rows of the results page's recorded-runs table, as lists of cells."""
    table = read("results.md").split(reproduce_script().HEADER, 1)[1]
    return [[cell.strip() for cell in line.strip().strip("|").split(" | ")]
            for line in table.splitlines() if line.strip()]


def test_recorded_runs_are_runs_with_their_commands():
    rows = recorded_runs()
    assert rows, "the recorded-runs table of docs/results.md is empty"
    columns = len(reproduce_script().HEADER.splitlines()[0].strip("| ").split(" | "))
    for row in rows:
        assert len(row) == columns, row
        assert re.fullmatch(r"`(minires|python) .+`", row[-1]), f"no command: {row}"
        assert row[5].endswith("%"), f"no test accuracy: {row}"


def test_results_page_says_what_waits_for_a_gpu():
    glance = read("results.md").split("## At a glance", 1)[1].split("\n## ", 1)[0]
    waiting = glance.split("**Waiting for a GPU**", 1)[1]
    for command in ("scripts/gpu_acceptance.py", "scripts/reproduce_he2015.py",
                    "benchmarks/bench_gpu.py"):
        assert command in waiting, f"docs/results.md: {command} is not among what waits"
