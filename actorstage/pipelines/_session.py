"""A running pipeline: node actors, the channels between them, and the loops that move items.

Every node is an actor under the session's ``PipelineActor``: a
``NodeActor`` holds a native node and runs it here; a ``NodeProxy`` spawns
a ``NodeWorker`` process actor that runs the node in a child process, and
restarts it when it dies (or fails the session, per ``on_node_crash``).
Items move through ``Channel``s into each node's ``Inbox``; the session's
task group runs one loop per node (the native node's loop runs inside its
actor, as the handler of one long message). Items between processes are
``WireItem``s whose large binary parts sit in shared memory; the session
counts the consumers of each segment and removes it after the last.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import sys
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from types import CoroutineType
from typing import Any

import anyio
import msgspec

from actorstage._metrics import SESSIONS, node_batch
from actorstage._shm import (
    MARKER,
    SHM_DIR,
    Cursor,
    SegmentReader,
    SegmentWriter,
    mark_session,
    sweep,
    unlink,
)
from actorstage._telemetry import open_span, span
from actorstage.actors._actor import Actor
from actorstage.actors._message import Message, Terminated
from actorstage.actors._ref import ActorRef
from actorstage.actors._system import ActorSystem
from actorstage.exceptions import ActorCrashedError, ActorDeadError, ActorstageError
from actorstage.pipelines._channels import Aborted, Channel, Inbox
from actorstage.pipelines._manifest import Placement
from actorstage.pipelines._plan import Plan, PlannedNode
from actorstage.pipelines._wire import ItemCodec, Origins, Traced, WireBatch, WireItem, to_bytes
from actorstage.pipelines._worker import (
    FLUSH,
    Downstream,
    Emitted,
    Finish,
    ItemError,
    Items,
    NodeWorker,
    WorkerSetup,
    error_of,
    outputs_of,
    prepare_codec,
)
from actorstage.supervisors._default import TEMPORARY_POLICY, TemporaryPolicy
from actorstage.transport._options import ProcessOptions

__all__ = [
    "ItemFailure",
    "NodeStats",
    "Output",
    "PipelineError",
    "PipelineResult",
    "PipelineSession",
]

log = logging.getLogger("actorstage.pipelines")

BATCH = 1024  # items a node loop takes from its inbox at once
# Emitted messages a node process may have on their way to its proxy (the bridge's credits):
# with at most channel_capacity items each, this bounds how far a process node runs ahead.
_PROXY_WINDOW = 2
_BOOT_ALLOWANCE = 20.0  # seconds for a node process to start Python, on top of init_timeout
INLINE = sys.maxsize  # the shared-memory threshold of a node placed elsewhere: none


def _placed(placement: Placement) -> dict[str, Any]:
    """``ProcessOptions`` of a node whose process its placement starts (on a Ray cluster)."""
    from actorstage.transport._ray import RayPlacement

    ray = placement.ray
    return {"transport": "tcp", "placement": RayPlacement(
        ray.address, num_cpus=ray.num_cpus, num_gpus=ray.num_gpus, resources=ray.resources,
        runtime_env=ray.runtime_env, scheduling_strategy=ray.scheduling_strategy)}


# No "-": the id ends the prefix of the session's shared-memory names, and one session's
# prefix must never be the start of another's.
_SESSION_ID = re.compile(r"[A-Za-z0-9_.]{1,64}")


def valid_session_id(text: str) -> bool:
    """1-64 letters, digits, ``_`` or ``.``."""
    return _SESSION_ID.fullmatch(text) is not None


class PipelineError(ActorstageError):
    """A pipeline session failed: a node's setup, an item under ``on_node_crash="fail"``,
    a node process that died once too often, or the memory limit.

    ``failure``: the item failure that ended it, when one did (node, item, traceback).
    """

    def __init__(self, message: str, *, failure: ItemFailure | None = None) -> None:
        super().__init__(message)
        self.failure = failure


class Output(msgspec.Struct, frozen=True):
    """An item that left the pipeline, the node (a leaf) it came from, and, in a session
    that follows origins, the ``origin`` its input was sent with."""

    node_id: str
    item: Any
    origin: Any = None


class ItemFailure(msgspec.Struct, frozen=True):
    """An item a node did not finish (``on_node_crash="continue"``)."""

    node_id: str
    item_number: int  # 1-based, in the order the node received its items; 0: during flush
    type_name: str
    message: str
    traceback: str = ""


class NodeStats(msgspec.Struct):
    """What one node did: items in and out, time spent, deepest queue, restarts."""

    node_id: str
    node_type: str
    executor: str
    items_in: int = 0
    items_out: int = 0
    failed: int = 0
    busy_seconds: float = 0.0
    max_queue: int = 0
    restarts: int = 0
    pid: int | None = None

    @property
    def mean_seconds(self) -> float:
        return self.busy_seconds / self.items_in if self.items_in else 0.0


class PipelineResult(msgspec.Struct, frozen=True):
    """The outcome of a session that ran to its end."""

    name: str
    session_id: str
    outputs: list[Output]
    nodes: dict[str, NodeStats]
    failures: list[ItemFailure]
    duration: float


_END = object()
_PLAIN = frozenset({int, float, str, bytes, bool, type(None)})  # never hold a shared view


class _Run(Message, frozen=True):
    """Run the node loop until the inputs end (a native node)."""


def _size(item: Any) -> int:
    """Bytes an item holds, roughly: its binary and text parts, plus a fixed overhead."""
    kind = type(item)
    if kind is WireItem:
        return int(item.size())
    if kind is Traced:
        return _size(item.item)
    if kind is bytes or kind is bytearray or kind is str:
        return len(item) + 64
    if kind is memoryview:
        return int(item.nbytes) + 64
    if isinstance(item, msgspec.Struct):
        return 64 + sum(
            len(value) for name in item.__struct_fields__
            if isinstance(value := getattr(item, name), bytes | bytearray | str | memoryview))
    return 64


class _Segments:
    """The session's shared-memory segments: how many consumers still need each one."""

    def __init__(self) -> None:
        self.refs: dict[str, int] = {}

    def add(self, names: Iterable[str], consumers: int) -> None:
        refs = self.refs
        for name in names:
            left = refs.get(name, 0) + consumers
            if left:
                refs[name] = left
            else:  # its one consumer was done before we heard of it (a direct connection)
                del refs[name]

    def drop(self, names: Iterable[str]) -> None:
        refs = self.refs
        for name in names:
            left = refs.get(name, 1) - 1
            if left > 0:
                refs[name] = left
            else:
                if name in refs:
                    del refs[name]
                else:  # not added yet (its news comes on another process's link): gone now,
                    refs[name] = -1  # and the add that follows finds it so
                unlink(name)


