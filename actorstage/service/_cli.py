"""``actorstage serve``: the runner service, configured by flags, environment and a file.

Settings come from, highest first: the command line, the environment, the
``--config`` TOML file, the defaults. Tokens come from the environment or a
file only, never from the command line (where ``ps`` would show them).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

__all__ = ["add_serve_parser", "serve_command"]

ENV_IMPORTS = "ACTORSTAGE_IMPORTS"  # comma-separated modules
ENV_TOKEN = "ACTORSTAGE_TOKEN"
ENV_CALLBACK_TOKEN = "ACTORSTAGE_CALLBACK_TOKEN"

FILE_KEYS = {"host", "port", "isolate", "imports", "callback", "callback_tls", "callback_ca",
             "callback_token_file", "metrics_port", "metrics_host", "token_file", "tls_cert",
             "tls_key", "shutdown", "grace", "max_finished", "max_pending_callbacks",
             "pipeline_runtime", "max_pipeline_sessions", "max_message_size"}


class ConfigError(Exception):
    pass


def add_serve_parser(commands: Any) -> None:
    serve = commands.add_parser(
        "serve", help="run the gRPC service (workflows and pipelines over gRPC)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False)  # so that `--token x` is an error, not `--token-file x`
    serve.add_argument("--config", metavar="FILE", help="a TOML file of settings")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 50051; 0: any)")
    serve.add_argument("--isolate", choices=["inline", "process"],
                       help="where executions run unless a request says (default inline)")
    serve.add_argument("--import", dest="imports", action="append", metavar="MODULE",
                       help=f"import MODULE to register its actions (repeatable; also "
                            f"${ENV_IMPORTS}, comma-separated)")
    serve.add_argument("--callback", metavar="HOST:PORT",
                       help="send progress events to this ProgressControl endpoint")
    serve.add_argument("--callback-tls", action="store_true", default=None,
                       help="call the callback endpoint over TLS")
    serve.add_argument("--callback-ca", metavar="FILE", help="CA bundle for the callback's TLS")
    serve.add_argument("--callback-token-file", metavar="FILE",
                       help=f"bearer token for the callback (or ${ENV_CALLBACK_TOKEN})")
    serve.add_argument("--metrics-port", type=int, metavar="N",
                       help="serve Prometheus metrics on http://HOST:N/metrics")
    serve.add_argument("--metrics-host", help="address of the metrics port (default 127.0.0.1)")
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


def _read_secret(path: str, what: str) -> str:
    try:
        text = Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} file {path!r}: {exc.strerror}") from None
    if not text:
        raise ConfigError(f"the {what} file {path!r} is empty")
    return text


def _file_settings(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        with open(path, "rb") as file:
            settings = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path!r}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the config file {path!r} is not valid TOML: {exc}") from None
    unknown = sorted(set(settings) - FILE_KEYS)
    if unknown:
        raise ConfigError(f"the config file {path!r} has unknown settings {unknown}; known: "
                          f"{sorted(FILE_KEYS)}")
    return settings


def build_config(args: argparse.Namespace, environ: dict[str, str]) -> Any:
    """The ``ServiceConfig`` that flags, environment and file make (flags win)."""
    from actorstage.service._server import ServiceConfig

    settings = _file_settings(args.config)
    if environ.get(ENV_IMPORTS):
        settings["imports"] = [name.strip() for name in environ[ENV_IMPORTS].split(",")
                               if name.strip()]
    for name in FILE_KEYS:
        value = getattr(args, name, None)
        if value is not None:
            settings[name] = value
    token_file = settings.pop("token_file", None)
    if environ.get(ENV_TOKEN):
        settings["token"] = environ[ENV_TOKEN]
    if token_file is not None:
        settings["token"] = _read_secret(token_file, "token")
    callback_token_file = settings.pop("callback_token_file", None)
    if environ.get(ENV_CALLBACK_TOKEN):
        settings["callback_token"] = environ[ENV_CALLBACK_TOKEN]
    if callback_token_file is not None:
        settings["callback_token"] = _read_secret(callback_token_file, "callback token")
    if "imports" in settings:
        settings["imports"] = tuple(settings["imports"])
    known = {field.name for field in fields(ServiceConfig)}
    config = ServiceConfig(**{key: value for key, value in settings.items() if key in known})
    try:
        config.check()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return config


async def _serve(config: Any) -> int:
    import asyncio

    import anyio

    from actorstage.service._server import open_service

    stop = anyio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stop.set)
    try:
        async with open_service(config) as server:
            where = f"{config.host}:{server.port}"
            metrics = (f", metrics on http://{config.metrics_host}:{server.metrics_port}/metrics"
                       if server.metrics_port is not None else "")
            print(f"actorstage serve: listening on {where}{metrics}", flush=True)
            await stop.wait()
            print(f"actorstage serve: stopping ({config.shutdown}, grace {config.grace:g}s)",
                  flush=True)
    finally:
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(number)
    print("actorstage serve: stopped", flush=True)
    return 0


def serve_command(args: argparse.Namespace) -> int:
    """Run the service until SIGTERM or SIGINT; 0 after a clean stop, 2 for bad settings."""
    from actorstage._run import run
    from actorstage.exceptions import InvalidDefinitionError

    try:
        config = build_config(args, dict(os.environ))
    except ConfigError as exc:
        print(f"actorstage serve: {exc}", file=sys.stderr)
        return 2
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # --import finds modules next to the caller
    import importlib

    for module in config.imports:
        try:
            importlib.import_module(module)
        except Exception as exc:
            print(f"actorstage serve: cannot import {module!r}: {type(exc).__name__}: {exc}",
                  file=sys.stderr)
            return 2
    try:
        return run(_serve, config)
    except InvalidDefinitionError as exc:  # the pipeline runtime.toml
        print(f"actorstage serve: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"actorstage serve: cannot listen on {config.host}:{config.port}: {exc}",
              file=sys.stderr)
        return 1
