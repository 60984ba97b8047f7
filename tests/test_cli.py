"""The command line: the demo runs, ends by itself, exits 0 and leaves nothing behind."""

from __future__ import annotations

import signal
import subprocess
import sys

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