def _local_process(node: PlannedNode) -> bool:
    """A process node whose process is a child of ours (so shares this machine's memory)."""
    return node.spec.executor == "process" and node.placement is None


class _Port:
    """One node's place in the session: its inbox, its outgoing channels, its stats."""

    def __init__(self, session: PipelineSession, node: PlannedNode, index: int) -> None:
        self.session = session
        self.node = node
        self.index = index
        self.inbox = Inbox(node.id)
        self.channels: list[Channel] = []
        self.stats = NodeStats(node.id, node.spec.node_type, node.spec.executor)
        self.received = 0  # items taken from the inbox, numbered from 1
        self.actor: NodeActor | NodeProxy | None = None
        # A direct connection: this process node sends its items straight to the next
        # one's process (direct_to), or takes them straight from the one before (direct_in).
        self.direct_to: _Port | None = None
        self.direct_in = False

    async def emit(self, item: Any) -> None:
        """Pass ``item`` to every outgoing connection, waiting for room where one is full."""
        self.stats.items_out += 1
        if type(item) is WireItem and item.shm:
            self.session.segments.add(item.segment_names(), len(self.channels))
        for channel in self.channels:
            if channel.has_room():
                channel.put_nowait(item)
            else:
                await channel.put(item)

    async def emit_all(self, items: list[Any]) -> None:
        """``emit`` each of ``items``; all at once where a connection has room for them."""
        self.stats.items_out += len(items)
        channels = self.channels
        segments = self.session.segments
        for item in items:
            if type(item) is WireItem and item.shm:
                segments.add(item.segment_names(), len(channels))
        for channel in channels:
            if not channel.put_all_nowait(items):
                for item in items:
                    if channel.has_room():
                        channel.put_nowait(item)
                    else:
                        await channel.put(item)

    def put_results(self, channel: Channel | None, results: list[Any]) -> list[Any]:
        """Put ``results`` (which the caller made sure fit) into ``channel``: an empty list to
        gather the next ones in."""
        if results:
            assert channel is not None
            self.stats.items_out += len(results)
            put = channel.put_all_nowait(results)
            assert put, "put_results takes only results that fit"
            return []
        return results

    def done_with(self, channel: Channel, item: Any) -> None:
        channel.release(item)
        if type(item) is WireItem and item.shm:
            self.session.segments.drop(item.segment_names())

    def close_outputs(self) -> None:
        for channel in self.channels:
            channel.close()

    def failed(self, number: int, error: ItemError | BaseException, during: str = "") -> None:
        """Item ``number`` failed: record it, or fail the session, per ``on_node_crash``."""
        if isinstance(error, BaseException):
            error = error_of(number, error)
        self.stats.failed += 1
        failure = ItemFailure(self.node.id, number, error.type_name, error.message,
                              error.traceback)
        session = self.session
        if session.plan.settings.on_node_crash == "continue":
            session.failures.append(failure)
            log.warning("pipeline %s: node %r failed on item %d%s: %s: %s", session.plan.name,
                        self.node.id, number, during, error.type_name, error.message)
            return
        what = f"its item {number}" if number else "flush"
        session.fail(PipelineError(
            f"node {self.node.id!r} failed on {what}{during}: "
            f"{error.type_name}: {error.message}", failure=failure))
        raise Aborted


