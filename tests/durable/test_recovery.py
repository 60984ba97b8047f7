"""Durable executions: a runner killed with SIGKILL in the middle of running, sleeping,
paused and spawned executions; a runner on the same SQLite state runs each on from its
last completed step, with its store, its sleep's remaining time and its history."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from actorstage.serverless import parse_definition
from actorstage.workflows import (
    BrokerMessage,
    Execution,
    ProgressEvent,
    Runner,
    Status,
    WorkflowDef,
)
from actorstage.workflows._state import SCHEMA_VERSION, SqliteState, StateError, open_state
from tests.durable import actions  # noqa: F401 - registers durable.mark
from tests.service.helpers import alive

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


class Killable:
    """``tests.durable.runner_script`` in a process of its own; ``wait_for`` a line of its
    output, then ``kill`` it (SIGKILL, the way a machine or the OOM killer ends it)."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.durable.runner_script", *args], cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout:
            for line in self.process.stdout:
                with self.changed:
                    self.lines.append(line.rstrip("\n"))
                    self.changed.notify_all()

    def wait_for(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                found = [line for line in self.lines if text in line]
                if found:
                    return found[0]
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise AssertionError(f"no {text!r} in:\n" + "\n".join(self.lines))
                self.changed.wait(0.1)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.reader.join(10)


@contextmanager
def killable(*args: str) -> Iterator[Killable]:
    runner = Killable(*args)
    try:
        yield runner
    finally:
        if runner.process.poll() is None:
            runner.kill()


def _workflow(journal: Path, nap: float = 3.0) -> str:
    def mark(name: str, seconds: float = 0.0) -> dict[str, Any]:
        return {"id": name, "action": "durable.mark",
                "params": {"journal": str(journal), "name": name, "seconds": seconds}}

    return json.dumps({"id": "durable", "stages": [
        {"id": "one", "actions": [mark("a"), mark("nap", nap)]},
        {"id": "two", "actions": [mark("b")]}]})


async def _recovered(runner: Runner) -> Execution:
    """The one execution the runner recovers (of a shared state: once the killed runner's
    lease has run out)."""
    for _ in range(500):
        if runner._running:
            [execution] = list(runner._running)
            return execution
        await anyio.sleep(0.02)
    raise AssertionError("nothing was recovered within 10 s")


def _runs(journal: Path) -> list[str]:
    return [line.split()[0] for line in journal.read_text().splitlines()]


async def _history(state: str) -> list[tuple[int, str]]:
    store = open_state(state)
    assert store is not None
    await store.open()
    try:
        messages = await store.events("e1")
    finally:
        await store.close()
    return [(message.seq, message.payload.kind if isinstance(message.payload, ProgressEvent)
             else message.message_type) for message in messages]


async def test_a_killed_runner_s_execution_resumes_after_its_last_completed_action(
        tmp_path: Path, state_url: str) -> None:
    journal, state = tmp_path / "journal", state_url
    with killable(state, "start", _workflow(journal)) as first:
        first.wait_for("action_started nap")
        await anyio.sleep(1.0)  # a third of the nap
        first.kill()
    assert _runs(journal) == ["a", "nap"]
    async with Runner(state=state) as runner:
        execution = await _recovered(runner)
        began = time.monotonic()
        result = await execution.result()
    took = time.monotonic() - began
    assert result.status == Status.SUCCEEDED
    assert result.store == {"given": 1, "a": 1, "nap": 2, "b": 3, "count": 3}
    assert _runs(journal) == ["a", "nap", "nap", "b"]  # the interrupted one ran again, once
    keys = [line.split()[1] for line in journal.read_text().splitlines()]
    assert keys[1] == keys[2] == "e1/one/nap/1"  # the same attempt key: for idempotency
    assert took < 2.8, f"the nap started over ({took:.2f}s): it should sleep what was left"
    history = await _history(state)
    assert [seq for seq, _kind in history] == list(range(1, len(history) + 1))
    kinds = [kind for _seq, kind in history]
    assert kinds.count("workflow_started") == 1 and kinds.count("workflow_recovered") == 1
    assert kinds[-1] == "workflow_finished"
    async with Runner(state=state) as runner:  # ended: nothing to recover
        assert not runner._running


async def test_a_paused_execution_stays_paused_across_a_crash(
        tmp_path: Path, state_url: str) -> None:
    journal, state = tmp_path / "journal", state_url
    with killable(state, "start", _workflow(journal, nap=1.0), "--pause-after", "0.4") as first:
        first.wait_for("written: paused")
        first.kill()
    runner = Runner(state=state)
    seen: list[tuple[str, str, list[Status]]] = []  # each event: its status, the execution's

    def watch(message: BrokerMessage) -> None:
        if isinstance(message.payload, ProgressEvent):
            seen.append((message.payload.kind, message.payload.status,
                         [execution.status for execution in runner._running]))

    runner.broker.register_handler("*", watch)
    async with runner:
        execution = await _recovered(runner)
        assert execution.status == Status.PAUSED
        for _ in range(250):
            if any(kind == "workflow_paused" for kind, _status, _statuses in seen):
                break
            await anyio.sleep(0.02)
        # paused from the start, not running until the workflow reaches its pause point
        assert seen[0] == ("workflow_recovered", "paused", [Status.PAUSED])
        assert all(statuses == [Status.PAUSED] for _kind, _status, statuses in seen), seen
        await anyio.sleep(1.5)  # longer than the nap: paused, it does not end
        assert not execution.done and _runs(journal) == ["a", "nap"]  # held before it
        await execution.resume()
        with anyio.fail_after(10):
            result = await execution.result()
    assert result.status == Status.SUCCEEDED and _runs(journal) == ["a", "nap", "nap", "b"]


async def test_a_spawned_execution_resumes_in_a_new_child(
        tmp_path: Path, state_url: str) -> None:
    journal, state = tmp_path / "journal", state_url
    with killable(state, "start", _workflow(journal, nap=2.0), "--process") as first:
        child = int(first.wait_for("ready").split()[1])
        first.wait_for("action_started nap")
        first.kill()
    assert child
    for _ in range(200):  # the child sees its parent die and ends too
        if not alive(child):
            break
        await anyio.sleep(0.05)
    assert not alive(child)
    async with Runner(state=state) as runner:
        execution = await _recovered(runner)
        assert execution.pid is not None and execution.pid != child
        result = await execution.result()
    assert result.status == Status.SUCCEEDED
    assert _runs(journal) == ["a", "nap", "nap", "b"]


async def test_a_serverless_workflow_resumes_after_its_last_top_level_task(
        state_url: str) -> None:
    state = state_url
    definition = {
        "document": {"dsl": "1.0.0", "namespace": "t", "name": "slow", "version": "1"},
        "do": [{"first": {"set": {"given": "${ .given }", "n": 1},
                          "export": {"as": "{seen: .n}"}}},
               {"nap": {"wait": {"seconds": 2}}},
               {"last": {"set": {"n": "${ .n + 1 }", "seen": "${ $context.seen }"}}}]}
    parse_definition(definition)
    with killable(state, "start", json.dumps(definition)) as first:
        first.wait_for("task_started /do/1/nap")
        await anyio.sleep(0.5)
        first.kill()
    async with Runner(state=state) as runner:
        execution = await _recovered(runner)
        result = await execution.result()
    assert result.status == Status.SUCCEEDED
    assert result.output == {"n": 2, "seen": 1}  # its data and $context came back
    kinds = [kind for _seq, kind in await _history(state) if kind != "checkpoint"]
    assert kinds.count("task_started") == 4  # first, nap, then (recovered) nap and last


async def test_a_newer_schema_is_refused_and_migrations_are_recorded(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteState(str(path))
    await store.open()
    await store.close()
    import sqlite3

    with contextlib.closing(sqlite3.connect(path)) as db, db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'"
                          ).fetchone() == (str(SCHEMA_VERSION),)
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StateError, match="schema version 99, newer than this actorstage"):
        await SqliteState(str(path)).open()


