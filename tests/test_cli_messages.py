"""What the ``minires`` commands print about themselves: help texts and ``minires info``."""

from __future__ import annotations

import re
import types

import pytest

from minires import backend
from minires.cli import main


def help_of(capsys, *command) -> str:
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    return capsys.readouterr().out


def test_no_help_text_shows_a_doubled_percent_sign(capsys):
    # argparse %-formats help strings but not descriptions: "%%" in a description prints
    commands = re.search(r"\{([a-z,-]+)\}", help_of(capsys)).group(1).split(",")
    for command in commands:
        text = help_of(capsys, command)
        assert "%%" not in text, f"minires {command} --help prints '%%':\n{text}"
    assert "at 50% and 75% of the epochs" in " ".join(help_of(capsys, "train").split())


def info(capsys) -> str:
    main(["info"])
    return capsys.readouterr().out


def test_info_says_the_kernels_are_off_without_cupy(capsys, monkeypatch):
    monkeypatch.setattr(backend, "cupy", None)
    monkeypatch.setattr(backend.cuda, "is_available", staticmethod(lambda: False))
    assert "CUDA kernels: off (no CuPy)" in info(capsys)


def test_info_says_the_kernels_are_off_without_a_gpu(capsys, monkeypatch):
    fake = types.SimpleNamespace(__version__="14.0")
    monkeypatch.setattr(backend, "cupy", fake)
    monkeypatch.setattr(backend.cuda, "is_available", staticmethod(lambda: False))
    monkeypatch.setattr(backend.cuda, "device_count", staticmethod(lambda: 0))
    assert "CUDA kernels: off (no CUDA GPU)" in info(capsys)


@pytest.mark.parametrize("enabled", [True, False])
def test_info_shows_the_kernel_switch_with_a_gpu(capsys, monkeypatch, enabled):
    fake = types.SimpleNamespace(__version__="14.0")
    monkeypatch.setattr(backend, "cupy", fake)
    monkeypatch.setattr(backend.cuda, "is_available", staticmethod(lambda: True))
    monkeypatch.setattr(backend.cuda, "device_count", staticmethod(lambda: 1))
    monkeypatch.setattr(backend, "kernels_enabled", lambda: enabled)
    expected = "on" if enabled else "off"
    assert f"CUDA kernels: {expected} (MINIRES_KERNELS)" in info(capsys)
