"""Process-actor benchmarks, each against a multiprocessing baseline measured in the same run.

``python -m benchmarks.process <name> <asyncio|uvloop> <unix|tcp|stdio>`` prints one
JSON line. Baselines use ``multiprocessing`` with the spawn start method and a
``Pipe`` (bytes in, bytes out), the plainest way two Python processes talk.
"""

from __future__ import annotations

import asyncio
import gc
import json
import multiprocessing
import os
import statistics
import sys
import time
import tracemalloc
from multiprocessing.connection import Connection
from typing import Any

import msgspec

from actorstage import Actor, ActorRef, ActorSystem, Message, ProcessOptions, run

ROUNDS = 5
ASKS = 5000
TELLS = 100_000
SPAWNS = 20
MAILBOX = 1000
BLOB = 1024
PAYLOAD = 1024 * 1024  # the large-payload benchmark's message
PAYLOADS = 300


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


def _measure(conn: Connection) -> None:
    while True:
        data = conn.recv_bytes()
        if data == b"stop":
            return
        conn.send_bytes(str(len(data)).encode())


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


# -- the floor of the stack: a bare grpclib bidirectional stream, msgspec bodies ---------------


def _grpclib_echo(path: str, use_uvloop: bool) -> None:
    """A grpclib server on ``path`` whose one stream answers each message with itself."""
    import grpclib.const
    from grpclib.server import Server

    from actorstage.transport._codec import RawCodec

    decode, encode = msgspec.msgpack.decode, msgspec.msgpack.encode

    class Echo:
        async def stream(self, stream: Any) -> None:
            async for message in stream:
                await stream.send_message(encode(decode(message)))

        def __mapping__(self) -> dict[str, grpclib.const.Handler]:
            return {"/bench.Echo/Stream": grpclib.const.Handler(
                self.stream, grpclib.const.Cardinality.STREAM_STREAM, bytes, bytes)}

    async def serve() -> None:
        server = Server([Echo()], codec=RawCodec())
        await server.start(path=path)
        await server.wait_closed()

    run(serve, use_uvloop=use_uvloop)


def grpclib_rtt(_options: ProcessOptions, loop: str) -> float:
    """p50 round trip of one msgspec message on a bare grpclib stream to another process."""
    import tempfile

    folder = tempfile.mkdtemp(prefix="bench-grpclib-")
    path = os.path.join(folder, "echo.sock")
    context = multiprocessing.get_context("spawn")
    server = context.Process(target=_grpclib_echo, args=(path, loop == "uvloop"))
    server.start()
    deadline = time.monotonic() + 20
    while not os.path.exists(path) and time.monotonic() < deadline:  # (it starts)
        time.sleep(0.05)
    try:
        return run(_grpclib_client, path, use_uvloop=loop == "uvloop")
    finally:
        server.kill()
        server.join()
        if os.path.exists(path):
            os.unlink(path)
        os.rmdir(folder)


async def _grpclib_client(path: str) -> float:
    from grpclib.client import Channel
    from grpclib.const import Cardinality

    from actorstage.transport._codec import RawCodec

    channel = Channel(path=path, codec=RawCodec())
    encode, decode = msgspec.msgpack.encode, msgspec.msgpack.decode
    try:
        async with channel.request("/bench.Echo/Stream", Cardinality.STREAM_STREAM,
                                   bytes, bytes) as stream:
            await stream.send_request()
            times = []
            for round_trip in range(200 + ASKS):
                start = time.perf_counter()
                await stream.send_message(encode([round_trip, 1]))
                reply = await stream.recv_message()
                assert reply is not None
                decode(reply)
                if round_trip >= 200:
                    times.append(time.perf_counter() - start)
            await stream.end()
    finally:
        channel.close()
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


def pipe_payload() -> float:
    """MiB/s of sequential 1 MiB sends over a Pipe, each answered with its length."""
    process, conn = _start(_measure)
    payload = os.urandom(PAYLOAD)
    for _ in range(10):
        conn.send_bytes(payload)
        conn.recv_bytes()
    start = time.perf_counter()
    for _ in range(PAYLOADS):
        conn.send_bytes(payload)
        assert int(conn.recv_bytes()) == PAYLOAD
    elapsed = time.perf_counter() - start
    conn.send_bytes(b"stop")
    process.join()
    return PAYLOADS * PAYLOAD / elapsed / 2**20


def pipe_spawn() -> float:
    start = time.perf_counter()
    process, conn = _start(_hello)
    conn.recv_bytes()
    elapsed = time.perf_counter() - start
    process.join()
    return elapsed * 1e6


def fork_rtt() -> float:
    """p50 of a bare ``os.fork`` round trip: fork, the child writes a byte, we read it."""
    times = []
    for _ in range(SPAWNS):
        read, write = os.pipe()
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os.write(write, b"!")
            os._exit(0)
        os.read(read, 1)
        times.append(time.perf_counter() - start)
        os.waitpid(pid, 0)
        os.close(read)
        os.close(write)
    return statistics.median(times) * 1e6


# -- actorstage ------------------------------------------------------------------------


async def ask_rtt(options: ProcessOptions) -> float:
    async with ActorSystem() as system:
        ref = await system.spawn(Echo, process=options)
        return await ask_p50(ref, ASKS)


async def ask_p50(ref: ActorRef, count: int) -> float:
    """The p50 of ``count`` sequential asks of ``ref``, in us, after 200 to warm up."""
    for _ in range(200):
        await ref.ask(1)
    times = []
    for _ in range(count):
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