class NodeActor(Actor):
    """A native node: set up, fed and torn down in this process."""

    _traced = False  # (the runtime's own: see Actor._traced)

    def __init__(self, port: _Port) -> None:
        self.port = port
        self.node: Any = None

    def _policy(self) -> TemporaryPolicy:
        return TEMPORARY_POLICY

    async def on_start(self) -> None:
        port = self.port
        planned = port.node
        port.actor = self
        self.node = planned.node_type.cls(planned.params, planned.id)
        timeout = port.session.plan.settings.init_timeout_secs
        try:
            with anyio.fail_after(timeout):
                await self.node.setup()
        except TimeoutError:
            raise TimeoutError(f"node {planned.id!r} did not finish setup within {timeout:g} s "
                               "(init_timeout_secs)") from None

    async def receive(self, message: Any) -> Any:
        if isinstance(message, _Run):
            with contextlib.suppress(Aborted):
                await self._loop()
        return None

    async def _loop(self) -> None:
        port = self.port
        inbox, node, emit = port.inbox, self.node, port.emit
        if port.session.origins:
            node = Origins(node)  # its results carry their items' origins
        process = node.process
        codec = port.session.codec
        # One plain connection out: its items skip emit() while it has room.
        only = port.channels[0] if len(port.channels) == 1 else None
        sized = not port.session.plan.settings.enable_backpressure  # items counted in bytes
        if sized:
            only = None
        while True:
            batch = await inbox.take(BATCH)
            if not batch:
                break
            count = sum(len(items) for _channel, items in batch)
            with span(f"node {port.node.id}", {"actorstage.node.id": port.node.id,
                                               "actorstage.node.items": count}):
                await self._batch(batch, count, only, sized, process, codec, port)
        try:
            async for value in outputs_of(node.flush()):
                await emit(value)
        except (Aborted, asyncio.CancelledError):
            raise
        except Exception as exc:
            port.failed(0, exc, " (flush)")
        port.close_outputs()

    async def _batch(self, batch: list[tuple[Channel, list[Any]]], count: int,
                     only: Channel | None, sized: bool, process: Any, codec: Any,
                     port: _Port) -> None:
        """One batch of ``count`` items (runs from the inbox) through the node, in order."""
        stats, emit, clock = port.stats, port.emit, time.perf_counter
        began = clock()
        outs: list[Any] = []  # results for `only`, put at once while it has room for them
        # Only this loop puts into `only`, so its room can only grow during the batch.
        room = only.capacity - only.count if only is not None else 0
        released: dict[Channel, int] = {}  # plain items done with, released at once
        received = port.received
        port.received += count
        for channel, items in batch:
            plain = 0  # this run's plain items done with
            for item in items:
                received += 1
                wire = item if type(item) is WireItem else None
                try:
                    if wire is not None:
                        item = codec.decode(wire)
                    result = process(item)
                    if type(result) is CoroutineType or not hasattr(result, "__anext__"):
                        result = await result  # (an `async def` with `yield` is not awaited)
                    if result is None:
                        pass
                    elif len(outs) < room and (
                            type(result) in _PLAIN or (type(result) is not WireItem and
                                                       not hasattr(result, "__anext__"))):
                        outs.append(result)
                    else:
                        outs = port.put_results(only, outs)
                        if hasattr(result, "__anext__"):
                            async for value in result:
                                await emit(value)
                        else:
                            await emit(result)
                        room = only.capacity - only.count if only is not None else 0
                except (Aborted, asyncio.CancelledError):
                    raise
                except Exception as exc:
                    # The results before this one go first, whatever happens next.
                    outs = port.put_results(only, outs)
                    room = only.capacity - only.count if only is not None else 0
                    port.failed(received, exc)
                finally:
                    if wire is not None:
                        codec.release(wire)
                        port.done_with(channel, wire)
                    elif sized:
                        channel.release(item)
                    else:
                        plain += 1
            if plain:
                released[channel] = released.get(channel, 0) + plain
        port.put_results(only, outs)
        for channel, done in released.items():
            channel.release_count(done)
        busy = clock() - began
        stats.items_in += count
        stats.busy_seconds += busy
        node_batch(port.session.plan.name, port.node.id, count, busy)

    async def on_stop(self) -> None:
        if self.node is not None:
            await self.node.teardown()


_TAKEN: Any = object()  # in a _Sent's items: taken back when its process died


class _Sent:
    """A batch sent to a node's process: items numbered from ``first``, the connection
    each came from, their wire forms, and how many of them the process has finished
    (``next``).

    Kept per batch, not per item: the items in flight make no objects of their own.
    ``channels`` is the one connection they all came from, or one per item. An item
    taken back after its process died leaves ``_TAKEN`` in its place; ``next`` always
    names one still there (a batch with none left is dropped).
    """

    __slots__ = ("channels", "first", "items", "next", "plain", "wires")

    def __init__(self, first: int, items: list[Any], channels: Channel | list[Channel],
                 wires: list[WireItem | None], shared: bool) -> None:
        self.first = first
        self.items = items
        self.channels = channels
        self.wires = wires
        self.next = 0
        # Finished items only need counting back to their one connection: none of them is
        # in shared memory, sized, or taken back.
        self.plain = not shared and isinstance(channels, Channel) and channels.on_grow is None

    def channel(self, index: int) -> Channel:
        channels = self.channels
        return channels if isinstance(channels, Channel) else channels[index]

    def live(self, index: int) -> int:
        """The first index from ``index`` on whose item is still here (or the length)."""
        items = self.items
        while index < len(items) and items[index] is _TAKEN:
            index += 1
        return index


def _flat(runs: list[tuple[Channel, list[Any]]]) -> tuple[list[Any], Channel | list[Channel]]:
    """The items of ``runs`` in one list, and the connection they all came from (or, from
    several, the one each came from)."""
    if len(runs) == 1:
        return runs[0][1], runs[0][0]
    items: list[Any] = []
    channels: list[Channel] = []
    for channel, run in runs:
        items.extend(run)
        channels.extend([channel] * len(run))
    return items, channels


def _outputs(runs: list[tuple[str, list[Any]]], origins: bool) -> Iterator[Output]:
    """The ``Output`` of each value of ``runs`` (``PipelineSession._arrivals``), made as
    it is taken."""
    for source, values in runs:
        for value in values:
            if origins and type(value) is Traced:
                yield Output(source, to_bytes(value.item), value.origin)
            else:
                yield Output(source, value)


