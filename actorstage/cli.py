"""The ``actorstage`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= 600:
        raise argparse.ArgumentTypeError(f"--duration must be in (0, 600] seconds, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="actorstage", description=__doc__)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command")
    demo = commands.add_parser("demo", help="watch a supervision tree crash, restart and escalate")
    demo.add_argument("--duration", type=_positive_seconds, default=12.0,
                      help="seconds to run (default 12)")
    demo.add_argument("--seed", type=int, default=7, help="seed of the crash timings (default 7)")
    view = demo.add_mutually_exclusive_group()
    view.add_argument("--live", dest="live", action="store_true", default=None,
                      help="always render the live view")
    view.add_argument("--plain", dest="live", action="store_false",
                      help="no live view; print the summary only")
    flow = commands.add_parser(
        "run-workflow", help="run a workflow definition (JSON or YAML) with live progress")
    flow.add_argument("file", help="the workflow definition: .json, .yaml or .yml")
    flow.add_argument("--spawn", action="store_true",
                      help="run the workflow in a child process")
    flow.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                      help="import MODULE first, to register its actions (repeatable)")
    cleanup = commands.add_parser(
        "cleanup", help="remove the shared memory and socket directories of dead actorstage "
                        "processes (safe while others run)")
    cleanup.add_argument("--dry-run", action="store_true",
                         help="list what would be removed; remove nothing")
    from actorstage.pipelines._cli import add_run_pipeline_parser
    from actorstage.service._cli import add_serve_parser

    add_run_pipeline_parser(commands)
    add_serve_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from actorstage import __version__

        print(__version__)
        return 0
    if args.command == "demo":
        from actorstage import run
        from actorstage._demo import run_demo

        try:
            return run(run_demo, args.duration, args.seed, args.live)
        except KeyboardInterrupt:
            print("actorstage: interrupted", file=sys.stderr)
            return 130
    if args.command == "run-workflow":
        from actorstage.workflows._cli import run_workflow_command

        try:
            return run_workflow_command(args.file, args.spawn, args.imports)
        except KeyboardInterrupt:
            print("actorstage: interrupted", file=sys.stderr)
            return 130
    if args.command == "run-pipeline":
        from actorstage.pipelines._cli import run_pipeline_command

        return run_pipeline_command(args)
    if args.command == "cleanup":
        return _cleanup(args.dry_run)
    if args.command == "serve":
        from actorstage.service._cli import serve_command

        return serve_command(args)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())


def _cleanup(dry_run: bool) -> int:
    """``actorstage cleanup``: what killed processes (and their guards) could not remove."""
    import shutil

    from actorstage.pipelines._shm import SHM_DIR, cleanup
    from actorstage.transport._server import dead_socket_dirs

    verb = "would remove" if dry_run else "removed"
    removed, live, unmarked = cleanup(dry_run)
    for name in removed:
        print(f"{verb} {SHM_DIR / name}")
    directories = dead_socket_dirs()
    for directory in directories:
        if not dry_run:
            shutil.rmtree(directory, ignore_errors=True)
        print(f"{verb} {directory}")
    sessions = sum(1 for name in removed if name.endswith("-session"))
    print(f"actorstage cleanup: {verb} {len(removed)} shared-memory file(s) of {sessions} dead "
          f"pipeline session(s) and {len(directories)} socket directory(ies) of dead actor "
          f"systems; {live} live session(s) left alone")
    if unmarked:
        print(f"actorstage cleanup: {unmarked} file(s) in {SHM_DIR} named actorstage-* belong "
              "to no session marker (an older actorstage, or another program); left alone")
    return 0
