"""``minires grade`` and ``minires make-student-copy``: their arguments and what they run."""

from __future__ import annotations

from .assignments import ASSIGNMENTS, OPS


def _assignment_list() -> str:
    lines = []
    for a in ASSIGNMENTS.values():
        lines.append(f"  {a.number}  {a.title} (tutorials/{a.tutorial})")
        lines += [f"        minires/{t.path}: {t.qualname}" for op in a.ops
                  for t in OPS[op].targets]
    return "\n".join(lines)


def add_parsers(commands) -> None:
    """Add the course kit's two subcommands to the ``minires`` command's subparsers."""
    import argparse

    numbers = ", ".join(sorted(ASSIGNMENTS))
    g = commands.add_parser(
        "grade", help="grade a student's backward passes (gradient checks and tests)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run the gradient checks and tests of an assignment on the minires in "
        "a project folder (default: the current folder if it holds a minires package) and "
        "print a score and what is wrong. Runs locally, offline. Exit status 0 only when "
        "every check passes.", epilog="assignments:\n" + _assignment_list())
    g.add_argument("assignments", nargs="*", metavar="NN",
                   help=f"assignment numbers ({numbers}) or 'all' (default: all)")
    g.add_argument("--project", default=None, metavar="PATH",
                   help="the student's project folder, holding its minires/ package")
    g.add_argument("--seed", type=int, default=None,
                   help="seed of the settings drawn at random (default: MINIRES_SPEC_SEED, "
                   "else a fresh one; the report prints it)")
    g.add_argument("--timeout", type=float, default=600,
                   help="seconds before the checks are stopped (default: %(default)s)")
    s = commands.add_parser(
        "make-student-copy", help="write a student copy: the project with the assignment's "
        "backward passes removed",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Copy this project (or, for an installed package, the package) into "
        "OUT and replace the bodies of the assignment's backward passes with stubs that "
        "raise a clear error. Everything else stays byte for byte. Writes OUT/ASSIGNMENTS.md.",
        epilog="assignments:\n" + _assignment_list())
    s.add_argument("out", metavar="OUT", help="a new (or empty) folder")
    s.add_argument("--assignment", "-a", dest="assignments", action="append", metavar="NN",
                   help=f"an assignment ({numbers}) or 'all'; repeat for several "
                   "(default: all)")
    s.add_argument("--keep-hints", action="store_true",
                   help="keep the math comment that opens each removed body")
    s.add_argument("--force", action="store_true", help="replace OUT if it is not empty")


def run(args) -> int:
    """Run a parsed ``grade`` or ``make-student-copy`` command; return the exit status."""
    if args.command == "grade":
        from .grader import grade

        try:
            report = grade(args.assignments or None, args.project, timeout=args.timeout,
                           seed=args.seed)
        except KeyError as error:
            print(f"minires grade: {error.args[0]}")
            return 2
        print(report.format())
        return 0 if report.passed else 1
    from .student_copy import StudentCopyError, make_student_copy

    try:
        result = make_student_copy(args.out, args.assignments, keep_hints=args.keep_hints,
                                   force=args.force)
    except (KeyError, StudentCopyError) as error:
        print(f"minires make-student-copy: {error.args[0]}")
        return 2
    print(f"student copy written to {result['out']} (assignments "
          f"{', '.join(result['assignments'])}); removed:")
    for item in result["stubbed"]:
        print(f"  {item}")
    if result["note"]:
        print(f"note: {result['note']}")
    print(f"see {result['out']}/ASSIGNMENTS.md; grade with: minires grade NN --project "
          f"{result['out']}")
    return 0
