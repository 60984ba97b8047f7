"""The command line: the demo runs, ends by itself, exits 0 and leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_observe_serves_the_demo_s_tree_on_its_page() -> None:
    import re
    import urllib.request

    process = subprocess.Popen(
        [sys.executable, "-m", "actorstage", "observe", "--port", "0", "--duration", "4"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        assert process.stdout is not None
        for line in process.stdout:
            found = re.search(r"actorstage observer: (http://\S+)/#token=(\S+)", line)
            if found:
                break
        else:
            raise AssertionError(f"no observer URL:\n{process.communicate()[1]}")
        url = found.group(1)
        time.sleep(1.0)
        with urllib.request.urlopen(f"{url}/api/snapshot", timeout=10) as answer:
            snapshot = json.load(answer)
        assert snapshot["actions"] is True and snapshot["name"] == "demo"
        [app] = snapshot["tree"]["children"]
        assert app["path"] == "/user/app" and app["kind"] == "supervisor"
        request = urllib.request.Request(
            f"{url}/api/pause?path=/user/app/workers/steady-1", method="POST",
            headers={"Authorization": f"Bearer {found.group(2)}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 204
        rest, errors = process.communicate(timeout=60)
        assert process.returncode == 0, errors
        assert "actorstage demo finished in" in rest
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


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
    assert "├── flaky  Flaky  running  restarts " in out  # the final tree
    # The story, as it happened: crashes, restarts and the escalation, in plain text.
    assert "crashed    /user/app/workers/flaky: RuntimeError" in out
    assert "restarted  /user/app/workers/flaky (restart 1)" in out
    assert "ESCALATED  supervisor '/user/app/fragile' exceeded its restart intensity" in out
    assert "restarted  /user/app/fragile (restart 1)" in out
    assert "The tree (each supervisor restarts its crashed children)" in out  # the legend


def test_demo_live_without_rich_says_how_to_get_it(tmp_path: Path) -> None:
    (tmp_path / "rich.py").write_text("raise ImportError('rich is hidden for this test')\n")
    done = subprocess.run(
        [sys.executable, "-m", "actorstage", "demo", "--live", "--duration", "1"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=f"{tmp_path}:{ROOT}"),
    )
    assert done.returncode == 2
    assert "--live draws with rich, which is not installed (pip install rich)" in done.stderr


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
        out, err = demo.communicate(timeout=10)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert demo.returncode == 130, err
    assert "actorstage demo: interrupted" in out
    assert "actorstage demo finished in" in out and "final tree:" in out  # the summary
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
    assert "final store:\n{\n  \"count\": 2,\n  \"greeting\": \"hello cli\",\n" in out


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


LOGGING_FLOW = """
id: chatty
stages:
  - id: s
    actions:
      - {id: say, action: log, params: {message: "hello from the flow", level: warning}}
      - {id: put, action: store.set, params: {key: answer, value: {n: [4, 2]}}}
      - {id: nap, action: %s, params: {seconds: %s}}
"""


def _workflow_command(tmp_path: Path, action: str = "sleep", seconds: float = 0,
                      *extra: str) -> subprocess.Popen[str]:
    flow = tmp_path / "flow.yaml"
    flow.write_text(LOGGING_FLOW % (action, seconds))
    return subprocess.Popen(
        [sys.executable, "-m", "actorstage", "run-workflow", str(flow), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)))


def test_run_workflow_shows_log_lines_and_store_changes_and_the_store_as_json(
    tmp_path: Path
) -> None:
    out, err = _workflow_command(tmp_path).communicate(timeout=60)
    assert "] log               s/say warning hello from the flow" in out, err
    assert '] store put         s/put answer = {"n":[4,2]}' in out
    table = out.split("succeeded in ", 1)[1].splitlines()[1:6]
    assert [line.split()[:3] for line in table if not line.lstrip().startswith("-")] == [
        ["action", "status", "attempts"], ["s/say", "succeeded", "1"],
        ["s/put", "succeeded", "1"], ["s/nap", "succeeded", "1"]]
    assert len({len(line) for line in table}) == 1  # aligned: every row as wide
    store = out.split("final store:\n", 1)[1]
    assert json.loads(store) == {"answer": {"n": [4, 2]}}


@pytest.mark.parametrize("where", [[], ["--spawn"]])
def test_ctrl_c_cancels_the_workflow_at_once_and_prints_the_summary(
    tmp_path: Path, where: list[str]
) -> None:
    proc = _workflow_command(tmp_path, "sleep", 60, *where)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "action started    s/nap" in line:
                break
        began = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - began
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "interrupted: cancelling the workflow" in out
    assert "cancelled in " in out
    assert any(line.split()[:2] == ["s/nap", "cancelled"] for line in out.splitlines())
    assert took < 5, f"Ctrl-C took {took:.1f}s"  # (a generous bound: it is a few ms)
    assert "Traceback" not in err and "did not finish its message" not in err


def test_run_workflow_imports_from_the_current_directory_and_suggests_names(
    tmp_path: Path
) -> None:
    (tmp_path / "my_actions.py").write_text(
        "from actorstage.workflows import Action, register_action\n"
        "@register_action('my.nap')\n"
        "class Nap(Action):\n"
        "    async def execute(self, ctx):\n"
        "        await ctx.store.put('napped', True)\n")
    out, err = _workflow_command(tmp_path, "my.nap", 0, "--import", "my_actions").communicate(
        timeout=60)
    assert '"napped": true' in out, err
    proc = _workflow_command(tmp_path, "my.npa", 0, "--import", "my_actions")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "unknown action 'my.npa'; did you mean 'my.nap'?" in err
    proc = _workflow_command(tmp_path, "my.nap", 0)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "import the module that registers it first: --import MODULE" in err


def test_help_is_plain_fast_to_import_and_says_what_each_command_does() -> None:
    probe = ("import sys, contextlib, io\n"
             "from actorstage.cli import main\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             "    with contextlib.suppress(SystemExit):\n"
             "        main(['--help'])\n"
             "print(sorted(m for m in sys.modules if m.startswith(('actorstage.pipelines', "
             "'actorstage.service', 'actorstage.workflows', 'actorstage._proto', 'grpclib'))))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.stdout.strip() == "[]", done.stderr  # subcommands import their code lazily
    top = subprocess.run([sys.executable, "-m", "actorstage", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert top.returncode == 0 and "run-pipeline" in top.stdout and "cleanup" in top.stdout
    for command in ("demo", "observe", "run-workflow", "run-pipeline", "serve", "protos",
                    "cleanup", "join"):
        done = subprocess.run([sys.executable, "-m", "actorstage", command, "--help"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        text = done.stdout
        assert "``" not in text, f"{command} --help shows markup"
        assert "examples:\n  actorstage " + command in text
        assert "exit status:\n  0    success" in text and "130  interrupted" in text
