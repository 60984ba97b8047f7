"""A process node's child side: the ``NodeWorker`` process actor and what it exchanges.

The parent's ``NodeProxy`` sends ``Items`` (numbered, in order); the worker
runs the node on each, marks the shared cursor around it, and sends back
``Emitted``: the outputs, the highest number finished, errors and timings.
It sends at the end of each batch, and every ``FLUSH`` outputs in between,
so a node that yields many items per input streams them. ``Finish`` runs
the node's ``flush`` and answers with the number of ``Emitted`` sent, so
the proxy knows when it has seen them all.

Between two process nodes that only talk to each other (see
``PipelineSession``), items go straight from one node's process to the
next's: after ``Downstream``, a worker sends its outputs to the next worker
as ``Items`` over their direct link, and tells its proxy only what it did
(counts, timings, errors, the shared-memory segments it handed on). The
next worker's proxy feeds nothing; its worker learns of the end from the
worker before it (``EndOfInput``, after that one's last items on the same
link), flushes, passes the end on, and marks its last ``Emitted``.
"""

from __future__ import annotations

import os
import time
import traceback
from types import CoroutineType
from typing import Any

import anyio
import msgspec

from actorstage._shm import Cursor, SegmentReader, SegmentWriter, hold_marker
from actorstage._telemetry import span
from actorstage.actors._actor import Actor
from actorstage.actors._message import Message
from actorstage.actors._ref import ActorRef
from actorstage.pipelines._registry import import_node_modules, lookup
from actorstage.pipelines._wire import ItemCodec, Origins, WireBatch, WireItem

__all__ = ["FLUSH", "Downstream", "Emitted", "EndOfInput", "Finish", "ItemError", "Items",
           "NodeWorker", "WorkerSetup", "error_of", "outputs_of", "prepare_codec"]

FLUSH = 1024  # outputs per Emitted, at most, while one input is still being handled


class ItemError(msgspec.Struct, array_like=True, frozen=True):
    """An exception raised by the node on item number ``seq``."""

    seq: int
    type_name: str
    message: str
    traceback: str = ""


Scalar = int | float | str | bool | None  # what a WireBatch sends as plain values


class Items(Message, frozen=True, array_like=True):
    seqs: list[int]
    items: list[WireItem]
    values: list[Scalar] = []  # instead of ``items``, when every item is a scalar (WireBatch)

    def entries(self) -> tuple[list[Any], bool]:
        """The items as they came, and whether they are plain values (not WireItems)."""
        return (self.values, True) if self.values else (self.items, False)


class Emitted(Message, frozen=True, array_like=True):
    items: list[WireItem]
    done: int  # the highest item number finished; every lower one sent here is finished too
    count: int  # items finished since the previous Emitted
    busy: float  # seconds spent in the node for them
    errors: list[ItemError] = []
    sent_on: int = 0  # outputs sent straight to the next node's process instead
    segments: list[str] = []  # shared-memory segments those outputs hold
    released: list[str] = []  # segments of items from the node before, done with here
    last: bool = False  # the end came from the node before, and everything is sent
    values: list[Scalar] = []  # instead of ``items``, when every item is a scalar (WireBatch)


class Downstream(Message, frozen=True):
    """Send outputs to ``target``, the next node's worker, instead of to the proxy."""

    target: ActorRef


class EndOfInput(Message, frozen=True):
    """From the node before: its last items were sent. Flush, pass it on, report ``last``."""


class Finish(Message, frozen=True):
    """End of input: run ``flush``, send what it gives, answer with the Emitted count."""


class WorkerSetup(Message, frozen=True, kw_only=True):
    """Everything a node process needs to build its node."""

    node_id: str
    node_type: str
    params: dict[str, Any]
    imports: list[str]
    import_paths: list[str]
    main: tuple[str, str]
    segment_prefix: str
    cursor: str
    threshold: int
    init_timeout: float
    title: str
    flush_every: int = FLUSH
    stop_on_error: bool = False  # on_node_crash "fail": no item after a failed one
    marker: str = ""  # the session's marker, held while this process lives
    direct_in: bool = False  # items come from the node before's process, not the proxy
    origins: bool = False  # items come Traced: results go Traced with their origin


