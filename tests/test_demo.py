import re

from minires.tools.cli import main
from minires.tools.demo import run_demo


def test_demo_loss_falls_by_half_and_prints_its_steps(capsys):
    losses = run_demo(steps=60)
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10
    assert "step" in capsys.readouterr().out


def test_cli_demo_prints_a_falling_loss(capsys):
    main(["demo", "--steps", "30"])
    first, last = map(float, re.search(r"loss fell from ([\d.]+) to ([\d.]+)",
                                       capsys.readouterr().out).groups())
    assert last < first
