"""The ``minires`` command."""

from __future__ import annotations

import argparse


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="minires", description="minires: learn deep "
                                     "learning by building it.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="train a tiny CNN made of minires ops and watch "
                               "its loss fall")
    demo.add_argument("--steps", type=int, default=150)
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        losses = run_demo(steps=args.steps)
        print(f"loss fell from {losses[0]:.3f} to {sum(losses[-10:]) / 10:.3f} "
              "(mean of the last 10 steps)")


if __name__ == "__main__":
    main()
