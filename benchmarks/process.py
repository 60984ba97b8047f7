"""Process-actor benchmarks, each against a multiprocessing baseline measured in the same run.

``python -m benchmarks.process <name> <asyncio|uvloop> <unix|tcp|stdio>`` prints one
JSON line. Baselines use ``multiprocessing`` with the spawn start method and a
``Pipe`` (bytes in, bytes out), the plainest way two Python processes talk.
"""

from __future__ import annotations

import json
import multiprocessing
import statistics
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

from actorstage import Actor, ActorSystem, Message, ProcessOptions, run

ROUNDS = 3
ASKS = 5000
TELLS = 100_000


class Ping(Message, frozen=True):
    n: int


class Echo(Actor):
    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    async def receive(self, message: Any) -> Any:
        self.count += 1
        if message == "count":
            return self.count
        return message


# -- baselines (multiprocessing, spawn) ---------------------------------------------


def _echo(conn: Connection) -> None:
    while True:
        data = conn.recv_bytes()
        if data == b"stop":
            return
        conn.send_bytes(data)


def _count(conn: Connection) -> None:
    received = 0
    while True:
        data = conn.recv_bytes()
        if data == b"done":
            conn.send_bytes(str(received).encode())
            return
        received += 1


def _hello(conn: Connection) -> None:
    conn.send_bytes(b"up")


def _start(target: Any) -> tuple[multiprocessing.process.BaseProcess, Connection]:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=target, args=(child,))
    process.start()
    return process, parent


def pipe_rtt() -> float:
    process, conn = _start(_echo)
    for _ in range(200):
        conn.send_bytes(b"\x91\x01")
        conn.recv_bytes()
    times = []
    for _ in range(ASKS):
        start = time.perf_counter()
        conn.send_bytes(b"\x91\x01")
        conn.recv_bytes()
        times.append(time.perf_counter() - start)
    conn.send_bytes(b"stop")
    process.join()
    return statistics.median(times) * 1e6


def pipe_throughput() -> float:
    process, conn = _start(_count)
    start = time.perf_counter()
    for _ in range(TELLS):
        conn.send_bytes(b"\x91\x01")
    conn.send_bytes(b"done")
    assert int(conn.recv_bytes()) == TELLS
    elapsed = time.perf_counter() - start
    process.join()
    return TELLS / elapsed


def pipe_spawn() -> float:
    start = time.perf_counter()
    process, conn = _start(_hello)
    conn.recv_bytes()
    elapsed = time.perf_counter() - start
    process.join()
    return elapsed * 1e6


# -- actorstage ------------------------------------------------------------------------


async def ask_rtt(options: ProcessOptions) -> float:
    async with ActorSystem() as system:
        ref = await system.spawn(Echo, process=options)
        for _ in range(200):
            await ref.ask(1)
        times = []
        for _ in range(ASKS):
            start = time.perf_counter()
            await ref.ask(1)
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


async def tell_throughput(options: ProcessOptions) -> float:
    async with ActorSystem() as system:
        ref = await system.spawn(Echo, process=options)
        await ref.ask(0)
        message = Ping(1)
        start = time.perf_counter()
        for _ in range(TELLS):
            await ref.tell(message)
        assert await ref.ask("count") == TELLS + 2
        elapsed = time.perf_counter() - start
    return TELLS / elapsed


async def spawn_first_reply(options: ProcessOptions) -> float:
    async with ActorSystem() as system:
        start = time.perf_counter()
        ref = await system.spawn(Echo, process=options)
        await ref.ask(1)
        elapsed = time.perf_counter() - start
    return elapsed * 1e6


BENCHMARKS = {
    "process_ask": (ask_rtt, pipe_rtt, "us"),
    "process_tell": (tell_throughput, pipe_throughput, "msg/s"),
    "process_spawn": (spawn_first_reply, pipe_spawn, "us"),
}


def main(argv: list[str]) -> None:
    name, loop, transport = argv
    subject, baseline, unit = BENCHMARKS[name]
    options = ProcessOptions(transport=transport)  # type: ignore[arg-type]
    subjects, baselines = [], []
    for _ in range(ROUNDS):
        baselines.append(baseline())
        subjects.append(run(subject, options, use_uvloop=loop == "uvloop"))
    value, base = statistics.median(subjects), statistics.median(baselines)
    print(json.dumps({"value": value, "baseline": base, "ratio": value / base, "unit": unit}))


if __name__ == "__main__":
    main(sys.argv[1:])
