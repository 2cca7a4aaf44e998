"""The README's Python examples run as written."""

import pathlib
import re

import minires as mr

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert blocks, "README.md has no python example"
    for block in blocks:
        mr.manual_seed(0)
        exec(compile(block, "README.md", "exec"), {})
