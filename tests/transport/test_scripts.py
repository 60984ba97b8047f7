"""Programs that use process actors, run as real scripts: __main__ actors, a self-spawning
program, and a parent killed with SIGKILL."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.transport.helpers import end, kill_and_wait, tree_of

ROOT = Path(__file__).resolve().parents[2]


def _run_script(code: str, tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(code))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, str(script), *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)


@pytest.mark.parametrize("start", ["spawn", "forkserver"])
def test_actors_defined_in_the_main_script_run_in_a_child(tmp_path: Path, start: str) -> None:
    proc = _run_script("""
        import os, sys
        import actorstage
        from actorstage import Actor, ActorSystem, Message, ProcessOptions

        print("the script's top level runs", file=sys.stderr)

        class Greet(Message, frozen=True):
            name: str

        class Greeter(Actor):
            async def receive(self, message):
                return Greet(f"hello {message.name} from {os.getpid()}")

        async def main():
            defaults = ProcessOptions(start=sys.argv[1])
            async with ActorSystem(process_defaults=defaults) as system:
                for _ in range(2):
                    ref = await system.spawn(Greeter, process=True)
                    reply = await ref.ask(Greet("script"))
                    print(type(reply).__name__, reply.name != f"hello script from {os.getpid()}")
                    await system.stop(ref)

        if __name__ == "__main__":
            actorstage.run(main)
    """, tmp_path, start)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.split("\n") == ["Greet True", "Greet True", ""]
    # The script's top level ran once in the parent and once per child (spawn), or
    # once in the forkserver, whose children inherit the loaded module.
    runs = err.count("top level runs")
    assert runs == (3 if start == "spawn" else 2), err


def test_actors_of_the_main_script_start_in_grandchildren_too(tmp_path: Path) -> None:
    proc = _run_script("""
        import os
        import actorstage
        from actorstage import Actor, ActorSystem

        class Leaf(Actor):
            async def receive(self, message):
                return os.getpid()

        class Middle(Actor):  # in a child, it starts a Leaf, also of this script, in its own
            async def on_start(self):
                self.leaf = await self.context.spawn(Leaf, process=True)

            async def receive(self, message):
                return [os.getpid(), await self.leaf.ask(message)]

        async def main():
            async with ActorSystem() as system:
                ref = await system.spawn(Middle, process=True)
                print(os.getpid(), *await ref.ask("pid"))

        if __name__ == "__main__":
            actorstage.run(main)
    """, tmp_path)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert len(set(out.split())) == 3  # three processes: the script, its child, a grandchild


def test_a_program_can_spawn_itself_with_child_main(tmp_path: Path) -> None:
    proc = _run_script("""
        import os, sys
        import actorstage
        from actorstage import Actor, ActorSystem, ProcessOptions

        class Echo(Actor):
            async def receive(self, message):
                return [message, os.getpid(), sys.argv[1:]]

        async def main():
            options = ProcessOptions(command=(sys.executable, __file__, "--as-child"))
            async with ActorSystem() as system:
                ref = await system.spawn(Echo, process=options)
                print(await ref.ask("hi"), os.getpid())

        if __name__ == "__main__":
            actorstage.child_main()
            actorstage.run(main)
    """, tmp_path)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    reply, parent_pid = out.strip().rsplit(" ", 1)
    assert reply.startswith("['hi', ") and reply.endswith(", ['--as-child']]")
    assert str(parent_pid) not in reply


@pytest.mark.parametrize("start", ["spawn", "forkserver"])
def test_killing_the_parent_ends_every_descendant_within_two_seconds(
    tmp_path: Path, start: str
) -> None:
    proc = _run_script("""
        import asyncio, sys
        import actorstage
        from actorstage import ActorSystem, ProcessOptions
        from tests.transport.actors import Parent

        async def main():
            async with ActorSystem() as system:
                ref = await system.spawn(Parent, sys.argv[1], process=ProcessOptions(
                    heartbeat_interval=0.2, heartbeat_timeout=1.5, start=sys.argv[1]))
                print(*await ref.ask("pids"), flush=True)
                await asyncio.Event().wait()

        actorstage.run(main)
    """, tmp_path, start)
    pids: set[int] = set()
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        pids |= set(map(int, line.split())) - {proc.pid}  # with forkservers, theirs too
        assert len(pids) == (2 if start == "spawn" else 4)
        kill_and_wait(proc, pids)
    finally:
        end(proc, pids)


@pytest.mark.parametrize(("start", "how"), [("spawn", "sleep"), ("spawn", "spin"),
                                          ("forkserver", "spin")])
def test_killing_the_parent_ends_busy_descendants_within_two_seconds(
    tmp_path: Path, start: str, how: str
) -> None:
    """A child and a grandchild whose handlers block (time.sleep, or a C call holding the
    GIL) never run their event loops again: their guards end them, then exit themselves."""
    proc = _run_script("""
        import asyncio, sys
        import actorstage
        from actorstage import ActorSystem, ProcessOptions
        from tests.transport.actors import BusyParent

        async def main():
            async with ActorSystem() as system:
                ref = await system.spawn(BusyParent, sys.argv[1],
                                         process=ProcessOptions(start=sys.argv[1]))
                print(*await ref.ask("pids"), flush=True)
                await ref.tell(["busy", sys.argv[2]])
                await asyncio.sleep(0.5)
                print("busy", flush=True)
                await asyncio.Event().wait()

        actorstage.run(main)
    """, tmp_path, start, how)
    tree: set[int] = set()
    try:
        assert proc.stdout is not None
        busy = set(map(int, proc.stdout.readline().split()))
        assert len(busy) == 2, proc.stderr.read() if proc.stderr else ""
        assert proc.stdout.readline() == "busy\n"
        tree |= tree_of(proc.pid)  # the busy two, forkservers, a guard per system, spares
        assert busy <= tree and len(tree) >= (4 if start == "spawn" else 6), tree  # (+spares)
        kill_and_wait(proc, tree)
    finally:
        end(proc, tree)


def test_killing_the_parent_ends_a_spawned_workflow_blocked_in_an_action(tmp_path: Path) -> None:
    proc = _run_script("""
        import asyncio
        import actorstage
        from actorstage import ProcessOptions
        from actorstage.workflows import ActionDef, Runner, StageDef, WorkflowDef
        from tests.workflows import actions

        async def main():
            flow = WorkflowDef(id="blocked", stages=[StageDef(id="s", actions=[
                ActionDef(id="who", action="test.whoami"),
                ActionDef(id="block", action="test.block", params={"seconds": 3600})])])
            async with Runner() as runner:
                execution = await runner.start(flow, process=ProcessOptions())
                while "ppid" not in execution.store:
                    await asyncio.sleep(0.01)
                print(execution.store["pid"], flush=True)
                await asyncio.Event().wait()

        actorstage.run(main)
    """, tmp_path)
    tree: set[int] = set()
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.2)  # (the action has blocked its process by now)
        tree |= tree_of(proc.pid)
        assert int(line) in tree and len(tree) == 2, tree  # the workflow's process, the guard
        kill_and_wait(proc, tree)
    finally:
        end(proc, tree)
