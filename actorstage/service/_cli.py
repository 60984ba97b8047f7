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

from actorstage.cli import ENV_CALLBACK_TOKEN, ENV_IMPORTS, ENV_TOKEN, import_modules

__all__ = ["serve_command"]

FILE_KEYS = {"host", "port", "isolate", "imports", "callback", "callback_tls", "callback_ca",
             "callback_token_file", "metrics_port", "metrics_host", "observer_port",
             "observer_host", "token_file", "tls_cert",
             "tls_key", "shutdown", "grace", "max_finished", "max_pending_callbacks",
             "pipeline_runtime", "max_pipeline_sessions", "max_message_size",
             "stigmer_endpoint", "stigmer_tls", "stigmer_ca", "stigmer_api_key_file",
             "state", "retention", "retention_count"}


class ConfigError(Exception):
    pass


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


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _remotemedia_settings(environ: dict[str, str]) -> dict[str, Any]:
    """The settings of RemoteMedia's server environment (``GRPC_BIND_ADDRESS``,
    ``GRPC_REQUIRE_AUTH``, ``GRPC_AUTH_TOKENS``), so that actorstage replaces it in a
    deployment unchanged; actorstage's own variables and flags win over them."""
    settings: dict[str, Any] = {}
    address = environ.get("GRPC_BIND_ADDRESS", "").strip()
    if address:
        host, colon, port = address.rpartition(":")
        if not colon or not port.isdigit():
            raise ConfigError(f"GRPC_BIND_ADDRESS is HOST:PORT, got {address!r}")
        settings["host"], settings["port"] = host.strip("[]") or "0.0.0.0", int(port)
    require = environ.get("GRPC_REQUIRE_AUTH", "").strip().lower()
    if require not in _TRUE | _FALSE:
        raise ConfigError(f"GRPC_REQUIRE_AUTH is true or false, got {require!r}")
    if require in _TRUE:
        tokens = tuple(token.strip() for token in environ.get("GRPC_AUTH_TOKENS", "").split(",")
                       if token.strip())
        if not tokens:
            raise ConfigError("GRPC_REQUIRE_AUTH is true but GRPC_AUTH_TOKENS names no token "
                              "(comma-separated)")
        settings["token"], settings["tokens"] = tokens[0], tokens[1:]
    return settings


def _stigmer_settings(environ: dict[str, str]) -> dict[str, Any]:
    """The settings of Stigmer's workflow runner environment: ``GRPC_PORT``, and where
    its status callback goes, ``STIGMER_SERVICE_ENDPOINT``, ``STIGMER_SERVICE_API_KEY``,
    ``STIGMER_SERVICE_USE_TLS`` (and the names its code reads, ``STIGMER_BACKEND_ENDPOINT``
    and ``STIGMER_API_KEY``). ``GRPC_PORT`` sets the port only: the address stays
    loopback unless ``--host`` (or ``GRPC_BIND_ADDRESS``) says otherwise."""
    settings: dict[str, Any] = {}
    port = environ.get("GRPC_PORT", "").strip()
    if port:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"GRPC_PORT is a port number in 1-65535, got {port!r}")
        settings["port"] = int(port)
    for name in ("STIGMER_SERVICE_ENDPOINT", "STIGMER_BACKEND_ENDPOINT"):
        if environ.get(name, "").strip():
            settings["stigmer_endpoint"] = environ[name].strip()
            break
    for name in ("STIGMER_SERVICE_API_KEY", "STIGMER_API_KEY"):
        if environ.get(name, "").strip():
            settings["stigmer_api_key"] = environ[name].strip()
            break
    tls = environ.get("STIGMER_SERVICE_USE_TLS", "").strip().lower()
    if tls:
        if tls not in _TRUE | _FALSE:
            raise ConfigError(f"STIGMER_SERVICE_USE_TLS is true or false, got {tls!r}")
        settings["stigmer_tls"] = tls in _TRUE
    return settings


def build_config(args: argparse.Namespace, environ: dict[str, str]) -> Any:
    """The ``ServiceConfig`` that flags, environment and file make (flags win)."""
    from actorstage.service._server import ServiceConfig

    settings = _file_settings(args.config)
    settings.update(_stigmer_settings(environ))
    settings.update(_remotemedia_settings(environ))
    if "pipeline_runtime" not in settings and Path("runtime.toml").is_file():
        settings["pipeline_runtime"] = "runtime.toml"  # where RemoteMedia's server looks
    if environ.get("ACTORSTAGE_STATE"):
        settings["state"] = environ["ACTORSTAGE_STATE"]
    if environ.get(ENV_IMPORTS):
        settings["imports"] = [name.strip() for name in environ[ENV_IMPORTS].split(",")
                               if name.strip()]
    for name in FILE_KEYS:
        value = getattr(args, name, None)
        if value is not None:
            settings[name] = value
    if environ.get("ACTORSTAGE_OBSERVER_TOKEN"):
        settings["observer_token"] = environ["ACTORSTAGE_OBSERVER_TOKEN"]
    token_file = settings.pop("token_file", None)
    if environ.get(ENV_TOKEN):
        settings["token"] = environ[ENV_TOKEN]
        settings.pop("tokens", None)
    if token_file is not None:
        settings["token"] = _read_secret(token_file, "token")
        settings.pop("tokens", None)
    callback_token_file = settings.pop("callback_token_file", None)
    if environ.get(ENV_CALLBACK_TOKEN):
        settings["callback_token"] = environ[ENV_CALLBACK_TOKEN]
    if callback_token_file is not None:
        settings["callback_token"] = _read_secret(callback_token_file, "callback token")
    stigmer_key_file = settings.pop("stigmer_api_key_file", None)
    if stigmer_key_file is not None:
        settings["stigmer_api_key"] = _read_secret(stigmer_key_file, "Stigmer API key")
    if "imports" in settings:
        settings["imports"] = tuple(settings["imports"])
    if "state" not in settings:  # the command line keeps its executions by default
        from actorstage.workflows._state import state_directory

        settings["state"] = f"sqlite:///{state_directory() / 'runner.db'}"
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

    from actorstage.service._server import RunnerServer

    stop = anyio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stop.set)
    try:
        async with RunnerServer(config, log_warnings=False) as server:
            # The first line's shape is stable (scripts wait for it): nothing is appended.
            print(f"actorstage serve: listening on {_address(config.host, server.port)}",
                  flush=True)
            server.log_warnings()
            if server.metrics_port is not None:
                where = _address(config.metrics_host, server.metrics_port)
                print(f"actorstage serve: metrics on http://{where}/metrics", flush=True)
            if server.observer_port is not None:
                where = _address(config.observer_host, server.observer_port)
                print(f"actorstage serve: observer on http://{where}/", flush=True)
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
    from actorstage.cli import allow_runs
    from actorstage.exceptions import InvalidDefinitionError
    from actorstage.workflows._state import StateError

    allow_runs(args.allow_run)
    try:
        config = build_config(args, dict(os.environ))
    except ConfigError as exc:
        print(f"actorstage serve: {exc}", file=sys.stderr)
        return 2
    try:
        import_modules(config.imports)
    except InvalidDefinitionError as exc:
        print(f"actorstage serve: {exc}", file=sys.stderr)
        return 2
    try:
        return run(_serve, config)
    except (InvalidDefinitionError, StateError) as exc:  # runtime.toml; the state
        print(f"actorstage serve: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a busy port or an address not here: a setting to change
        print(f"actorstage serve: cannot listen on {_address(config.host, config.port)}: {exc}",
              file=sys.stderr)
        return 2


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
