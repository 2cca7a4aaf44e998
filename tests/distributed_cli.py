"""``minires train`` under ``mpiexec``, with a few things done to one rank on purpose.

tests/test_distributed_train.py runs ``mpiexec -n 2 python tests/distributed_cli.py
[options] -- ARGS`` instead of ``mpiexec -n 2 minires ARGS``: the same ``minires.tools.cli.main``,
plus, on the rank the options name:

* ``--signal RANK:STEP:NAME``: send itself SIGINT or SIGTERM right after optimizer step
  STEP (1-based, counted in this process), as a Ctrl-C that reached one rank only;
* ``--raise RANK:STEP:KIND``: raise after step STEP: ``bug`` (a RuntimeError, which no
  one catches) or ``user`` (a ValueError, which the command reports in one line);
* ``--rank-args RANK:ARGS``: extra command-line arguments for that rank alone (a
  setting that differs between ranks, a data folder that exists on one machine only);
* ``--audit DIR:OUT``: record every file this rank creates, writes, renames, removes
  or makes a folder of under DIR, into OUT.rank<N>.json when the process ends.
"""

from __future__ import annotations

import atexit
import builtins
import json
import os
import shlex
import signal
import sys


def rank() -> int:
    for name in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def after_step(step: int, action) -> None:
    """Run ``action`` after the optimizer's step number ``step`` in this process."""
    from minires.optim import SGD

    original, count = SGD.step, [0]

    def step_then_act(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        count[0] += 1
        if count[0] == step:
            action()
        return result

    SGD.step = step_then_act


def audit(folder: str, out: str) -> None:
    """Record this process's writes under ``folder``."""
    folder = os.path.abspath(folder)
    seen = []

    def note(what, path):
        if isinstance(path, (str, bytes, os.PathLike)):
            path = os.path.abspath(os.fsdecode(path))
            if path == folder or path.startswith(folder + os.sep):
                seen.append([what, path])

    original_open, original_os_open = builtins.open, os.open

    def watched_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+"):
            note(f"open {mode}", file)
        return original_open(file, mode, *args, **kwargs)

    def watched_os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            note("os.open", path)
        return original_os_open(path, flags, *args, **kwargs)

    builtins.open, os.open = watched_open, watched_os_open
    for name in ("replace", "rename", "remove", "unlink", "makedirs", "mkdir", "rmdir"):
        original = getattr(os, name)

        def watched(path, *args, _name=name, _original=original, **kwargs):
            note(_name, path)
            if _name in ("replace", "rename"):
                note(_name, args[0] if args else kwargs.get("dst"))
            return _original(path, *args, **kwargs)

        setattr(os, name, watched)

    def save():
        with original_open(f"{out}.rank{rank()}.json", "w") as f:
            json.dump(seen, f)

    atexit.register(save)


def main() -> None:
    argv = sys.argv[1:]
    cut = argv.index("--")
    options, args = argv[:cut], argv[cut + 1:]
    me = rank()
    for option, value in zip(options[::2], options[1::2]):
        if option == "--audit":
            folder, out = value.split(":")
            audit(folder, out)
            continue
        who, rest = value.split(":", 1)
        if int(who) != me:
            continue
        if option == "--signal":
            step, name = rest.split(":")
            number = getattr(signal, name)
            after_step(int(step), lambda number=number: os.kill(os.getpid(), number))
        elif option == "--raise":
            step, kind = rest.split(":")

            def fail(kind=kind, step=step):
                if kind == "user":
                    raise ValueError(f"deliberate mistake on rank {me} after step {step}")
                raise RuntimeError(f"deliberate failure on rank {me} after step {step}")

            after_step(int(step), fail)
        elif option == "--rank-args":
            args = args + shlex.split(rest)
        else:
            raise SystemExit(f"distributed_cli.py: unknown option {option}")
    from minires.tools.cli import main as minires

    minires(args)


if __name__ == "__main__":
    main()
