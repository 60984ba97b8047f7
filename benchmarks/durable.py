"""Durable execution benchmarks: a SQLite state against the in-memory runner, same process.

Run one with ``python -m benchmarks.durable NAME LOOP``; it prints one JSON object.
Subject and baseline alternate over the rounds; the medians are compared.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import anyio

from actorstage import run
from actorstage.workflows import ActionDef, Runner, StageDef, WorkflowDef

ROUNDS = 5
EXECUTIONS = 200  # concurrent executions of the throughput benchmark
INTERRUPTED = 1000  # executions waiting in the state for the recovery benchmark


def _noop(actions: int, workflow_id: str) -> WorkflowDef:
    return WorkflowDef(id=workflow_id, stages=[StageDef(id="s", actions=[
        ActionDef(id=f"a{index}", action="store.set", params={"key": "k", "value": index})
        for index in range(actions)])])


async def _workflow_time(state: str | None, defn: WorkflowDef) -> float:
    async with Runner(state=state) as runner:
        await runner.execute(defn)  # warm
        began = time.perf_counter()
        await runner.execute(defn)
        return time.perf_counter() - began


async def durable_overhead() -> dict[str, Any]:
    """One 100-action workflow of no-op actions: SQLite state against memory."""
    folder = Path(tempfile.mkdtemp(prefix="actorstage-bench-"))
    defn = _noop(100, "hundred")
    durable, memory = [], []
    try:
        for number in range(ROUNDS):
            durable.append(await _workflow_time(f"sqlite:///{folder}/{number}.db", defn))
            memory.append(await _workflow_time(None, defn))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    value, baseline = statistics.median(durable) * 1e6, statistics.median(memory) * 1e6
    return {"value": value, "baseline": baseline, "ratio": value / baseline, "unit": "us"}


async def _throughput(state: str | None, defn: WorkflowDef) -> float:
    async with Runner(state=state) as runner:
        await runner.execute(defn)
        began = time.perf_counter()
        executions = [await runner.start(defn) for _ in range(EXECUTIONS)]
        for execution in executions:
            await execution.result()
        return EXECUTIONS / (time.perf_counter() - began)


async def durable_throughput() -> dict[str, Any]:
    """Executions per second of a 3-action no-op workflow, 200 at once, SQLite state."""
    folder = Path(tempfile.mkdtemp(prefix="actorstage-bench-"))
    defn = _noop(3, "three")
    durable, memory = [], []
    try:
        for number in range(ROUNDS):
            durable.append(await _throughput(f"sqlite:///{folder}/{number}.db", defn))
            memory.append(await _throughput(None, defn))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    value, baseline = statistics.median(durable), statistics.median(memory)
    return {"value": value, "baseline": baseline, "ratio": value / baseline,
            "unit": "exec/s"}


async def durable_throughput_postgres() -> dict[str, Any]:
    """The same on a PostgreSQL state (a server of its own, on loopback, fsync off)."""
    import asyncpg

    from actorstage.testing import postgres_server

    defn = _noop(3, "three")
    durable, memory = [], []
    with postgres_server() as url:
        for number in range(ROUNDS):
            admin = await asyncpg.connect(f"{url}/postgres")
            await admin.execute(f"CREATE DATABASE bench_{number}")
            await admin.close()
            durable.append(await _throughput(f"{url}/bench_{number}", defn))
            memory.append(await _throughput(None, defn))
    value, baseline = statistics.median(durable), statistics.median(memory)
    return {"value": value, "baseline": baseline, "ratio": value / baseline,
            "unit": "exec/s"}


async def durable_recovery() -> dict[str, Any]:
    """Time from opening a state holding 1,000 interrupted executions to all of them running
    again, against starting 1,000 fresh ones in memory."""
    folder = Path(tempfile.mkdtemp(prefix="actorstage-bench-"))
    state = f"sqlite:///{folder}/runner.db"
    defn = WorkflowDef(id="waiting", stages=[StageDef(id="s", actions=[
        ActionDef(id="first", action="store.set", params={"key": "k", "value": 1}),
        ActionDef(id="nap", action="sleep", params={"seconds": 600})])])
    try:
        async with Runner(state=state) as runner:
            for _ in range(INTERRUPTED):
                await runner.start(defn)
            await anyio.sleep(1.0)  # all past their first action
        # (leaving suspends them: they wait in the state, as after a crash)
        began = time.perf_counter()
        async with Runner(state=state) as runner:
            recovered = len(runner._running)
            value = time.perf_counter() - began
            await runner.close()  # (suspends them again)
        async with Runner() as runner:
            began = time.perf_counter()
            for _ in range(INTERRUPTED):
                await runner.start(defn)
            baseline = time.perf_counter() - began
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert recovered == INTERRUPTED, recovered
    return {"value": value * 1e6, "baseline": baseline * 1e6, "ratio": value / baseline,
            "unit": "us"}


BENCHMARKS: dict[str, Callable[[], Coroutine[Any, Any, dict[str, Any]]]] = {
    "durable_overhead": durable_overhead,
    "durable_throughput": durable_throughput,
    "durable_throughput_postgres": durable_throughput_postgres,
    "durable_recovery": durable_recovery,
}


def main(argv: list[str]) -> None:
    name, loop = argv
    result = run(BENCHMARKS[name], use_uvloop=loop == "uvloop")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