def prepare_codec() -> None:
    """Ready the bridge's codec for the messages of node processes before the first item
    (each class's first message would otherwise take a millisecond or so to work out)."""
    from actorstage.transport._codec import CODEC

    CODEC.prepare(Items, Emitted, EndOfInput, Finish)


def error_of(seq: int, exc: BaseException) -> ItemError:
    return ItemError(seq, type(exc).__qualname__, str(exc),
                     "".join(traceback.format_exception(exc)))


async def outputs_of(call: Any) -> Any:
    """The items of a call to ``process`` or ``flush``: its coroutine's result (``None``,
    one item, or an async iterator), or the async generator it made."""
    result = call if hasattr(call, "__anext__") else await call
    if result is None:
        return
    if hasattr(result, "__anext__"):
        async for value in result:
            yield value
    else:
        yield result


def _set_title(title: str) -> None:
    try:
        import setproctitle
    except ImportError:  # pragma: no cover - a dependency; the name is a courtesy
        return
    setproctitle.setproctitle(title)


class NodeWorker(Actor):
    """Runs one node in a child process, for the ``NodeProxy`` that spawned it."""

    _traced = False  # (the runtime's own: see Actor._traced)

    def __init__(self, setup: WorkerSetup) -> None:
        self.setup = setup
        self.node: Any = None
        self.calls: Any = None  # the node, or its Origins when the session follows them
        self.cursor: Cursor | None = None
        self.codec: ItemCodec | None = None
        self.sent = 0
        self.failed = False  # an item failed with stop_on_error: take no more
        self.marker: int | None = None
        self.downstream: ActorRef | None = None
        self.next_out = 1  # the number of the next item sent downstream
        self.released: list[str] = []

    async def on_start(self) -> None:
        from actorstage.transport._child import load_main

        setup = self.setup
        _set_title(setup.title)
        prepare_codec()
        import_node_modules(setup.imports, setup.import_paths)
        load_main(*setup.main)  # node types registered in the parent's __main__ script
        entry = lookup(setup.node_type)
        if entry is None:
            raise LookupError(f"node type {setup.node_type!r} is not registered in the node "
                              f"process; import its module (--import or runtime.toml imports)")
        self.node = entry.cls(entry.params(setup.params), setup.node_id)
        self.calls = Origins(self.node) if setup.origins else self.node
        if setup.marker:  # (none: on another machine, maybe)
            self.marker = hold_marker(setup.marker)  # released when this process exits
        self.cursor = Cursor.attach(setup.cursor)
        self.codec = ItemCodec(setup.threshold, SegmentWriter(
            f"{setup.segment_prefix}{os.getpid()}-"), SegmentReader())
        try:
            with anyio.fail_after(setup.init_timeout):
                await self.node.setup()
        except TimeoutError:
            raise TimeoutError(f"node {setup.node_id!r} did not finish setup within "
                               f"{setup.init_timeout:g} s (init_timeout_secs)") from None

    @property
    def _parent(self) -> ActorRef:
        parent = self.context.parent
        assert parent is not None, "a NodeWorker is spawned by a NodeProxy"
        return parent

    async def receive(self, message: Any) -> Any:
        if isinstance(message, Items):
            with span(f"node {self.setup.node_id}", {
                    "actorstage.node.id": self.setup.node_id,
                    "actorstage.node.items": len(message.seqs), "process.pid": os.getpid()}):
                await self._run(message)
            return None
        if isinstance(message, Finish | EndOfInput):  # from the proxy, or the node before
            ended = isinstance(message, EndOfInput)
            await self._flush(last=ended)
            if self.downstream is not None:
                await self.downstream.tell(EndOfInput())
            return None if ended else self.sent
        if isinstance(message, Downstream):
            self.downstream = target = message.target
            prepare = getattr(target, "prepare", None)  # a ref in another process (RemoteRef)
            if prepare is not None:  # the link to it is open before the session starts
                with anyio.move_on_after(self.setup.init_timeout):  # (else items wait for it)
                    await prepare()
            return None
        raise TypeError(f"a node process takes Items, Finish, EndOfInput and Downstream, "
                        f"not {type(message).__name__}")

    async def _send(self, out: WireBatch, done: int, count: int, busy: float,
                    errors: list[ItemError], *, last: bool = False) -> None:
        self.sent += 1
        released: list[str] = []
        if self.released:
            released, self.released = self.released, []
        items, values = out.parts()
        downstream = self.downstream
        if downstream is None or not len(out):
            await self._parent.tell(Emitted(items, done, count, busy, errors,
                                            released=released, last=last, values=values))
            return
        first = self.next_out
        self.next_out = first + len(out)
        await downstream.tell(Items(list(range(first, self.next_out)), items, values))
        segments = [name for item in items if item.shm for name in item.segment_names()]
        await self._parent.tell(Emitted([], done, count, busy, errors, len(out), segments,
                                        released, last))

    async def _run(self, message: Items) -> None:
        if self.failed:
            return
        codec, cursor = self.codec, self.cursor
        assert codec is not None and cursor is not None
        encode, decode, release = codec.encode, codec.decode, codec.release
        marks = cursor.marks  # (started, finished), written around each item
        assert marks is not None
        process = self.calls.process
        out = WireBatch(encode)
        add = out.add
        errors: list[ItemError] = []
        done = count = 0
        clock = time.perf_counter
        began = clock()  # node time is counted per batch: two clock reads per item cost more
        flush_every = self.setup.flush_every
        direct_in = self.setup.direct_in
        entries, plain = message.entries()
        for seq, entry in zip(message.seqs, entries, strict=True):
            marks[0] = seq
            wire = None if plain else entry
            try:
                item = entry if wire is None else decode(wire)
                try:
                    result = process(item)
                    if result.__class__ is CoroutineType:  # (`async def` with `yield` is not)
                        result = await result
                    if result is None:
                        pass
                    elif result is item:  # passed on as it came: as it came on the wire
                        if wire is None and out.wires is None:  # (a plain value, as it came)
                            out.values.append(item)
                        else:
                            add(item, wire)
                    elif not hasattr(result, "__anext__"):
                        add(result)
                    else:
                        async for value in result:
                            add(value, wire if value is item else None)
                            if len(out) >= flush_every:
                                now = clock()
                                await self._send(out, done, count, now - began, errors)
                                out, errors, count, began = WireBatch(encode), [], 0, now
                                add = out.add
                finally:
                    if wire is not None and wire.shm:
                        release(wire)
                        if direct_in:  # the proxy drops it (nobody else needs it)
                            self.released.extend(wire.segment_names())
            except Exception as exc:
                errors.append(error_of(seq, exc))
                self.failed = self.setup.stop_on_error
            marks[1] = seq
            done = seq
            count += 1
            if self.failed:
                break  # the session fails on this item: what follows would be thrown away
        await self._send(out, done, count, clock() - began, errors)

    async def _flush(self, *, last: bool = False) -> None:
        assert self.codec is not None
        out = WireBatch(self.codec.encode)
        errors: list[ItemError] = []
        try:
            async for value in outputs_of(self.calls.flush()):
                out.add(value)
                if len(out) >= self.setup.flush_every:
                    await self._send(out, 0, 0, 0.0, [])
                    out = WireBatch(self.codec.encode)
        except Exception as exc:
            errors.append(error_of(0, exc))
        await self._send(out, 0, 0, 0.0, errors, last=last)

    async def on_stop(self) -> None:
        try:
            if self.node is not None:
                await self.node.teardown()
        finally:
            if self.cursor is not None:
                self.cursor.close()
            if self.codec is not None:
                self.codec.reader.close()
            if self.marker is not None:
                os.close(self.marker)
                self.marker = None
