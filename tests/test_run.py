"""actorstage.run, and the library inside event loops it did not create."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import actorstage
from actorstage import Actor, ActorSystem

ROOT = Path(__file__).resolve().parents[1]


class Echo(Actor):
    async def receive(self, message: Any) -> Any:
        return message


async def _roundtrip(value: int) -> tuple[int, str]:
    async with ActorSystem() as system:
        ref = await system.spawn(Echo)
        loop_type = type(asyncio.get_running_loop()).__module__
        return await ref.ask(value), loop_type


def test_run_uses_uvloop_when_installed() -> None:
    value, loop_module = actorstage.run(_roundtrip, 7)
    assert value == 7
    assert loop_module.startswith("uvloop")


def test_run_can_be_told_to_use_plain_asyncio() -> None:
    value, loop_module = actorstage.run(_roundtrip, 8, use_uvloop=False)
    assert value == 8
    assert loop_module.startswith("asyncio")


def test_the_library_sets_no_event_loop_policy() -> None:
    before = asyncio.get_event_loop_policy()
    actorstage.run(_roundtrip, 1)
    assert asyncio.get_event_loop_policy() is before


def test_it_runs_inside_an_existing_asyncio_loop() -> None:
    assert asyncio.run(_roundtrip(3)) == (3, "asyncio.unix_events")


@pytest.mark.anyio
async def test_an_error_in_the_body_propagates_unwrapped() -> None:
    with pytest.raises(KeyError, match="from the body"):
        async with ActorSystem() as system:
            await system.spawn(Echo)
            raise KeyError("from the body")


def test_run_given_a_coroutine_says_to_pass_the_function() -> None:
    with pytest.raises(TypeError, match=r"write run\(main\), not run\(main\(\)\)"):
        actorstage.run(_roundtrip(1))  # type: ignore[arg-type]


def test_under_trio_the_error_says_actorstage_runs_on_asyncio() -> None:
    import anyio

    async def main() -> None:
        async with ActorSystem():
            pass

    with pytest.raises(RuntimeError, match="ActorSystem needs a running asyncio event loop, "
                       "and this is trio: actorstage runs on asyncio, with or without uvloop"):
        anyio.run(main, backend="trio")


def test_a_script_without_the_main_guard_is_told_to_add_it(tmp_path: Path) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent("""
        import actorstage
        from actorstage import Actor, ActorSystem

        class Echo(Actor):
            async def receive(self, message):
                return message

        async def main():
            async with ActorSystem() as system:
                await system.spawn(Echo, process=True)

        actorstage.run(main)  # no `if __name__ == "__main__":`
    """))
    proc = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", str(script)],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 1
    assert "actorstage.run() was called while a child process was importing" in proc.stderr
    assert 'if __name__ == "__main__":' in proc.stderr
    assert "Cannot run the event loop while another loop is running" not in proc.stderr
    assert "was never awaited" not in proc.stderr
