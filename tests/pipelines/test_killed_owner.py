"""A session's owner killed outright: its node processes and its shared memory go too,
and ``actorstage cleanup`` removes what is left when even the guard was killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

from actorstage import ActorSystem
from actorstage._shm import segments
from actorstage.cli import main as cli_main
from actorstage.testing import wait_until
from tests.pipelines import nodes  # noqa: F401 - registers the test node types
from tests.pipelines.helpers import node, pipeline, until
from tests.transport.helpers import alive, end, kill_and_wait, tree_of

ROOT = Path(__file__).resolve().parents[2]
KIB = 1024

OWNER = """
    import asyncio, os, sys
    import actorstage
    from actorstage import ActorSystem
    from tests.pipelines import nodes  # registers the test node types
    from tests.pipelines.helpers import node, pipeline

    async def main():
        held = sys.argv[1]
        pipe = pipeline([node("spin", "test.Spin", "process", path=held)])
        async with ActorSystem() as system, pipe.session(system) as session:
            await session.send(b"z" * (512 * 1024))  # a payload in shared memory
            while not os.path.exists(held):
                await asyncio.sleep(0.01)
            print(session.prefix, flush=True)
            await asyncio.Event().wait()

    actorstage.run(main)
"""


def _start_owner(tmp_path: Path) -> tuple[subprocess.Popen[str], str, set[int]]:
    script = tmp_path / "owner.py"
    script.write_text(textwrap.dedent(OWNER))
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "held")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=tmp_path)
    assert proc.stdout is not None
    prefix = proc.stdout.readline().strip()
    if not prefix.startswith("actorstage-"):
        proc.kill()
        _out, err = proc.communicate()
        pytest.fail(f"the owner did not start its session: {err}")
    return proc, prefix, tree_of(proc.pid)


def test_killing_the_owner_removes_its_nodes_and_its_shared_memory_within_two_seconds(
    tmp_path: Path
) -> None:
    proc, prefix, tree = _start_owner(tmp_path)
    try:
        names = segments(prefix)  # the payload, the node's cursor and the session's marker
        assert len(names) >= 3 and prefix + "session" in names, names
        assert len(tree) == 2, tree  # the node process (spinning in C) and the guard
        kill_and_wait(proc, tree, gone=lambda: not segments(prefix))
        assert segments(prefix) == [], "shared memory outlived the session's processes"
    finally:
        end(proc, tree)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_cleanup_removes_dead_sessions_and_leaves_live_ones_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proc, dead_prefix, tree = _start_owner(tmp_path)
    try:
        for pid in [proc.pid, *tree]:  # everything at once, the guard too: nobody cleans up
            os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=5)
        with anyio.fail_after(5):
            await wait_until(lambda: not any(map(alive, tree)))
        left = segments(dead_prefix)
        assert len(left) >= 3, left

        held = tmp_path / "live-held"
        pipe = pipeline([node("hold", "test.Hold", "process", path=str(held))],
                        cleanup_grace_period_secs=0.2)  # it holds its item until stopped
        async with ActorSystem() as system, pipe.session(system) as session:
            await session.send(b"z" * (512 * KIB))
            await until(held.exists)
            live = segments(session.prefix)
            assert len(live) >= 3

            assert cli_main(["cleanup", "--dry-run"]) == 0
            assert segments(dead_prefix) == left  # a dry run removes nothing
            assert cli_main(["cleanup"]) == 0
            out = capsys.readouterr().out
            assert segments(dead_prefix) == []
            assert segments(session.prefix) == live  # the live session keeps everything
            assert f"removed {len(left)} shared-memory file(s) of 1 dead pipeline session" in out
            assert "1 live session(s) left alone" in out
            assert "1 socket directory(ies)" in out  # the dead owner's bridge directory
    finally:
        end(proc, tree)
