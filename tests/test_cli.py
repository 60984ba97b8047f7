"""The command line: the demo runs, ends by itself, exits 0 and leaves nothing behind."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest


def test_demo_runs_and_summarises() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "actorstage.cli", "demo", "--duration", "3", "--seed", "1"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "actorstage demo finished in" in out
    assert "escalations       1" in out  # the burst exceeds fragile's intensity once
    assert "/user/app/fragile=1" in out  # ... and app restarted it
    assert "flaky" in out and "restarts=" in out


def test_demo_rejects_a_bad_duration() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "actorstage.cli", "demo", "--duration", "-1"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    assert "--duration must be in (0, 600] seconds, got '-1'" in done.stderr


@pytest.mark.parametrize("argv", [["--version"]])
def test_version(argv: list[str]) -> None:
    from actorstage import __version__
    from actorstage.cli import main

    assert main(argv) == 0
    assert __version__


def test_ctrl_c_stops_the_demo_cleanly() -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "actorstage.cli", "demo", "--duration", "60", "--plain"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )
    try:
        assert demo.stdout is not None
        assert "Ctrl-C stops it early" in demo.stdout.readline()
        demo.send_signal(signal.SIGINT)
        _out, err = demo.communicate(timeout=10)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert demo.returncode == 130, err
    assert "actorstage: interrupted" in err
    assert "Traceback" not in err


FLOW = """
id: cli-flow
store: {count: 1}
stages:
  - id: greet
    actions:
      - {id: hello, action: test.greet, params: {name: cli}}
      - {id: flaky, action: test.flaky, params: {succeed_on: 2}, max_attempts: 2}
  - id: tally
    actions:
      - {id: count, action: %s}
"""


def _run_workflow(tmp_path: Path, action: str, *extra: str) -> subprocess.CompletedProcess[str]:
    flow = tmp_path / "flow.yaml"
    flow.write_text(FLOW % action)
    return subprocess.run(
        [sys.executable, "-m", "actorstage.cli", "run-workflow", str(flow),
         "--import", "tests.workflows.actions", *extra],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("where", [[], ["--spawn"]])
def test_run_workflow_shows_progress_and_exits_0(tmp_path: Path, where: list[str]) -> None:
    done = _run_workflow(tmp_path, "test.count", *where)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "action retry      greet/flaky (attempt 1, ConnectionError: attempt 1 failed)" in out
    assert "workflow finished (succeeded)" in out
    assert "final store: {count=2, flaky_attempts=2, greeting='hello cli'}" in out


def test_run_workflow_exits_1_with_the_error_when_the_workflow_fails(tmp_path: Path) -> None:
    done = _run_workflow(tmp_path, "test.fail", "--spawn")
    assert done.returncode == 1
    assert "error in tally/count: RuntimeError: failed on purpose" in done.stdout
    assert "Traceback" in done.stdout


def test_run_workflow_exits_2_on_a_bad_definition(tmp_path: Path) -> None:
    done = _run_workflow(tmp_path, "test.nope")
    assert done.returncode == 2
    assert "unknown action 'test.nope'" in done.stderr
    assert "stages[1] ('tally').actions[0] ('count')" in done.stderr