class Measure(Actor):
    async def receive(self, message: bytes) -> int:
        return len(message)


async def payload_asks(options: ProcessOptions) -> float:
    """MiB/s of sequential asks carrying 1 MiB each to a process actor (it answers the size)."""
    async with ActorSystem() as system:
        ref = await system.spawn(Measure, process=options)
        payload = os.urandom(PAYLOAD)
        for _ in range(10):
            await ref.ask(payload)
        start = time.perf_counter()
        for _ in range(PAYLOADS):
            assert await ref.ask(payload) == PAYLOAD
        elapsed = time.perf_counter() - start
    return PAYLOADS * PAYLOAD / elapsed / 2**20


async def spawn_first_reply(options: ProcessOptions) -> float:
    async with ActorSystem() as system:
        start = time.perf_counter()
        ref = await system.spawn(Echo, process=options)
        await ref.ask(1)
        elapsed = time.perf_counter() - start
    return elapsed * 1e6


async def warm_spawn(options: ProcessOptions, spares: int = 1) -> float:
    """p50 of spawn to first reply through a forkserver that is already running: from a
    spare child (the default), or forking each (``spares=0``)."""
    options = msgspec.structs.replace(options, start="forkserver", spares=spares)
    async with ActorSystem() as system:
        await system.stop(await system.spawn(Echo, process=options))  # starts the forkserver
        times = []
        for _ in range(SPAWNS):
            if spares:
                await asyncio.sleep(0.1)  # spawns now and then: a spare is ready for each
            start = time.perf_counter()
            ref = await system.spawn(Echo, process=options)
            await ref.ask(1)
            times.append(time.perf_counter() - start)
            await system.stop(ref)
    return statistics.median(times) * 1e6


async def warm_spawn_forked(options: ProcessOptions) -> float:
    return await warm_spawn(options, spares=0)


class Blob(Message, frozen=True):
    data: bytes


class Stalled(Actor):
    """Takes its first message and sits on it: a child that stopped keeping up."""

    async def receive(self, message: Any) -> Any:
        if message == "stall":
            await asyncio.sleep(3600)
        return None


async def slow_child_memory(options: ProcessOptions) -> float:
    """Parent heap growth while 20,000 x 1 KiB tells go to a child that stopped reading."""
    async with ActorSystem(shutdown_timeout=0.1) as system:
        ref = await system.spawn(Stalled, process=options, mailbox_size=MAILBOX)
        await ref.tell("stall")
        payload = os.urandom(BLOB)
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        sent = 0

        async def flood() -> None:
            nonlocal sent
            for _ in range(20_000):
                await ref.tell(Blob(payload))
                sent += 1

        task = asyncio.ensure_future(flood())
        await asyncio.sleep(2.0)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        task.cancel()
        assert sent <= 2 * MAILBOX + 1, sent  # credits plus the parent's mailbox, no more
        await system.stop(ref)
    return float(max(grown, 0))


class Survey(Message, frozen=True):
    """Ask ``peer`` ``count`` times, timing each ask where it is made."""

    peer: ActorRef
    count: int


class Asker(Actor):
    """Runs in a child: asks a sibling (a ref it was sent) and reports the p50, in us."""

    async def receive(self, message: Survey) -> float:
        return await ask_p50(message.peer, message.count)


async def sibling_ask(options: ProcessOptions) -> float:
    """p50 of asks from one child process to another (over their direct link)."""
    async with ActorSystem() as system:
        asker = await system.spawn(Asker, process=options)
        echo = await system.spawn(Echo, process=options)
        value: float = await asker.ask(Survey(echo, ASKS))
    return value


def parent_ask(options: ProcessOptions, loop: str) -> float:
    """The parent-to-child ask p50 in the same run: the sibling ask's baseline."""
    return run(ask_rtt, options, use_uvloop=loop == "uvloop")


def memory_bound() -> float:
    """What the bound allows: the credit window plus the mailbox, in message payloads."""
    return float(2 * MAILBOX * BLOB)


BENCHMARKS: dict[str, tuple[Any, Any, str]] = {
    "process_ask": (ask_rtt, pipe_rtt, "us"),
    "process_tell": (tell_throughput, pipe_throughput, "msg/s"),
    "process_spawn": (spawn_first_reply, pipe_spawn, "us"),
    "process_warm_spawn": (warm_spawn, fork_rtt, "us"),
    "process_warm_spawn_forked": (warm_spawn_forked, fork_rtt, "us"),
    "process_slow_child_memory": (slow_child_memory, memory_bound, "bytes"),
    "process_sibling_ask": (sibling_ask, parent_ask, "us"),
    "process_ask_floor": (ask_rtt, grpclib_rtt, "us"),
    "process_payload": (payload_asks, pipe_payload, "MiB/s"),
}


def main(argv: list[str]) -> None:
    name, loop, transport = argv
    subject, baseline, unit = BENCHMARKS[name]
    options = ProcessOptions(transport=transport)  # type: ignore[arg-type]
    subjects, baselines = [], []
    for _ in range(ROUNDS):
        with_options = baseline in (parent_ask, grpclib_rtt)
        baselines.append(baseline(options, loop) if with_options else baseline())
        subjects.append(run(subject, options, use_uvloop=loop == "uvloop"))
    value, base = statistics.median(subjects), statistics.median(baselines)
    print(json.dumps({"value": value, "baseline": base, "ratio": value / base, "unit": unit}))


if __name__ == "__main__":
    main(sys.argv[1:])