class NodeProxy(Actor):
    """A process node's parent side: feeds its ``NodeWorker``, routes what it emits.

    It is the worker's supervisor: when the worker's process dies, the item
    it was working on (read from the shared cursor) is reported failed and
    the others it held are given to a new process, or the session fails,
    per ``on_node_crash`` and ``max_node_restarts``.
    """

    _traced = False  # (the runtime's own: see Actor._traced)

    def __init__(self, port: _Port) -> None:
        self.port = port
        self.worker: ActorRef | None = None
        self.cursor: Cursor | None = None
        self.pid: int | None = None
        self.incarnation = 0
        self.next_seq = 1
        self.pending: deque[_Sent] = deque()
        self.idle = asyncio.Event()  # nothing pending
        self.idle.set()
        self.lock = asyncio.Lock()  # sending to the worker, and replacing it
        self.emitted = 0  # Emitted handled from the current worker
        self.emitted_changed = asyncio.Event()
        self.ended = False
        self.got_last = False  # (direct_in) the worker has finished after the one before
        self.inline: ItemCodec | None = None  # (placed) items encoded with no shared memory
        if port.node.placement is not None:
            codec = port.session.codec
            self.inline = ItemCodec(INLINE, codec.writer, codec.reader, forward=False)

    def _policy(self) -> TemporaryPolicy:
        return TEMPORARY_POLICY

    async def on_start(self) -> None:
        self.port.actor = self
        prepare_codec()
        await self._spawn()

    async def _spawn(self) -> None:
        port = self.port
        session = port.session
        settings = session.plan.settings
        planned = port.node
        placed = planned.placement is not None  # maybe on another machine: no shared memory
        await session.protect()
        self.incarnation += 1
        cursor = self.cursor = None if placed else Cursor.create(
            f"{session.prefix}c{port.index}-{self.incarnation}")
        main = ("", "")
        if planned.node_type.module == "__main__":
            from actorstage.transport._host import main_location

            main = main_location()
        modules = list(settings.imports)
        if planned.node_type.module not in ("__main__", *modules):
            modules.append(planned.node_type.module)
        setup = WorkerSetup(
            node_id=planned.id, node_type=planned.spec.node_type, params=planned.spec.params,
            imports=modules, import_paths=list(settings.import_paths), main=main,
            segment_prefix=f"{session.prefix}n{port.index}-",
            cursor=cursor.name if cursor is not None else "",
            marker="" if placed else session.prefix + MARKER,
            threshold=INLINE if placed else settings.shared_memory_threshold_bytes,
            init_timeout=settings.init_timeout_secs,
            title=f"actorstage node {planned.id} ({session.plan.name} {session.id})",
            flush_every=min(FLUSH, settings.channel_capacity),
            stop_on_error=settings.on_node_crash == "fail",
            direct_in=port.direct_in,
            origins=session.origins,
        )
        options = ProcessOptions(
            python=settings.python_executable,
            start_timeout=settings.init_timeout_secs + _BOOT_ALLOWANCE,
            max_frame_size=256 * 1024 * 1024,
            **(_placed(planned.placement) if planned.placement is not None else {}),
        )
        self.emitted = 0
        from actorstage.actors._lifecycle import start_child

        # The node in the process gets the session's grace period to finish its item, too.
        worker = await start_child(
            self._cell, NodeWorker, (setup,), {}, name=f"process-{self.incarnation}",
            capacity=None, shutdown_timeout=settings.cleanup_grace_period_secs, process=options)
        self.worker = worker.ref
        self.context.watch(self.worker)
        host = self.worker._cell.actor  # the ProcessHost that launched the process
        self.pid = port.stats.pid = getattr(host, "pid", None)

    async def pump(self) -> None:
        """Feed the worker until the inputs end, then finish it and close the outputs."""
        port = self.port
        if port.direct_in:  # its worker is fed by the one before: wait for its end
            await self._changed(lambda: not self.got_last)
            self.ended = True
            port.close_outputs()
            return
        inbox, inline = port.inbox, self.inline
        encode = (inline or port.session.codec).encode
        while True:
            runs = await inbox.take(BATCH)
            if not runs:
                break
            items, channels = _flat(runs)
            out = WireBatch(encode)
            if inline is None and out.add_plain(items):
                wires: list[WireItem | None] = [None] * len(items)  # (None: as a plain value)
                shared = False
            else:
                wires, shared = self._wire(items, out)
            async with self.lock:
                first = self.next_seq
                self.next_seq += len(items)
                self.pending.append(_Sent(first, items, channels, wires, shared))
                self.idle.clear()
                assert self.worker is not None
                await self.worker.tell(Items(list(range(first, first + len(items))),
                                             *out.parts()))
        await self._finish()

    def _wire(self, items: list[Any], out: WireBatch) -> tuple[list[WireItem | None], bool]:
        """Add ``items`` to ``out`` one by one: the wire form of each (``None`` for a plain
        value), and whether one is in shared memory."""
        port = self.port
        session, inline = port.session, self.inline
        codec, segments = session.codec, session.segments
        add = out.add
        wires: list[WireItem | None] = []
        shared = False
        for item in items:
            if type(item) is WireItem:
                if inline is not None and item.shm:  # its payload goes in the message
                    flat = inline.encode(codec.decode(item))
                    codec.release(item)
                    segments.drop(item.segment_names())
                    wires.append(add(flat, flat))
                    continue
                if item.shm:
                    shared = True
                wires.append(add(item, item))
                continue
            try:
                wire = add(item)
            except (TypeError, ValueError) as exc:
                session.fail(PipelineError(
                    f"node {port.node.id!r}: an item for its process cannot be encoded: {exc}"))
                raise Aborted from None
            if wire is not None and wire.shm:
                segments.add(wire.segment_names(), 1)
                shared = True
            wires.append(wire)
        return wires, shared

    async def _finish(self) -> None:
        port = self.port
        session = port.session
        while True:
            await self.idle.wait()
            worker = self.worker
            assert worker is not None
            if session.error is not None:
                raise Aborted
            try:
                count = await worker.ask(Finish())
            except (ActorDeadError, ActorCrashedError):
                # The process died: the Terminated handler replaces it (or fails the session).
                await self._changed(lambda worker=worker: self.worker is worker)
                continue
            await self._changed(
                lambda count=count, worker=worker: self.emitted < count and self.worker is worker)
            if self.worker is worker:
                break
        self.ended = True
        port.close_outputs()

    async def _changed(self, waiting: Callable[..., bool]) -> None:
        """Wait while ``waiting()`` holds; ``Aborted`` once the session has failed."""
        session = self.port.session
        while waiting() and session.error is None:
            self.emitted_changed.clear()
            await self.emitted_changed.wait()
        if session.error is not None:
            raise Aborted

    async def receive(self, message: Any) -> Any:
        if isinstance(message, Emitted):
            await self._emitted(message)
        elif isinstance(message, Terminated) and message.ref == self.worker and not self.ended:
            await self._died(message)
        return None

    async def _emitted(self, message: Emitted) -> None:
        port = self.port
        stats = port.stats
        try:
            if message.segments:  # handed on straight to the next node's process
                port.session.segments.add(message.segments, 1)
            if message.sent_on:
                stats.items_out += message.sent_on
            if message.last:
                self.got_last = True
            if message.items:
                await port.emit_all(message.items)  # (it counts their segments' new readers)
            elif message.values:
                await port.emit_all(message.values)
            if message.released:  # the node before's segments, read here: after the add
                port.session.segments.drop(message.released)  # above, if passed on
            pending = self.pending
            if message.count:
                stats.items_in += message.count
                stats.busy_seconds += message.busy
                node_batch(port.session.plan.name, port.node.id, message.count, message.busy)
            failed = {error.seq: error for error in message.errors}
            if 0 in failed:
                port.failed(0, failed.pop(0), " (flush)")
            if port.direct_in:  # its items came from the node before: none are pending here
                for number, problem in failed.items():
                    port.failed(number, problem)  # (under "fail", the one ends the session)
                failed = {}
            done = message.done
            released: dict[Channel, int] = {}  # most batches come from one channel
            while pending and pending[0].first + pending[0].next <= done:
                sent = pending[0]
                end = min(done - sent.first + 1, len(sent.items))
                if sent.plain and not failed:  # counted back whole
                    channel = sent.channel(0)
                    released[channel] = released.get(channel, 0) + end - sent.next
                else:
                    end = self._finished(sent, end, released, failed)
                if end < len(sent.items):
                    sent.next = end
                    break
                pending.popleft()
            for channel, count in released.items():
                channel.release_count(count)
        except Aborted:
            return
        finally:
            self.emitted += 1
            self.emitted_changed.set()
            if not self.pending:
                self.idle.set()

    def _finished(self, sent: _Sent, end: int, released: dict[Channel, int],
                  failed: dict[int, ItemError]) -> int:
        """Let go of ``sent``'s items before ``end``, finished by the process (``released``
        counts the plain ones per connection); returns the index of the next one left."""
        items, wires, first = sent.items, sent.wires, sent.first
        segments = self.port.session.segments
        for index in range(sent.next, end):
            item = items[index]
            if item is _TAKEN:  # taken back when its process died
                continue
            channel = sent.channel(index)
            if channel.on_grow is None:
                released[channel] = released.get(channel, 0) + 1
            else:
                channel.release(item)
            wire = wires[index]
            if wire is not None and wire.shm:
                segments.drop(wire.segment_names())
            if failed:
                error = failed.get(first + index)
                if error is not None:  # under "fail" it ends the session: no matter
                    self.port.failed(first + index, error)
        return sent.live(end)

    async def _died(self, ended: Terminated) -> None:
        port = self.port
        session = port.session
        settings = session.plan.settings
        cursor = self.cursor
        started, finished = cursor.read() if cursor is not None else (0, 0)
        if cursor is not None:
            unlink(cursor.name)
        crash = ended.error
        why = f"{crash.type_name}: {crash.error_message}" if crash is not None else str(
            ended.reason)
        if self.pid is not None:  # what the dead process wrote and nobody was told about
            sweep(f"{session.prefix}n{port.index}-{self.pid}-", keep=set(session.segments.refs))
        if session.error is not None:
            return
        if settings.on_node_crash != "continue" or port.stats.restarts >= \
                settings.max_node_restarts:
            limit = "" if settings.on_node_crash != "continue" else (
                f" more than max_node_restarts ({settings.max_node_restarts}) times")
            holding = f" while processing its item {started}" if started > finished else ""
            session.fail(PipelineError(
                f"node {port.node.id!r}: its process (pid {self.pid}) died{limit}{holding}: "
                f"{why}"))
            self.emitted_changed.set()
            return
        port.stats.restarts += 1
        async with self.lock:
            pending = self.pending
            if started > finished:
                for sent in pending:
                    index = started - sent.first
                    if sent.next <= index < len(sent.items) and \
                            (item := sent.items[index]) is not _TAKEN:
                        sent.items[index] = _TAKEN
                        sent.plain = False
                        if index == sent.next:
                            sent.next = sent.live(index)
                            if sent.next == len(sent.items):
                                pending.remove(sent)
                        sent.channel(index).release(item)
                        wire = sent.wires[index]
                        if wire is not None:
                            session.segments.drop(wire.segment_names())
                        with contextlib.suppress(Aborted):
                            port.failed(started, ItemError(
                                started, "ProcessDied",
                                f"the node's process (pid {self.pid}) died: {why}"))
                        break
            log.warning("pipeline %s: node %r process (pid %s) died (%s); starting a new one",
                        session.plan.name, port.node.id, self.pid, why)
            try:
                await self._spawn()
            except ActorDeadError:
                return  # this node is being stopped: no new process
            except ActorCrashedError as exc:
                session.fail(PipelineError(
                    f"node {port.node.id!r}: its process died ({why}) and a new one failed "
                    f"to start: {exc.type_name}: {exc.error_message}"))
                self.emitted_changed.set()
                return
            if pending:
                numbers: list[int] = []
                again = WireBatch(session.codec.encode)  # encodes nothing it has not before
                for sent in pending:
                    for index in range(sent.next, len(sent.items)):
                        item = sent.items[index]
                        if item is not _TAKEN:
                            again.add(item, sent.wires[index])
                            numbers.append(sent.first + index)
                assert self.worker is not None
                await self.worker.tell(Items(numbers, *again.parts()))
            else:
                self.idle.set()
        self.emitted_changed.set()

    async def on_stop(self) -> None:
        if self.cursor is not None:
            unlink(self.cursor.name)