async def test_ended_executions_past_the_retention_are_removed(
        tmp_path: Path, state_url: str) -> None:
    state = state_url
    journal = tmp_path / "journal"
    definition = json.loads(_workflow(journal, nap=0.0))

    async with Runner(state=state) as runner:
        for number in range(3):
            await runner.execute(msgspec.convert(definition, WorkflowDef),
                                 execution_id=f"old-{number}")
        assert runner.state is not None
        assert await runner.state.prune(max_age=None, max_count=1) == 2
        assert [saved.id for saved in await runner.state.load()] == ["old-2"]
        assert await runner.state.events("old-0") == []
        assert await runner.state.prune(max_age=0.0, max_count=None) == 1


async def test_a_serverless_workflow_resumes_inside_a_loop_without_redoing_a_task(
        tmp_path: Path, state_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash in the middle of a `for` loop's third iteration: the recovered execution goes
    on at that iteration's interrupted task (a `wait`, which waits what was left of it);
    no task that had completed runs again, at any depth."""
    from actorstage.serverless._process import RUN_ENV

    monkeypatch.setenv(RUN_ENV, "shell")  # (the tasks mark their runs with a shell line)
    journal = tmp_path / "journal"

    def mark(what: str, **environment: str) -> dict[str, Any]:
        return {"run": {"shell": {"command": f'echo "{what}" >> {journal}',
                                  "environment": environment}}}

    definition = {
        "document": {"dsl": "1.0.0", "namespace": "t", "name": "nested", "version": "1"},
        "do": [
            {"prepare": {"set": {"items": [1, 2, 3, 4], "total": 0}}},
            {"sum": {"for": {"each": "n", "in": ".items"}, "do": [
                {"add": {"set": {"items": "${ .items }", "total": "${ .total + $n }"}}},
                {"mark": {**mark("add $N", N="${ $n | tostring }"),
                          "output": {"as": "$input"}}},
                {"nap": {"wait": {"milliseconds": 600}}}]}},
            {"both": {"fork": {"branches": [
                {"quick": {"do": [{"q": mark("quick")}]}},
                {"slow": {"do": [{"zz": {"wait": {"seconds": 1}}}, {"s": mark("slow")}]}}]},
                "output": {"as": "{done: true}"}, "export": {"as": "{forked: true}"}}},
            {"last": {"set": {"total": "${ $context.forked }"}}}]}
    with killable(state_url, "start", json.dumps(definition)) as first:
        for _ in range(500):
            if journal.exists() and "add 3" in journal.read_text():
                break
            await anyio.sleep(0.02)
        await anyio.sleep(0.2)  # in the third iteration's nap
        first.kill()
    assert journal.read_text().split("\n")[:3] == ["add 1", "add 2", "add 3"]
    async with Runner(state=state_url) as runner:
        execution = await _recovered(runner)
        began = time.monotonic()
        result = await execution.result()
    assert result.status == Status.SUCCEEDED, result.error
    assert result.output == {"total": True}
    assert sorted(journal.read_text().splitlines()) == [  # each task ran once
        "add 1", "add 2", "add 3", "add 4", "quick", "slow"]
    assert time.monotonic() - began < 0.6 + 0.6 + 1.0 + 1.5  # (the rest of a nap, not all)


async def test_a_fork_s_finished_branch_is_not_run_again(
        tmp_path: Path, state_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from actorstage.serverless._process import RUN_ENV

    monkeypatch.setenv(RUN_ENV, "shell")
    journal = tmp_path / "journal"
    definition = {
        "document": {"dsl": "1.0.0", "namespace": "t", "name": "forked", "version": "1"},
        "do": [{"both": {"fork": {"branches": [
            {"quick": {"run": {"shell": {"command": f"echo quick >> {journal}; echo 1"}}}},
            {"slow": {"do": [{"zz": {"wait": {"seconds": 3}}},
                             {"s": {"set": {"slow": True}}}]}}]}}}]}
    with killable(state_url, "start", json.dumps(definition)) as first:
        for _ in range(500):
            if journal.exists() and journal.read_text():
                break
            await anyio.sleep(0.02)
        await anyio.sleep(0.4)  # the quick branch has ended; the slow one waits (3 s, so a
        # loaded machine still kills it waiting)
        first.kill()
    async with Runner(state=state_url) as runner:
        execution = await _recovered(runner)
        result = await execution.result()
    assert result.status == Status.SUCCEEDED, result.error
    assert result.output == ["1\n", {"slow": True}]  # the quick one's output, kept
    assert journal.read_text() == "quick\n"  # it ran once


async def test_a_sqlite_state_has_one_runner_at_a_time(tmp_path: Path) -> None:
    state = f"sqlite:///{tmp_path / 'state.db'}"
    async with Runner(state=state):
        with pytest.raises(StateError, match=rf"in use by another runner \(pid {os.getpid()}\)"):
            async with Runner(state=state):
                pass
        done = await anyio.run_process(  # a second service on it: refused, with the reason
            [sys.executable, "-m", "actorstage", "serve", "--port", "0", "--state", state],
            check=False, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 2
        assert "is in use by another runner" in done.stderr.decode()
    async with Runner(state=state):  # free again once the first has left
        pass


async def test_an_execution_whose_child_died_stays_failed(tmp_path: Path) -> None:
    """Its workflow could not say how it ended; the state records the end all the same, so
    the next runner does not run it again."""
    journal, state = tmp_path / "journal", f"sqlite:///{tmp_path / 'state.db'}"
    defn = msgspec.convert(json.loads(_workflow(journal, nap=30.0)), WorkflowDef)
    async with Runner(state=state) as runner:
        execution = await runner.start(defn, execution_id="e1", process=True)
        for _ in range(500):
            if journal.exists() and "nap" in journal.read_text():
                break
            await anyio.sleep(0.02)
        assert execution.pid is not None
        os.kill(execution.pid, signal.SIGKILL)  # the child we started
        with anyio.fail_after(10):
            result = await execution.result()
        assert result.status == Status.FAILED
    async with Runner(state=state) as runner:
        assert not runner._running
        assert runner.state is not None
        saved = await runner.state.get("e1")
    assert saved is not None and saved.status == "failed" and saved.ended


_STEPS_THEN_DIE = """
import asyncio, os, sys
from actorstage.workflows._events import BrokerMessage
from actorstage.workflows._state import Saved, SqliteState

async def main():
    state = SqliteState(sys.argv[1])
    await state.open()
    await state.create(Saved(id="e1", workflow_id="w", dialect="stages", definition="{}",
                             request={}))
    for step in range(1, 4):
        for seq in (2 * step - 1, 2 * step):
            message = BrokerMessage(message_type="store.put", execution_id="e1",
                                    workflow_id="w", seq=seq,
                                    payload={"key": "step", "value": step})
            state.note(message, {"step": step} if seq % 2 == 0 else None,
                       step if seq % 2 == 0 else None)
        await state.flush()  # the boundary: durable from here on
    print("flushed", flush=True)
    os._exit(0)  # before the batch's LINGER: the database has none of it

asyncio.run(main())
"""


async def test_a_sqlite_state_s_steps_survive_in_its_step_log(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with anyio.fail_after(60):
        died = await anyio.run_process([sys.executable, "-c", _STEPS_THEN_DIE, str(path)],
                                       cwd=ROOT, check=False)
    assert died.stdout.decode().strip() == "flushed", died.stderr.decode()
    import sqlite3

    with contextlib.closing(sqlite3.connect(path)) as db:  # the steps are only in the log
        assert db.execute("SELECT COUNT(*) FROM events").fetchone() == (0,)
    logs = [Path(f"{path}.steps-a"), Path(f"{path}.steps-b")]
    assert sum(log.stat().st_size for log in logs) > 0
    with logs[0].open("ab") as log:  # a record the crash cut short: dropped
        log.write(b"\x40\x00\x00\x00garbage")
    store = SqliteState(str(path))
    await store.open()
    try:
        saved = await store.get("e1")
        assert saved is not None
        assert (saved.next_step, saved.store, saved.last_seq) == (3, {"step": 3}, 6)
        assert [message.seq for message in await store.events("e1")] == [1, 2, 3, 4, 5, 6]
    finally:
        await store.close()
    assert not any(log.exists() for log in logs)  # all in the database: the log is gone
