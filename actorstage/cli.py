"""The ``actorstage`` command line (also ``python -m actorstage``).

Every subcommand exits 0 on success, 1 when the work itself failed, 2 for a
usage, setting or definition problem (a bad flag, file, module or port) and
130 when interrupted. Subcommands import their code only when they run, so
``--help`` is fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

__all__ = ["import_modules", "main"]

ENV_IMPORTS = "ACTORSTAGE_IMPORTS"  # comma-separated modules
ENV_TOKEN = "ACTORSTAGE_TOKEN"
ENV_CALLBACK_TOKEN = "ACTORSTAGE_CALLBACK_TOKEN"

EXIT_CODES = """exit status:
  0    success
  1    the {what} failed
  2    a usage, setting or definition problem (the message says which)
  130  interrupted (Ctrl-C)"""


def import_modules(modules: Sequence[str]) -> None:
    """Import ``modules`` as every subcommand's ``--import`` does: the current directory first.

    Raises ``InvalidDefinitionError`` naming the module and what went wrong.
    """
    from actorstage._imports import import_modules as load

    load(modules, [os.getcwd()])


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= 600:
        raise argparse.ArgumentTypeError(f"--duration must be in (0, 600] seconds, got {text!r}")
    return value


def _command(commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
             summary: str, description: str, examples: str,
             what: str) -> argparse.ArgumentParser:
    return commands.add_parser(
        name, help=summary, description=f"{summary[0].upper()}{summary[1:]}.\n\n{description}",
        epilog=f"examples:\n{examples}\n\n{EXIT_CODES.format(what=what)}",
        formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)


def _observe_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--observe", nargs="?", const="127.0.0.1:8765", default=None,
                        type=_address, metavar="[HOST:]PORT",
                        help="serve the live observer page too (default 127.0.0.1:8765)")


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected [HOST:]PORT, got {text!r}") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535, got {number}")
    return (host.strip("[]") or "127.0.0.1"), number


def _import_flag(parser: argparse.ArgumentParser, registers: str) -> None:
    parser.add_argument("--import", dest="imports", action="append", default=[],
                        metavar="MODULE",
                        help=f"import MODULE first, to register its {registers} (repeatable; "
                             "modules in the current directory are found)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="actorstage", description="Supervised asyncio actors, workflows and pipelines, "
        "in one process or in child processes.", allow_abbrev=False,
        epilog="Run `actorstage COMMAND --help` for a command's options, examples and exit "
               "status.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = _command(
        commands, "demo", "watch a supervision tree crash, restart and escalate",
        "Workers crash at random; their supervisors restart them, and when a\n"
        "supervisor's children crash too often it escalates to its own supervisor.\n"
        "Each restart and escalation is printed as it happens, with a summary at\n"
        "the end (or on Ctrl-C). With rich installed, a live tree is drawn too.",
        "  actorstage demo\n  actorstage demo --duration 5 --plain", "demo")
    demo.add_argument("--duration", type=_positive_seconds, default=None,
                      help="seconds to run (default 12; 300 with --observe)")
    demo.add_argument("--seed", type=int, default=7, help="seed of the crash timings (default 7)")
    view = demo.add_mutually_exclusive_group()
    view.add_argument("--live", dest="live", action="store_true", default=None,
                      help="draw the live tree (needs rich: pip install rich)")
    view.add_argument("--plain", dest="live", action="store_false",
                      help="plain text only, even on a terminal with rich installed")
    _observe_flag(demo)

    observe = _command(
        commands, "observe", "watch the demo's supervision tree in the browser",
        "The demo's tree (see `actorstage demo`) with the live observer page: the\n"
        "tree with each actor's status, restarts, mailbox and messages per second,\n"
        "the crashes with their tracebacks, escalations, pauses. The page's pause,\n"
        "resume, restart and stop buttons work with the token in the printed URL.\n"
        "In your own program: `async with system.observer(port=8765) as observer`.",
        "  actorstage observe\n  actorstage observe --port 9000 --duration 60", "demo")
    observe.add_argument("--duration", type=_positive_seconds, default=300.0,
                         help="seconds to run (default 300)")
    observe.add_argument("--seed", type=int, default=7,
                         help="seed of the crash timings (default 7)")
    observe.add_argument("--host", default="127.0.0.1",
                         help="address to serve the page on (default 127.0.0.1)")
    observe.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any)")

    flow = _command(
        commands, "run-workflow", "run a workflow definition (JSON or YAML) with live progress",
        "Either dialect: stages and actions, or the CNCF Serverless Workflow DSL 1.x\n"
        "(a definition with document.dsl). Prints each progress event, log line and\n"
        "store change as it happens, then a table of the actions and the final store\n"
        "(a Serverless Workflow's output) as JSON.",
        "  actorstage run-workflow flow.yaml\n"
        "  actorstage run-workflow flow.yaml --spawn --import my_actions\n"
        "  actorstage run-workflow order.sw.yaml --input '{\"orderId\": 7}'", "workflow")
    flow.add_argument("file", help="the workflow definition: .json, .yaml or .yml")
    flow.add_argument("--spawn", action="store_true",
                      help="run the workflow in a child process")
    flow.add_argument("--input", metavar="JSON",
                      help="the initial store (a Serverless Workflow's input): a JSON "
                           "object, or @FILE")
    _allow_run_flag(flow)
    _import_flag(flow, "actions")

    pipe = _command(
        commands, "run-pipeline", "run a pipeline manifest over inputs, with progress",
        "Outputs go to stdout as JSON lines, {\"node_id\": ..., \"item\": ...}; the\n"
        "progress line and the per-node table go to stderr, so stdout can be piped.",
        "  actorstage run-pipeline pipeline.yaml --input speech.wav\n"
        "  seq 10 | actorstage run-pipeline double.yaml --input - --output out.jsonl",
        "pipeline")
    pipe.add_argument("manifest", help="the pipeline manifest: .json, .yaml or .yml")
    pipe.add_argument("--input", dest="inputs", action="append", default=[], metavar="FILE",
                      help="an input (repeatable): .wav gives one Audio item, .json one item, "
                           ".jsonl one item per line, - one item per line of stdin (JSON), "
                           "anything else its bytes")
    _import_flag(pipe, "node types")
    pipe.add_argument("--runtime", metavar="FILE",
                      help="runtime.toml with service-wide pipeline defaults")
    pipe.add_argument("--strict", action="store_true",
                      help="refuse manifest keys actorstage does not use (by default they are "
                           "kept, and named on stderr)")
    pipe.add_argument("--output", metavar="FILE", default="-",
                      help="where the outputs go, as JSON lines (default -: stdout)")
    pipe.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                      help="the progress line on stderr: on a terminal (auto), always or never")

    _add_serve(commands)

    protos = _command(
        commands, "protos", "print where the service's .proto files are, for protoc -I",
        "The .proto files ship inside the package, under actorstage_proto/v1/: code\n"
        "generated from them lands in an actorstage_proto package, next to actorstage.\n"
        "The protobuf package, services and methods are actorstage.v1.*.",
        "  actorstage protos --list\n"
        "  python -m grpc_tools.protoc -I \"$(actorstage protos)\" --python_out=. \\\n"
        "      --grpc_python_out=. actorstage_proto/v1/runner.proto", "command")
    protos.add_argument("--list", action="store_true",
                        help="list the files (relative to the directory) instead")

    cleanup = _command(
        commands, "cleanup", "remove what killed actorstage processes left behind",
        "Removes the shared memory of pipeline sessions whose processes are all\n"
        "dead and the socket directories of dead actor systems. Live sessions and\n"
        "systems are left alone, so it is safe to run at any time.",
        "  actorstage cleanup --dry-run\n  actorstage cleanup", "cleanup")
    cleanup.add_argument("--dry-run", action="store_true",
                         help="list what would be removed; remove nothing")

    join = _command(
        commands, "join", "host a process actor of a parent that placed it here",
        "For a process that something other than its parent starts (a container,\n"
        "a pod, systemd, a Ray actor): it connects back to the parent named in its\n"
        "join bundle and runs the actor the parent sends it, as any process actor.\n"
        "The bundle (address, one-time token and secret, TLS certificate) comes\n"
        "from $ACTORSTAGE_JOIN or a file, never from the command line; the parent's\n"
        "ProcessOptions(placement=JoinPlacement(launch)) makes it for launch().\n"
        "The actor's module must be importable here.",
        "  actorstage join --bundle-file /run/secrets/actorstage-join\n"
        "  ACTORSTAGE_JOIN=... actorstage join", "actor")
    join.add_argument("--bundle-file", metavar="FILE",
                      help="read the join bundle from FILE instead of $ACTORSTAGE_JOIN")
    return parser


def _add_serve(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = _command(
        commands, "serve", "run the gRPC service: workflows and pipelines for any client",
        "Settings come from, highest first: the command line, the environment, the\n"
        "--config TOML file, the defaults. Tokens come from the environment or a file\n"
        "only, never from the command line (where ps would show them).\n\n"
        "The first line printed is always `actorstage serve: listening on HOST:PORT`\n"
        "(an IPv6 HOST in brackets), once the port accepts calls.\n\n"
        "Environments made for RemoteMedia's server (GRPC_BIND_ADDRESS,\n"
        "GRPC_REQUIRE_AUTH, GRPC_AUTH_TOKENS) and Stigmer's runner (GRPC_PORT,\n"
        "STIGMER_SERVICE_ENDPOINT, STIGMER_SERVICE_API_KEY, STIGMER_SERVICE_USE_TLS)\n"
        "work unchanged.",
        "  actorstage serve --port 50051 --import my_actions\n"
        "  ACTORSTAGE_TOKEN=s3cret actorstage serve --isolate process", "service")
    serve.add_argument("--config", metavar="FILE", help="a TOML file of settings")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 50051; 0: any)")
    serve.add_argument("--isolate", choices=["inline", "process"],
                       help="where executions run unless a request says (default inline)")
    serve.add_argument("--import", dest="imports", action="append", metavar="MODULE",
                       help=f"import MODULE to register its actions and node types "
                            f"(repeatable; modules in the current directory are found; also "
                            f"${ENV_IMPORTS}, comma-separated)")
    serve.add_argument("--callback", metavar="HOST:PORT",
                       help="send progress events to this ProgressControl endpoint")
    serve.add_argument("--callback-tls", action="store_true", default=None,
                       help="call the callback endpoint over TLS")
    serve.add_argument("--callback-ca", metavar="FILE", help="CA bundle for the callback's TLS")
    serve.add_argument("--callback-token-file", metavar="FILE",
                       help=f"bearer token for the callback (or ${ENV_CALLBACK_TOKEN})")
    serve.add_argument("--stigmer-endpoint", metavar="HOST:PORT",
                       help="send Stigmer's updateStatus calls there (or "
                            "$STIGMER_SERVICE_ENDPOINT; the key: $STIGMER_SERVICE_API_KEY)")
    serve.add_argument("--stigmer-tls", action=argparse.BooleanOptionalAction, default=None,
                       help="call the Stigmer endpoint over TLS (default on, as Stigmer's "
                            "runner; or $STIGMER_SERVICE_USE_TLS=false)")
    serve.add_argument("--stigmer-ca", metavar="FILE", help="CA bundle for the Stigmer TLS")
    serve.add_argument("--metrics-port", type=int, metavar="N",
                       help="serve Prometheus metrics on http://HOST:N/metrics")
    serve.add_argument("--metrics-host", help="address of the metrics port (default 127.0.0.1)")
    serve.add_argument("--observer-port", type=int, metavar="N",
                       help="serve the live observer page on http://HOST:N/ (its pause, "
                            "resume, restart and stop need $ACTORSTAGE_OBSERVER_TOKEN)")
    serve.add_argument("--observer-host",
                       help="address of the observer port (default 127.0.0.1)")
    serve.add_argument("--token-file", metavar="FILE",
                       help=f"callers must send this bearer token (or ${ENV_TOKEN})")
    serve.add_argument("--tls-cert", metavar="PEM", help="serve TLS with this certificate chain")
    serve.add_argument("--tls-key", metavar="PEM", help="... and this private key")
    serve.add_argument("--shutdown", choices=["drain", "cancel"],
                       help="on SIGTERM: let running executions finish, or cancel them "
                            "(default cancel)")
    serve.add_argument("--grace", type=float, metavar="SECONDS",
                       help="how long executions get to end on SIGTERM (default 10)")
    serve.add_argument("--pipeline-runtime", metavar="FILE",
                       help="a runtime.toml: pipeline settings under every manifest, and the "
                            "interpreter, venv, import paths and modules of node code")
    serve.add_argument("--max-pipeline-sessions", type=int, metavar="N",
                       help="pipeline sessions that may run at once (default 16)")
    serve.add_argument("--max-message-size", type=int, metavar="BYTES",
                       help="the largest request message any RPC accepts; larger ones get "
                            "RESOURCE_EXHAUSTED (default 67108864, 64 MiB)")
    serve.add_argument("--state", metavar="URL",
                       help="where executions are kept so that they survive the service: "
                            "sqlite:///PATH, or memory (default: a SQLite file in "
                            "$ACTORSTAGE_STATE_DIR or ~/.local/state/actorstage; also "
                            "$ACTORSTAGE_STATE)")
    serve.add_argument("--retention", type=float, metavar="SECONDS",
                       help="how long ended executions stay in the state (default 604800, "
                            "7 days; at most 10000 of them, the file key retention_count)")
    _allow_run_flag(serve)


def _allow_run_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-run", metavar="KINDS", type=_run_kinds,
                        help="let Serverless Workflows run processes: shell, script or "
                             "shell,script (off by default; or $ACTORSTAGE_SERVERLESS_RUN)")


def _run_kinds(text: str) -> str:
    kinds = [kind.strip() for kind in text.split(",") if kind.strip()]
    unknown = [kind for kind in kinds if kind not in ("shell", "script")]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"{text!r}: give shell, script or shell,script")
    return ",".join(kinds)


def allow_runs(kinds: str | None) -> None:
    """``--allow-run``: set for this process and the child processes it starts."""
    if kinds:
        from actorstage.serverless._process import RUN_ENV

        os.environ[RUN_ENV] = kinds


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from actorstage import __version__

        print(__version__)
        return 0
    if args.command in ("demo", "observe"):
        from actorstage._demo import demo_command

        observe = (args.host, args.port) if args.command == "observe" else args.observe
        duration = args.duration or (300.0 if observe else 12.0)
        return demo_command(duration, args.seed, getattr(args, "live", None), observe)
    if args.command == "run-workflow":
        from actorstage.workflows._cli import run_workflow_command

        allow_runs(args.allow_run)
        return run_workflow_command(args.file, args.spawn, args.imports, args.input)
    if args.command == "run-pipeline":
        from actorstage.pipelines._cli import run_pipeline_command

        return run_pipeline_command(args)
    if args.command == "protos":
        from actorstage.protos import include_dir

        root = include_dir()
        if args.list:
            for path in sorted(root.rglob("*.proto")):
                print(path.relative_to(root))
        else:
            print(root)
        return 0
    if args.command == "cleanup":
        return _cleanup(args.dry_run)
    if args.command == "join":
        from actorstage.transport._child import join_main

        bundle = None
        if args.bundle_file is not None:
            try:
                with open(args.bundle_file) as file:
                    bundle = file.read()
            except OSError as exc:
                print(f"actorstage join: cannot read {args.bundle_file}: {exc.strerror}",
                      file=sys.stderr)
                return 2
        return join_main(bundle)
    if args.command == "serve":
        from actorstage.service._cli import serve_command

        return serve_command(args)
    parser.print_help()
    return 2


def _cleanup(dry_run: bool) -> int:
    """``actorstage cleanup``: what killed processes (and their guards) could not remove."""
    import shutil

    from actorstage._shm import SHM_DIR, cleanup
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


if __name__ == "__main__":
    sys.exit(main())
