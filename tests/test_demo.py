from minires.cli import main
from minires.demo import run_demo


def test_demo_loss_falls(capsys):
    losses = run_demo(steps=60)
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10
    assert "step" in capsys.readouterr().out


def test_cli_demo_runs(capsys):
    main(["demo", "--steps", "30"])
    assert "loss fell from" in capsys.readouterr().out
