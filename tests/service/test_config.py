"""The service's settings: checks, and where `actorstage serve` takes them from."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from actorstage.cli import build_parser
from actorstage.service import ServiceConfig
from actorstage.service._cli import ConfigError, build_config
from tests.interop.conftest import ROOT


@pytest.mark.parametrize(("settings", "text"), [
    ({"port": 70000}, "port must be in 0-65535"),
    ({"tls_cert": "c.pem"}, "TLS needs both"),
    ({"callback": "nohost"}, "HOST:PORT"),
    ({"callback_tls": True}, "need a callback"),
    ({"grace": -1.0}, "grace must be"),
    ({"isolate": "elsewhere"}, "isolate is"),
    ({"token": " "}, "the token is empty"),
    ({"max_pipeline_sessions": 0}, "max_pipeline_sessions must be >= 1"),
    ({"stigmer_endpoint": "stigmer"}, "stigmer_endpoint: a callback endpoint is HOST:PORT"),
    ({"stigmer_api_key": "k"}, "need a stigmer_endpoint"),
    ({"state": "mysql://db"}, "unknown state 'mysql://db'"),
    ({"state": "sqlite://relative.db"}, "three slashes"),
    ({"retention": 0.0}, "retention must be"),
])
def test_bad_settings_are_refused_naming_them(settings: dict[str, object], text: str) -> None:
    with pytest.raises(ValueError, match=text):
        ServiceConfig(**settings).check()  # type: ignore[arg-type]


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", *argv])


def test_flags_beat_the_environment_which_beats_the_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    config_file = tmp_path / "serve.toml"
    config_file.write_text(
        'host = "::1"\nport = 7001\nisolate = "process"\nimports = ["a", "b"]\n'
        f'grace = 3.5\nshutdown = "drain"\ntoken_file = "{token_file}"\n'
        'callback = "127.0.0.1:9000"\nmetrics_port = 9100\n')
    from_file = build_config(_args("--config", str(config_file)), {})
    assert (from_file.host, from_file.port, from_file.isolate, from_file.imports) == (
        "::1", 7001, "process", ("a", "b"))
    assert (from_file.grace, from_file.shutdown, from_file.token) == (3.5, "drain", "from-file")
    assert (from_file.callback, from_file.metrics_port) == ("127.0.0.1:9000", 9100)
    environ = {"ACTORSTAGE_IMPORTS": "c, d", "ACTORSTAGE_CALLBACK_TOKEN": "cb"}
    from_env = build_config(_args("--config", str(config_file)), environ)
    assert from_env.imports == ("c", "d") and from_env.callback_token == "cb"
    from_flags = build_config(_args("--config", str(config_file), "--port", "7002",
                                    "--import", "e", "--isolate", "inline", "--grace", "1"),
                              environ)
    assert (from_flags.port, from_flags.imports, from_flags.isolate, from_flags.grace) == (
        7002, ("e",), "inline", 1.0)
    assert from_flags.host == "::1"  # what no flag sets still comes from the file
    defaults = build_config(_args(), {})
    from actorstage.workflows._state import state_directory

    state = f"sqlite:///{state_directory() / 'runner.db'}"  # the command line keeps state
    assert defaults == ServiceConfig(state=state)
    assert build_config(_args("--state", "memory"), {}).state == "memory"
    assert build_config(_args(), {"ACTORSTAGE_STATE": "sqlite:///x.db"}).state == \
        "sqlite:///x.db"


def test_stigmer_runner_environment_configures_the_port_and_the_status_callback(
        tmp_path: Path) -> None:
    environ = {"GRPC_PORT": "9090", "STIGMER_SERVICE_ENDPOINT": "stigmer.internal:443",
               "STIGMER_SERVICE_API_KEY": "key-1"}
    config = build_config(_args(), environ)
    assert (config.host, config.port) == ("127.0.0.1", 9090)  # the address stays loopback
    assert (config.stigmer_endpoint, config.stigmer_api_key, config.stigmer_tls) == (
        "stigmer.internal:443", "key-1", True)  # TLS unless told otherwise, as Stigmer's
    # The names Stigmer's runner code reads work too; flags beat the environment.
    config = build_config(_args("--no-stigmer-tls", "--port", "7000"), {
        "GRPC_PORT": "9090", "STIGMER_BACKEND_ENDPOINT": "backend:8080",
        "STIGMER_API_KEY": "key-2", "STIGMER_SERVICE_USE_TLS": "true"})
    assert (config.port, config.stigmer_endpoint, config.stigmer_api_key,
            config.stigmer_tls) == (7000, "backend:8080", "key-2", False)
    assert build_config(_args(), {"STIGMER_SERVICE_ENDPOINT": "s:1",
                                  "STIGMER_SERVICE_USE_TLS": "false"}).stigmer_tls is False
    key_file = tmp_path / "key"
    key_file.write_text("from-file\n")
    settings = tmp_path / "serve.toml"
    settings.write_text(f'stigmer_endpoint = "s:1"\nstigmer_api_key_file = "{key_file}"\n')
    assert build_config(_args("--config", str(settings)), {}).stigmer_api_key == "from-file"
    for environ, text in (({"GRPC_PORT": "http"}, "GRPC_PORT is a port number"),
                          ({"GRPC_PORT": "0"}, "GRPC_PORT is a port number"),
                          ({"STIGMER_SERVICE_ENDPOINT": "s:1",
                            "STIGMER_SERVICE_USE_TLS": "maybe"}, "STIGMER_SERVICE_USE_TLS"),
                          ({"STIGMER_SERVICE_API_KEY": "k"}, "need a stigmer_endpoint")):
        with pytest.raises(ConfigError, match=text):
            build_config(_args(), environ)


def test_a_token_comes_from_the_environment_or_a_file_never_a_flag(tmp_path: Path) -> None:
    assert build_config(_args(), {"ACTORSTAGE_TOKEN": "env"}).token == "env"
    token_file = tmp_path / "token"
    token_file.write_text("file")
    both = build_config(_args("--token-file", str(token_file)), {"ACTORSTAGE_TOKEN": "env"})
    assert both.token == "file"  # the file is named on the command line: it wins
    assert "file" not in repr(both)  # tokens stay out of reprs and logs
    with pytest.raises(SystemExit):
        _args("--token", "x")


@pytest.mark.parametrize(("content", "text"), [
    ("port = ", "not valid TOML"),
    ("prot = 1", "unknown settings ['prot']"),
    ("port = 99999", "port must be in 0-65535"),
])
def test_bad_config_files_name_the_problem(tmp_path: Path, content: str, text: str) -> None:
    config_file = tmp_path / "serve.toml"
    config_file.write_text(content)
    with pytest.raises(ConfigError, match=text.replace("[", r"\[").replace("]", r"\]")):
        build_config(_args("--config", str(config_file)), {})


def test_unreadable_secrets_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the token file"):
        build_config(_args("--token-file", str(tmp_path / "missing")), {})
    empty = tmp_path / "empty"
    empty.write_text("  \n")
    with pytest.raises(ConfigError, match=r"callback token file .* is empty"):
        build_config(_args("--callback", "127.0.0.1:1", "--callback-token-file", str(empty)),
                     {})


def test_bad_imports_and_settings_exit_2_with_a_message(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "actorstage.cli", "serve", "--port", "0"]
    bad_runtime = tmp_path / "runtime.toml"
    bad_runtime.write_text("channel_capacity = 'lots'\n")
    cases = [
        (["--import", "no_such_module_here"], {}, "cannot import 'no_such_module_here'"),
        (["--pipeline-runtime", str(bad_runtime)], {}, f"{bad_runtime}: invalid runtime config"),
        (["--tls-cert", "x.pem"], {}, "TLS needs both"),
        (["--config", str(tmp_path / "none.toml")], {}, "cannot read the config file"),
        ([], {"ACTORSTAGE_TOKEN": " "}, "the token is empty"),
    ]
    for flags, env, text in cases:
        done = subprocess.run([*base, *flags], capture_output=True, text=True, timeout=60,
                              cwd=ROOT, env={**os.environ, **env})
        assert done.returncode == 2, (flags, done.stderr)
        assert text in done.stderr


def test_a_busy_port_is_a_setting_problem_exit_2() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "actorstage", "serve", "--port", str(port)],
            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2, done.stderr
    assert f"actorstage serve: cannot listen on 127.0.0.1:{port}: " in done.stderr