class PipelineActor(Actor):
    """The session's actor: its children are the nodes, started together."""

    _traced = False  # (the runtime's own: see Actor._traced)

    def __init__(self, session: PipelineSession) -> None:
        self.session = session

    def _policy(self) -> TemporaryPolicy:
        return TEMPORARY_POLICY

    async def on_start(self) -> None:
        from actorstage.actors._lifecycle import start_child

        session = self.session
        grace = session.plan.settings.cleanup_grace_period_secs
        spawns = [
            start_child(self._cell, NodeProxy, (port,), {}, name=port.node.id,
                        capacity=_PROXY_WINDOW, shutdown_timeout=grace)
            if port.node.spec.executor == "process" else
            start_child(self._cell, NodeActor, (port,), {}, name=port.node.id,
                        capacity=None, shutdown_timeout=grace)
            for port in session.ports.values()
        ]
        results = await asyncio.gather(*spawns, return_exceptions=True)
        problems = []
        for port, result in zip(session.ports.values(), results, strict=True):
            if isinstance(result, ActorCrashedError):
                while isinstance(result.__cause__, ActorCrashedError):  # the worker's own error
                    result = result.__cause__
                problems.append(f"node {port.node.id!r} failed to start: "
                                f"{result.type_name}: {result.error_message}")
            elif isinstance(result, BaseException):
                problems.append(f"node {port.node.id!r} failed to start: "
                                f"{type(result).__name__}: {result}")
        if problems:
            from actorstage.actors._lifecycle import stop_children

            await stop_children(self._cell)
            raise PipelineError("; ".join(problems))
        # Direct connections, open before the first item (the links open side by side).
        connects = []
        for port in session.ports.values():
            if port.direct_to is not None:
                before, after = port.actor, port.direct_to.actor
                assert isinstance(before, NodeProxy) and isinstance(after, NodeProxy)
                assert before.worker is not None and after.worker is not None
                connects.append(before.worker.ask(Downstream(after.worker)))
        await asyncio.gather(*connects)

    async def receive(self, message: Any) -> Any:
        raise TypeError("a pipeline actor takes no messages")


