"""Local actor benchmarks, each paired with a baseline measured in the same process.

Run one with ``python -m benchmarks.local NAME LOOP``; it prints one JSON
object. ``python -m benchmarks`` runs them all and writes docs/benchmarks.md.
Subject and baseline alternate over several rounds and the medians are
compared, so a noisy neighbour hits both alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from actorstage import (
    Actor,
    ActorCrashedError,
    ActorRef,
    ActorSystem,
    ChildSpec,
    Supervisor,
    run,
)

ROUNDS = 5
TELLS = 200_000
ASKS = 20_000
RESTARTS = 2_000


class Sink(Actor):
    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    async def receive(self, message: Any) -> Any:
        if message is None:
            return self.count
        self.count += 1
        return None


class Echo(Actor):
    __slots__ = ()

    async def receive(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError("crash for the benchmark")
        return message


class Idle(Actor):
    __slots__ = ()

    async def receive(self, message: Any) -> Any:
        return message


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


async def rounds(subject: Callable[[], Awaitable[float]],
                 baseline: Callable[[], Awaitable[float]]) -> tuple[float, float]:
    subjects, baselines = [], []
    for _ in range(ROUNDS):
        baselines.append(await baseline())
        subjects.append(await subject())
    return statistics.median(subjects), statistics.median(baselines)


# -- tell throughput ------------------------------------------------------------


async def tell_throughput() -> dict[str, Any]:
    async with ActorSystem(mailbox_size=1000) as system:
        async def subject() -> float:
            ref = await system.spawn(Sink)
            began = time.perf_counter()
            for i in range(TELLS):
                await ref.tell(i)
            assert await ref.ask(None) == TELLS
            elapsed = time.perf_counter() - began
            await system.stop(ref)
            return TELLS / elapsed

        async def baseline() -> float:
            queue: asyncio.Queue[Any] = asyncio.Queue(1000)

            async def consume() -> int:
                count = 0
                while await queue.get() is not None:
                    count += 1
                return count

            began = time.perf_counter()
            consumer = asyncio.ensure_future(consume())
            for i in range(TELLS):
                await queue.put(i)
            await queue.put(None)
            assert await consumer == TELLS
            return TELLS / (time.perf_counter() - began)

        ours, base = await rounds(subject, baseline)
    return {"value": ours, "baseline": base, "ratio": ours / base, "unit": "msg/s"}


# -- ask round trip -----------------------------------------------------------------


async def ask_latency() -> dict[str, Any]:
    async with ActorSystem() as system:
        ref = await system.spawn(Echo)

        async def subject() -> float:
            samples = []
            for i in range(ASKS):
                began = time.perf_counter()
                await ref.ask(i)
                samples.append(time.perf_counter() - began)
            return statistics.median(samples) * 1e6

        async def baseline() -> float:
            requests: asyncio.Queue[Any] = asyncio.Queue()
            replies: asyncio.Queue[Any] = asyncio.Queue()

            async def serve() -> None:
                while (item := await requests.get()) is not None:
                    replies.put_nowait(item)

            server = asyncio.ensure_future(serve())
            samples = []
            for i in range(ASKS):
                began = time.perf_counter()
                requests.put_nowait(i)
                await replies.get()
                samples.append(time.perf_counter() - began)
            requests.put_nowait(None)
            await server
            return statistics.median(samples) * 1e6

        ours, base = await rounds(subject, baseline)
    return {"value": ours, "baseline": base, "ratio": ours / base, "unit": "us p50"}


# -- idle actors ---------------------------------------------------------------------


async def idle_memory(count: int) -> dict[str, Any]:
    async with ActorSystem() as system:
        gc.collect()
        before = rss()
        began = time.perf_counter()
        refs: list[ActorRef] = [await system.spawn(Idle) for _ in range(count)]
        spawn_seconds = time.perf_counter() - began
        gc.collect()
        per_actor = (rss() - before) / count
        assert await refs[-1].ask("alive") == "alive"
        del refs

    # Baseline: what one task and one queue per actor would cost.
    gc.collect()
    before = rss()
    queues = [asyncio.Queue[Any]() for _ in range(count)]
    tasks = [asyncio.ensure_future(q.get()) for q in queues]
    await asyncio.sleep(0)
    gc.collect()
    per_task = (rss() - before) / count
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"value": per_actor, "baseline": per_task, "ratio": per_actor / per_task,
            "unit": "bytes/actor", "spawn_seconds": spawn_seconds}


async def idle_10k() -> dict[str, Any]:
    return await idle_memory(10_000)


async def idle_100k() -> dict[str, Any]:
    return await idle_memory(100_000)


# -- restart -----------------------------------------------------------------------


async def restart_latency() -> dict[str, Any]:
    # Each crash is logged; the record is made, and discarded here rather than printed.
    logger = logging.getLogger("actorstage")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    async with ActorSystem() as system:
        sup = await system.spawn(Supervisor, max_restarts=10**9, within=1.0,
                                 children=[ChildSpec("echo", Echo)])
        ref = sup.which_children()[0].ref
        samples = []
        for _ in range(RESTARTS):
            with contextlib.suppress(ActorCrashedError):
                await ref.ask("crash")
            began = time.perf_counter()
            await ref.ask("next")
            samples.append(time.perf_counter() - began)
        restart = statistics.median(samples) * 1e6
        asks = []
        for i in range(RESTARTS):
            began = time.perf_counter()
            await ref.ask(i)
            asks.append(time.perf_counter() - began)
        ask = statistics.median(asks) * 1e6
    return {"value": restart, "baseline": ask, "ratio": restart / ask, "unit": "us p50"}


BENCHMARKS: dict[str, Callable[[], Coroutine[Any, Any, dict[str, Any]]]] = {
    "tell_throughput": tell_throughput,
    "ask_latency": ask_latency,
    "idle_10k": idle_10k,
    "idle_100k": idle_100k,
    "restart_latency": restart_latency,
}


def main(argv: list[str]) -> None:
    name, loop = argv
    result = run(BENCHMARKS[name], use_uvloop=loop == "uvloop")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