class PipelineSession:
    """One run of a plan: ``send`` inputs, ``close_input``, read ``outputs``.

    Use it as ``async with pipeline.session(system) as session:``; leaving
    the block ends the session (cancelling it if it has not finished), stops
    every node within the grace period and removes its shared memory.
    """

    def __init__(self, plan: Plan, system: ActorSystem, session_id: str | None = None, *,
                 origins: bool = False) -> None:
        self.plan = plan
        self.system = system
        self.origins = origins  # inputs carry an origin, and so do the outputs they lead to
        if session_id is not None and not valid_session_id(session_id):
            raise ValueError(f"session id {session_id!r} must be 1-64 letters, digits, _ or .")
        self.id = session_id or uuid.uuid4().hex[:12]
        self.prefix = f"actorstage-{self.id}-"
        settings = plan.settings
        self.segments = _Segments()
        self.codec = ItemCodec(settings.shared_memory_threshold_bytes,
                               SegmentWriter(f"{self.prefix}p-"), SegmentReader(), forward=False)
        self.failures: list[ItemFailure] = []
        self.error: PipelineError | None = None
        self.started_at = 0.0
        self.duration = 0.0
        self.held_bytes = 0
        self.ports = {node.id: _Port(self, node, index)
                      for index, node in enumerate(plan.nodes.values())}
        self.output_inbox = Inbox("@outputs")
        blocking = settings.enable_backpressure
        sizer = None if blocking else _size
        on_grow = None if blocking else self._grew
        capacity = settings.channel_capacity
        self.inputs: list[Channel] = []
        self.channels: list[Channel] = []
        for port in self.ports.values():
            node = port.node
            if not node.inputs:
                channel = Channel("@input", node.id, port.inbox, capacity, blocking=blocking,
                                  sizer=sizer, on_grow=on_grow)
                self.inputs.append(channel)
                self.channels.append(channel)
            targets = [(target, self.ports[target].inbox) for target in node.outputs] or [
                ("@outputs", self.output_inbox)]
            for target, inbox in targets:
                channel = Channel(node.id, target, inbox, capacity, blocking=blocking,
                                  sizer=sizer, on_grow=on_grow)
                port.channels.append(channel)
                self.channels.append(channel)
        if settings.on_node_crash == "fail":  # (under "continue" the proxies keep every item)
            for port in self.ports.values():
                node = port.node
                if _local_process(node) and len(node.outputs) == 1:
                    after = self.ports[node.outputs[0]]
                    if _local_process(after.node) and after.node.inputs == (node.id,):
                        port.direct_to = after
                        after.direct_in = True
        self._actor: ActorRef | None = None
        self._runner: asyncio.Task[None] | None = None
        self._entered = False
        self._done = asyncio.Event()
        self._input_closed = False
        self._marker: int | None = None  # held while the session has node processes
        self._protecting = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> PipelineSession:
        if self._entered:
            raise PipelineError("a session runs once; start a new one from its Pipeline")
        self._entered = True
        self.started_at = time.monotonic()
        try:
            self._actor = await self.system.spawn(
                PipelineActor, self, name=f"pipeline-{self.id}")
        except ActorCrashedError as exc:
            await self._cleanup()
            inner = exc.__cause__ if isinstance(exc.__cause__, PipelineError) else None
            raise PipelineError(
                f"pipeline {self.plan.name!r}: "
                f"{inner if inner is not None else exc.error_message}") from None
        except BaseException:
            await self._cleanup()
            raise
        SESSIONS.add(self)  # (watched by the observer while it runs)
        self._span = open_span(f"pipeline {self.plan.name}", {
            "actorstage.pipeline.name": self.plan.name, "actorstage.session.id": self.id,
            "process.pid": os.getpid()})
        with self._span.current():  # (the nodes' runs, and so their batches, in its trace)
            self._runner = asyncio.get_running_loop().create_task(self._run_all())
        return self

    async def _run_all(self) -> None:
        try:
            async with anyio.create_task_group() as group:
                for port in self.ports.values():
                    group.start_soon(self._run_node, port)
        finally:
            self.duration = time.monotonic() - self.started_at
            self._span.end(None if self.error is None else str(self.error),
                           **{"actorstage.pipeline.failures": len(self.failures)})
            SESSIONS.discard(self)
            self._done.set()

    async def _run_node(self, port: _Port) -> None:
        actor = port.actor
        try:
            if isinstance(actor, NodeProxy):
                await actor.pump()
            elif isinstance(actor, NodeActor):
                await actor.context.self_ref.ask(_Run())
        except Aborted:
            pass
        except (ActorCrashedError, ActorDeadError) as exc:
            if self.error is None:
                self.fail(PipelineError(f"node {port.node.id!r} stopped: {exc}"))

    async def __aexit__(self, *exc_info: Any) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        try:
            if not self._done.is_set():
                self.fail(PipelineError(f"pipeline {self.plan.name!r} was cancelled"),
                          log_it=False)
        finally:
            with anyio.CancelScope(shield=True):
                # Loops stop at their next item; stopping the nodes cancels a node that is
                # stuck inside process() once the grace period is over.
                await self._cleanup()
                await asyncio.wait([runner], timeout=1.0)
                if not runner.done():
                    runner.cancel()
                    await asyncio.wait([runner])
        if not runner.cancelled() and runner.exception() is not None:
            raise runner.exception()  # type: ignore[misc]

    async def protect(self) -> None:
        """Before the first node process: mark the session's shared memory as live, and
        have the system's guard remove it should this process be killed."""
        async with self._protecting:
            if self._marker is not None:
                return
            self._marker = mark_session(self.prefix)
            guard = await self.system._guard()
            if guard is not None:
                guard.sweep(str(SHM_DIR), self.prefix)

    async def _cleanup(self) -> None:
        actor, self._actor = self._actor, None
        try:
            if actor is not None:
                with anyio.move_on_after(self.plan.settings.cleanup_grace_period_secs + 5,
                                         shield=True):
                    await self.system.stop(actor)
        finally:
            self.codec.reader.close()
            self.segments.refs.clear()
            marker = self.prefix + MARKER
            sweep(self.prefix, keep={marker})
            if self._marker is not None:  # the marker goes last, once nothing is left
                unlink(marker)
                os.close(self._marker)
                self._marker = None
                guard = self.system._guard_process
                if guard is not None:
                    guard.sweep(str(SHM_DIR), self.prefix, keep=False)

    def fail(self, error: PipelineError, *, log_it: bool = True) -> None:
        """End the session with ``error`` (the first one wins): every loop stops."""
        if self.error is not None:
            return
        self.error = error
        if log_it:
            log.error("pipeline %s (session %s) failed: %s", self.plan.name, self.id, error)
        aborted = Aborted(str(error))
        for port in self.ports.values():
            port.inbox.abort(aborted)
            if isinstance(port.actor, NodeProxy):
                port.actor.emitted_changed.set()
                port.actor.idle.set()
        self.output_inbox.abort(aborted)
        for channel in self.channels:
            channel.abort(aborted)

    def _grew(self, channel: Channel, size: int) -> None:
        self.held_bytes += size
        limit = self.plan.settings.memory_limit_bytes
        if size > 0 and self.held_bytes > limit and self.error is None:
            self.fail(PipelineError(
                f"pipeline {self.plan.name!r}: items waiting in channels hold "
                f"{self.held_bytes:,} bytes, past memory_limit_bytes ({limit:,}); the fullest "
                f"is {channel.name} with {channel.count:,} items. Backpressure is off "
                "(enable_backpressure = false), so producers did not wait for consumers"))
            raise Aborted

    # -- data ------------------------------------------------------------------

    async def send(self, item: Any, *, to: str | None = None, origin: Any = None) -> None:
        """Give ``item`` to every root node, or to the root ``to`` only; waits for room
        (backpressure). ``ValueError`` when ``to`` is not a root of the pipeline.

        ``origin`` (a session that follows origins only): a tag every output that this
        item leads to carries as ``Output.origin``, such as a chunk's sequence number.
        """
        if origin is not None:
            if not self.origins:
                raise ValueError("an origin needs a session that follows origins: "
                                 "pipeline.session(system, origins=True)")
            item = Traced(origin, item)
        if self._input_closed:
            raise PipelineError("the session's input is closed; no more items can be sent")
        if self.error is not None:
            raise self.error
        channels = self.inputs if to is None else [self.input_of(to)]
        try:
            for channel in channels:
                await channel.put(item)
        except Aborted:
            assert self.error is not None
            raise self.error from None

    def input_of(self, node_id: str) -> Channel:
        """The input channel of root ``node_id``; ``ValueError`` naming the roots if none."""
        for channel in self.inputs:
            if channel.target == node_id:
                return channel
        roots = ", ".join(repr(channel.target) for channel in self.inputs)
        if node_id in self.ports:
            raise ValueError(f"node {node_id!r} takes its items from the nodes connected to "
                             f"it, not from the input; the roots are {roots}")
        raise ValueError(f"no node has the id {node_id!r}; the roots are {roots}")

    async def send_all(self, items: Iterable[Any]) -> None:
        """``send`` each item in turn."""
        inputs = self.inputs
        pending = iter(items)
        while True:
            # As many at once as every root has room for; one at a time (waiting) otherwise.
            room = 0
            if not self._input_closed and self.error is None and all(
                    channel.blocking and channel.on_grow is None for channel in inputs):
                room = min(channel.capacity - channel.count for channel in inputs)
            if room > 0:
                chunk = list(itertools.islice(pending, room))
                if not chunk:
                    return
                for channel in inputs:
                    channel.put_all_nowait(chunk)
                continue
            item = next(pending, _END)
            if item is _END:
                return
            await self.send(item)

    async def feed(self, items: Iterable[Any]) -> None:
        """``send_all(items)``, then ``close_input()``; a failed session just ends the feed
        (``outputs()`` and ``result()`` raise its error)."""
        try:
            await self.send_all(items)
        except PipelineError:
            return
        self.close_input()

    def close_input(self) -> None:
        """No more inputs: the nodes finish what they hold, flush, and the outputs end."""
        if not self._input_closed:
            self._input_closed = True
            for channel in self.inputs:
                channel.close()

    async def outputs(self) -> AsyncIterator[Output]:
        """The leaves' items as they are produced; ends when every node has finished."""
        origins = self.origins
        async for runs in self._arrivals():
            for output in _outputs(runs, origins):
                yield output

    async def output_batches(self) -> AsyncIterator[list[Output]]:
        """``outputs()`` grouped as they arrive: each list holds what was ready at once.

        When the session fails, the outputs that reached the end before the failure still
        come out, then its ``PipelineError``.
        """
        origins = self.origins
        async for runs in self._arrivals():
            yield list(_outputs(runs, origins))

    async def _arrivals(self) -> AsyncIterator[list[tuple[str, list[Any]]]]:
        """What reaches the end, as it arrives: runs of ``(leaf, values)``, the values
        out of shared memory (the outputs are made one by one from these: a batch of
        them alive at once would keep the garbage collector busy)."""
        inbox = self.output_inbox
        codec = self.codec
        failed = False
        while not failed:
            try:
                runs = await inbox.take(BATCH)
            except Aborted:
                failed = True
                runs = inbox.take_all()
            if not runs:
                break
            arrived = []
            for channel, items in runs:  # (the runs are ours: decoded in place)
                sized = channel.on_grow is not None
                for index, item in enumerate(items):
                    kind = type(item)
                    if kind is WireItem:
                        if not item.shm:
                            items[index] = codec.decode(item)  # (views only come from segments)
                        else:
                            items[index] = codec.copy_out(item)
                            self.segments.drop(item.segment_names())
                    elif kind not in _PLAIN:
                        items[index] = to_bytes(item)
                    if sized:
                        channel.release(item)
                if not sized:
                    channel.release_count(len(items))
                arrived.append((channel.source, items))
            yield arrived
        await self._done.wait()
        if self.error is not None:
            raise self.error

    async def result(self, outputs: list[Output] | None = None) -> PipelineResult:
        """Wait for the end; ``PipelineError`` if the session failed."""
        await self._done.wait()
        if self.error is not None:
            raise self.error
        return PipelineResult(self.plan.name, self.id, outputs or [], self.stats(),
                              list(self.failures), self.duration)

    def stats(self) -> dict[str, NodeStats]:
        """A snapshot of every node's figures."""
        snapshot = {}
        for node_id, port in self.ports.items():
            stats = msgspec.structs.replace(port.stats)
            stats.max_queue = port.inbox.max_depth
            snapshot[node_id] = stats
        return snapshot

    def queue_depths(self) -> dict[str, int]:
        """Items each node holds right now: sent to it and not finished (queued or in hand)."""
        depths = dict.fromkeys(self.ports, 0)
        for channel in self.channels:
            if channel.target in depths:
                depths[channel.target] += channel.count
        return depths

    @property
    def done(self) -> bool:
        return self._done.is_set()
