"""One end of a bridge: the protocol both processes speak over a ``Conn``.

A link moves user traffic in both directions. Outbound, it empties a cell's
mailbox into frames while it holds credits (``pump``); inbound, it puts
messages into a cell's mailbox and hands a credit back as each one leaves
it. Asks carry an id; the reply (or error) comes back with that id. The
writer sends everything queued as one frame, and a lone envelope at once.

Messages sent but not yet credited are "in flight": when the link is lost
they become dead letters, since nobody can tell whether they were handled.

Routed tells (to any actor beyond the link, see ``_routing``) have credits
of their own, ``ROUTE_WINDOW`` per direction: the receiving process hands
one back when the message leaves the target's mailbox (or is passed on to
the next link, which then holds it to its own window, or is dead-lettered).
A sender with no credit left waits, as it would on a full local mailbox,
so a flood across processes is bounded end to end. Routed asks are bounded
by their askers, who wait for the replies.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from actorstage._proto.actorstage.bridge.v1 import Envelope, Heartbeat
from actorstage._sends import register as wrapped_sends
from actorstage.actors._cell import Answer, Outgoing, Receipt
from actorstage.actors._ref import ActorRef
from actorstage.actors._timers import Timer
from actorstage.exceptions import (
    ActorCrashedError,
    ActorDeadError,
    MailboxFullError,
    MessageEncodingError,
)
from actorstage.transport._codec import (
    ASK,
    CANCEL,
    CODEC,
    CREDIT,
    ERROR,
    REPLY,
    ROUTE_ASK,
    ROUTE_CREDIT,
    ROUTE_TELL,
    TELL,
    BodyCodec,
    Entry,
    FrameError,
    RemoteErrorBody,
    pack,
    unpack,
)
from actorstage.transport._conn import Conn, ConnectionLost, Received
from actorstage.transport._payloads import ARENA
from actorstage.transport._routing import ROUTE_WINDOW, ROUTER

if TYPE_CHECKING:
    from actorstage.actors._cell import Cell
    from actorstage.actors._tasks import TaskOwner
    from actorstage.transport._routing import Router

__all__ = ["BAD_FRAME", "CLOSED", "SILENT", "Link", "ProcessRef"]

log = logging.getLogger("actorstage.transport")

# Why a link was lost, for the owner to report: the stream ended or broke, the
# other side sent something that is not a frame, or it fell silent.
CLOSED, BAD_FRAME, SILENT = "closed", "bad frame", "silent"

_EMPTY = msgspec.Raw(b"\xc0")  # MessagePack nil: Raw bytes go in verbatim
_error_encoder = msgspec.msgpack.Encoder()
_error_decoder = msgspec.msgpack.Decoder(RemoteErrorBody)
_route_encoder = msgspec.msgpack.Encoder()
_route_decoder = msgspec.msgpack.Decoder(tuple[str, msgspec.Raw])


def error_body(error: BaseException, path: str) -> RemoteErrorBody:
    """An exception as ``RemoteErrorBody``, keeping a crash's original type and traceback."""
    if isinstance(error, ActorCrashedError):
        return RemoteErrorBody(error.path, error.type_name, error.error_message,
                               error.traceback, error.during)
    if isinstance(error, ActorDeadError):
        return RemoteErrorBody(error.path, "ActorDeadError", error.reason)
    text = "".join(traceback.format_exception(error))
    return RemoteErrorBody(path, type(error).__qualname__, str(error), text)


def error_from_body(body: RemoteErrorBody) -> BaseException:
    """The exception an asker gets for ``body``."""
    if body.type_name == "ActorDeadError":
        return ActorDeadError(body.path, body.message)
    if body.type_name == "TimeoutError":
        return TimeoutError(body.message)
    return ActorCrashedError(body.path, body.type_name, body.message, body.traceback,
                             during=body.during)


class _Yield:
    """Yields one given value to the running task: what a suspended coroutine yielded."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, None]:
        yield self.value


async def resume(coro: Coroutine[Any, Any, Any], waits_on: Any) -> Any:
    """Run the rest of ``coro``, begun outside any task, which yielded ``waits_on``.

    The running task waits on what the coroutine waits on (a future, or
    ``None`` for a bare yield) and passes its outcome, cancellation included,
    back in, as if it had run ``coro`` from the start.
    """
    while True:
        try:
            await _Yield(waits_on)
        except BaseException as exc:  # (a cancellation too: the coroutine sees it where it waits)
            try:
                waits_on = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
            continue
        try:
            waits_on = coro.send(None)
        except StopIteration as stop:
            return stop.value


class Link:
    """The bridge protocol over one connection, for one process actor."""

    def __init__(
        self,
        conn: Conn,
        path: str,
        owner: TaskOwner,
        *,
        heartbeat_interval: float,
        heartbeat_timeout: float,
        on_control: Callable[[Envelope], None],
        on_lost: Callable[[str, str], None],
    ) -> None:
        self.conn = conn
        self.path = path  # the process actor's path, for errors and logs
        self.loop = asyncio.get_running_loop()
        self.owner = owner
        self.codec = CODEC
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.on_control = on_control
        self.on_lost = on_lost
        self.closed = False
        # outbound
        self.out_cell: Cell | None = None
        self.credits = 0
        self.next_id = 1
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.in_flight: deque[tuple[int, Outgoing, Any]] = deque()  # (id, message, reply)
        # inbound
        self.in_cell: Cell | None = None
        self.receipt = Receipt(self._delivered)
        self.inbound: dict[int, tuple[asyncio.Future[Any], asyncio.TimerHandle | None]] = {}
        self.ending = False  # our actor is ending: what is left in its mailbox is not answered
        # the writer
        self.entries: list[Entry] = []
        self.controls: list[Envelope] = []
        self.credit_due = 0
        self.idle: asyncio.Future[None] | None = None
        self.flushed: list[asyncio.Future[None]] = []
        self.suspended: tuple[Coroutine[Any, Any, None], Any] | None = None  # see send_now
        self.last_received = self.loop.time()
        self.tasks: list[asyncio.Task[Any]] = []
        self.router: Router | None = None  # this process's node, for routed messages
        # The process at the other end may be on another machine (it joined, or this one
        # did): messages passed on to it carry their payloads inline, never slot names.
        self.apart = False
        self.routed: dict[int, asyncio.Future[Any]] = {}  # routed asks that came in
        self.used = self.loop.time()  # when user traffic last went either way
        # routed tells: credits to send, those waiting for one, credits owed to the other side
        self.route_credits = ROUTE_WINDOW
        self.route_waiting: deque[tuple[str, msgspec.Raw, asyncio.Future[None] | None,
                                        Receipt | None, Any]] = deque()
        self.route_credit_due = 0
        self.route_receipt = Receipt(self._route_delivered, when_dropped=True)

    def start(self) -> None:
        self.tasks = [
            self.owner.start(self._read()),
            self.owner.start(self._write()),
            self.owner.start(self._beat()),
        ]
        listen = getattr(self.conn, "listen", None)  # (a gRPC stream's: frames as they come)
        if listen is not None:
            listen(self._received, self._unreadable)

    # -- sending -------------------------------------------------------------

    def kick(self) -> None:
        idle = self.idle
        if idle is not None and not idle.done():
            idle.set_result(None)

    def send_control(self, envelope: Envelope) -> None:
        if not self.closed:
            self.controls.append(envelope)
            self.kick()

    def pump(self) -> None:
        """Move queued messages of ``out_cell`` to the writer, as far as credits allow."""
        cell = self.out_cell
        assert cell is not None
        queue = cell.queue
        if not queue or not cell.deliverable or self.closed:
            return
        credits = self.credits
        entries = self.entries
        in_flight = self.in_flight
        now = 0.0
        while queue and credits > 0:
            out, reply = queue.popleft()
            if cell.waiters:
                cell.hand_off()
            ident = self.next_id
            self.next_id = ident + 1
            if reply is None or reply.__class__ is Timer or reply.__class__ is Receipt:
                entries.append((TELL, ident, out.type, msgspec.Raw(out.body), 0.0))
                in_flight.append((ident, out, None))
                if reply is not None and reply.__class__ is Receipt:  # a routed tell, passed on:
                    reply.delivered()  # this link's credits hold it now
            elif reply.done():  # the asker gave up before it was sent
                continue
            else:
                timeout = 0.0
                if out.timeout:
                    now = now or self.loop.time()
                    timeout = out.timeout - now
                    if timeout <= 0:
                        reply.set_exception(TimeoutError("the deadline passed before sending"))
                        continue
                out.ask_id = ident
                self.pending[ident] = reply
                entries.append((ASK, ident, out.type, msgspec.Raw(out.body), timeout))
                in_flight.append((ident, out, reply))
            credits -= 1
        self.credits = credits
        if not queue and not cell.waiters:
            cell.queue = None
        if len(self.pending) == 1 and len(entries) == 1 and entries[0][0] == ASK:
            self.send_now()  # a lone ask: someone waits for its reply
        else:
            self.kick()

    def send_tell(self, out: Outgoing) -> bool:
        """Send a tell at once if a credit allows; the caller checked nothing is queued."""
        if self.credits <= 0 or self.closed:
            return False
        self.credits -= 1
        ident = self.next_id
        self.next_id = ident + 1
        self.entries.append((TELL, ident, out.type, msgspec.Raw(out.body), 0.0))
        self.in_flight.append((ident, out, None))
        idle = self.idle
        if idle is not None and not idle.done():
            idle.set_result(None)
        return True

    def route(self, path: str, name: str, body: bytes, reply: asyncio.Future[Any] | None,
              timeout: float, *, credited: bool = False, receipt: Receipt | None = None,
              message: Any = None, nowait: bool = False) -> asyncio.Future[None] | None:
        """Pass a message on towards the actor at ``path`` (see ``_routing``).

        A ``credited`` tell (a user's) takes a routed credit; without one it waits
        in order, and the future returned resolves once it has left (a sender here
        awaits it). A tell passed on from another link has no future: its
        ``receipt`` hands that link's credit back once it leaves this one.
        ``nowait`` raises ``MailboxFullError`` instead of waiting.
        """
        if self.closed:
            reason = f"the link towards {path} is closed"
            if reply is not None and not reply.done():
                reply.set_exception(ActorDeadError(path, reason))
            if credited:
                self._dropped(path, message, receipt, reason)
            return None
        self.used = self.loop.time()
        packed = msgspec.Raw(_route_encoder.encode((name, msgspec.Raw(body))))
        if credited:
            if self.route_credits > 0 and not self.route_waiting:
                self.route_credits -= 1
                self.entries.append((ROUTE_TELL, 0, path, packed, 0.0))
                self.kick()
                if receipt is not None:
                    receipt.delivered()
                return None
            if nowait:
                raise MailboxFullError(path, ROUTE_WINDOW)
            waiter = self.loop.create_future() if receipt is None else None
            self.route_waiting.append((path, packed, waiter, receipt, message))
            return waiter
        ident = self.next_id
        self.next_id = ident + 1
        if reply is not None:
            self.pending[ident] = reply
            reply.add_done_callback(lambda done: self._route_gave_up(ident, done))
        self.entries.append((ROUTE_ASK if reply is not None else ROUTE_TELL, ident, path,
                             packed, timeout))
        if reply is not None and len(self.pending) == 1:
            self.send_now()  # a lone ask
        else:
            self.kick()
        return None

    def _route_credited(self, count: int) -> None:
        """The other side took ``count`` routed tells: send those waiting, in order."""
        self.route_credits += count
        waiting = self.route_waiting
        entries = self.entries
        while waiting and self.route_credits > 0:
            path, packed, waiter, receipt, _message = waiting.popleft()
            if waiter is not None and waiter.cancelled():
                continue  # its sender gave up waiting: it is not sent (as with a full mailbox)
            self.route_credits -= 1
            entries.append((ROUTE_TELL, 0, path, packed, 0.0))
            if waiter is not None:
                waiter.set_result(None)
            if receipt is not None:
                receipt.delivered()
        self.kick()

    def _route_delivered(self) -> None:
        self.route_credit_due += 1
        self.kick()

    def _dropped(self, path: str, message: Any, receipt: Receipt | None, reason: str) -> None:
        """A routed tell that will never leave: a dead letter (its credit goes back)."""
        if receipt is not None:
            receipt.delivered()
        router = self.router
        if router is not None and message is not None:
            router.system.dead_letters._publish(router.ref(path), message, reason)

    def _drop_waiting(self, reason: str) -> None:
        waiting, self.route_waiting = self.route_waiting, deque()
        for path, _packed, waiter, receipt, message in waiting:
            self._dropped(path, message, receipt, reason)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def _route_gave_up(self, ident: int, reply: asyncio.Future[Any]) -> None:
        if reply.cancelled() and self.pending.pop(ident, None) is not None and not self.closed:
            self.entries.append((CANCEL, ident, "", _EMPTY, 0.0))
            self.kick()

    def answer_route(self, ident: int, reply: asyncio.Future[Any] | None,
                     problem: BaseException | None) -> None:
        """Answer a routed ask that came in on this link (no credit is involved)."""
        self.routed.pop(ident, None)
        if self.closed or (reply is not None and reply.cancelled()):
            return
        error = problem if reply is None else reply.exception()
        if error is None and reply is not None:
            try:
                name, body = self.codec.encode(reply.result())
            except (TypeError, ValueError) as exc:
                error = MessageEncodingError(self.path, "", f"the reply: {exc}")
            else:
                self.entries.append((REPLY, ident, name, msgspec.Raw(body), 0.0))
        if error is not None:
            self.entries.append((ERROR, ident, "", self._encode_error(error), 0.0))
        if self.routed:
            self.kick()
        else:
            self.send_now()  # the answer to a lone ask

    def cancel_ask(self, ask_id: int) -> None:
        """The asker gave up: tell the other side, which cancels the handler."""
        if self.pending.pop(ask_id, None) is not None and not self.closed:
            self.entries.append((CANCEL, ask_id, "", _EMPTY, 0.0))
            self.kick()

    def send_now(self) -> None:
        """Write what is queued from the caller's own step, if the writer sleeps.

        For a lone ask and its reply, whose round trip would otherwise wait a
        loop iteration on each side for the writer to wake. Under load the
        writer is awake or woken already, and batches as before. grpclib
        writes without waiting while its connection is writable and the
        stream's window open; when it must wait, the writer finishes the
        send before it writes anything else.
        """
        idle = self.idle
        if idle is None or idle.done() or self.closed:
            self.kick()
            return
        sending = self.conn.send(*self._frame())
        try:
            waits_on = sending.send(None)
        except StopIteration:
            return
        except Exception as exc:  # (the caller's send went out or is queued: not its error)
            self._failed(exc, "sending")
            return
        self.suspended = (sending, waits_on)
        idle.set_result(None)

    def _frame(self) -> tuple[list[Envelope], bytes]:
        """Everything queued, taken for one frame: its envelopes and packed entries."""
        entries, self.entries = self.entries, []
        if self.credit_due:
            entries.append((CREDIT, self.credit_due, "", _EMPTY, 0.0))
            self.credit_due = 0
        if self.route_credit_due:
            entries.append((ROUTE_CREDIT, self.route_credit_due, "", _EMPTY, 0.0))
            self.route_credit_due = 0
        controls, self.controls = self.controls, []
        return controls, pack(entries) if entries else b""

    async def _write(self) -> None:
        conn = self.conn
        try:
            while True:
                if not (self.entries or self.controls or self.credit_due
                        or self.route_credit_due or self.suspended):
                    flushed, self.flushed = self.flushed, []
                    for waiter in flushed:
                        if not waiter.done():
                            waiter.set_result(None)
                    self.idle = self.loop.create_future()
                    await self.idle
                    self.idle = None
                if self.suspended is not None:  # a send begun by send_now had to wait
                    sending, waits_on = self.suspended
                    self.suspended = None
                    await resume(sending, waits_on)
                    continue
                await conn.send(*self._frame())
        except Exception as exc:
            self._failed(exc, "sending")

    async def flush(self, bound: float) -> None:
        """Wait (at most ``bound`` seconds) until everything queued has been written."""
        if self.closed:
            return
        waiter: asyncio.Future[None] = self.loop.create_future()
        self.flushed.append(waiter)
        self.kick()
        try:
            await asyncio.wait_for(waiter, bound)
        except TimeoutError:
            log.warning("bridge of %s: could not send everything within %gs", self.path, bound)

    async def _beat(self) -> None:
        interval = self.heartbeat_interval
        while not self.closed:
            await asyncio.sleep(interval)
            silent = self.loop.time() - self.last_received
            if silent > self.heartbeat_timeout:
                self.lose(f"no frame for {silent:.1f}s (heartbeat timeout "
                          f"{self.heartbeat_timeout:g}s)", SILENT)
                return
            self.send_control(Envelope(heartbeat=Heartbeat(sent_at=time.time())))

    # -- receiving -----------------------------------------------------------

    async def _read(self) -> None:
        """Read frames until the stream ends (of a connection that hands them over as they
        arrive, see ``start``: only its end or its loss comes here)."""
        conn = self.conn
        try:
            while True:
                received = await conn.recv()
                if received is None:
                    self.lose("the other side closed the stream")
                    return
                self._received(received)
        except Exception as exc:
            self._failed(exc, "reading")

    def _received(self, received: Received) -> None:
        if self.closed:
            return
        self.last_received = self.loop.time()
        envelopes, packed = received
        if packed:
            self.used = self.last_received
            self._receive_packed(packed)
        for envelope in envelopes:
            self.on_control(envelope)

    def _unreadable(self, exc: Exception) -> None:
        """A frame handed over as it arrived could not be read or taken."""
        self._failed(exc, "a frame")

    def _failed(self, exc: Exception, what: str) -> None:
        """The link ends on ``exc``, raised by ``what`` it was doing: an unreadable frame, the
        connection's loss, or anything else, which is a bug here rather than the peer's
        doing, and is logged as an error (the owner hears of the loss as of any other)."""
        if isinstance(exc, FrameError):
            self.lose(str(exc), BAD_FRAME)
        elif isinstance(exc, ConnectionLost):
            self.lose(str(exc))
        else:
            log.error("the link towards %s failed on %s", self.path, what, exc_info=exc)
            self.lose(f"{what} failed: {type(exc).__name__}: {exc}")

    def _receive_packed(self, packed: Any) -> None:
        token = ROUTER.set(self.router)  # refs in what arrives become refs of this node
        try:
            self._receive_entries(packed)
        finally:
            ROUTER.reset(token)

    def _receive_entries(self, packed: Any) -> None:
        cell = self.in_cell
        decoders = self.codec._decoders
        decode = self.codec.decode
        receipt = self.receipt
        appended = False
        for kind, ident, name, body, timeout in unpack(packed):
            if kind == TELL and cell is not None and cell.accepting:  # the hot path, inline
                try:
                    decoder = decoders.get(name)
                    message = decoder.decode(body) if decoder is not None else decode(name, body)
                except (LookupError, msgspec.DecodeError):
                    self._deliver(kind, ident, name, body, timeout)  # reports it
                    continue
                queue = cell.queue
                if queue is None:
                    queue = cell.queue = deque()
                queue.append((message, receipt))
                appended = True
            elif kind <= ASK:  # TELL or ASK
                self._deliver(kind, ident, name, body, timeout)
            elif kind == REPLY:
                reply = self.pending.pop(ident, None)
                if reply is not None and not reply.done():
                    try:
                        reply.set_result(self.codec.decode(name, body))
                    except (LookupError, msgspec.DecodeError) as exc:
                        reply.set_exception(MessageEncodingError(self.path, name, str(exc)))
            elif kind == ERROR:
                self._receive_error(ident, body)
            elif kind == CREDIT:
                self._credited(ident)
            elif kind == CANCEL:
                entry = self.inbound.get(ident)
                routed = self.routed.pop(ident, None)
                if routed is not None:
                    routed.cancel()
                elif entry is not None and self.in_cell is not None:
                    self.in_cell.abandon(entry[0])
            elif kind in (ROUTE_TELL, ROUTE_ASK):
                self._arrived(kind, ident, name, body, timeout)
            elif kind == ROUTE_CREDIT:
                self._route_credited(ident)
            else:
                raise FrameError(f"unknown packed entry kind {kind!r}")
        if appended and cell is not None and cell.deliverable and not cell.draining:
            cell.schedule()

    def _arrived(self, kind: int, ident: int, path: str, raw: Any, timeout: float) -> None:
        router = self.router
        try:
            name, body = _route_decoder.decode(raw)
        except msgspec.DecodeError as exc:
            raise FrameError(f"undecodable routed entry: {exc}") from None
        if router is None:
            raise FrameError(f"a message routed to {path} arrived where nothing routes")
        reply = router.arrived(self, ident if kind == ROUTE_ASK else 0, path, name,
                               bytes(body), timeout)
        if reply is not None and not reply.done():
            self.routed[ident] = reply  # a CANCEL from the asker cancels it

    def _receive_error(self, ident: int, raw: Any) -> None:
        try:
            body = _error_decoder.decode(raw)
        except msgspec.DecodeError as exc:
            raise FrameError(f"undecodable error entry: {exc}") from None
        reply = self.pending.pop(ident, None)
        if reply is not None:
            if not reply.done():
                reply.set_exception(error_from_body(body))
            return
        for index, (sent, out, reply_slot) in enumerate(self.in_flight):  # a refused tell
            if sent == ident and reply_slot is None:
                del self.in_flight[index]
                self._credited(1, pop=False)
                cell = self.out_cell
                if cell is not None:
                    cell.system.dead_letters._publish(cell.ref, out.message, body.message)
                log.error("message %s for %s was refused: %s", out.type or "value",
                          self.path, body.message)
                return

    def _credited(self, count: int, *, pop: bool = True) -> None:
        if pop:
            in_flight = self.in_flight
            for _ in range(min(count, len(in_flight))):
                in_flight.popleft()
        self.credits += count
        cell = self.out_cell
        if cell is not None and cell.queue:
            self.pump()

    def _deliver(self, kind: int, ident: int, name: str, body: Any, timeout: float) -> None:
        cell = self.in_cell
        if cell is None:
            raise FrameError(f"a user message arrived for {self.path}, which takes none this way")
        try:
            message = self.codec.decode(name, body)
        except (LookupError, msgspec.DecodeError) as exc:
            problem = MessageEncodingError(cell.path, name, str(exc))
            log.error("%s", problem)
            self.entries.append((ERROR, ident, "", self._encode_error(problem), 0.0))
            self.credit_due += 1
            self.kick()
            return
        if kind == TELL:
            if cell.accepting:
                cell.append(message, self.receipt)
            elif not self.ending:  # (an ending actor's leftovers are the other side's to keep)
                self.credit_due += 1
                cell.dead_letter(message, None, cell.dead_reason())
            return
        reply = Answer(lambda future: self._answer(ident, future), self.loop)
        timer = None
        if timeout > 0:
            timer = self.loop.call_later(timeout, cell.abandon, reply)
        self.inbound[ident] = (reply, timer)
        if cell.accepting:
            cell.append(message, reply)
        else:
            cell.dead_letter(message, reply, cell.dead_reason())

    def _delivered(self) -> None:
        self.credit_due += 1
        idle = self.idle
        if idle is not None and not idle.done():
            idle.set_result(None)

    def _answer(self, ident: int, reply: asyncio.Future[Any]) -> None:
        _reply, timer = self.inbound.pop(ident, (None, None))
        if timer is not None:
            timer.cancel()
        if self.closed:
            return
        if self.ending and not reply.cancelled() and isinstance(reply.exception(), ActorDeadError):
            return  # left in the mailbox of an ending actor: the other side keeps or fails it
        self.credit_due += 1
        if reply.cancelled():  # the asker gave up; it needs no answer
            pass
        elif (error := reply.exception()) is not None:
            self.entries.append((ERROR, ident, "", self._encode_error(error), 0.0))
        else:
            try:
                name, body = self.codec.encode(reply.result())
            except (TypeError, ValueError) as exc:
                problem = MessageEncodingError(self.path, "", f"the reply: {exc}")
                self.entries.append((ERROR, ident, "", self._encode_error(problem), 0.0))
            else:
                self.entries.append((REPLY, ident, name, msgspec.Raw(body), 0.0))
        if self.inbound:
            self.kick()
        else:
            self.send_now()  # the answer to a lone ask

    def _encode_error(self, error: BaseException) -> msgspec.Raw:
        return msgspec.Raw(_error_encoder.encode(error_body(error, self.path)))

    # -- the end -------------------------------------------------------------

    def lose(self, problem: str, cause: str = CLOSED) -> None:
        """The link is gone (or unusable): stop its tasks and tell the owner, once."""
        if self.closed:
            return
        self.closed = True
        self.kick()
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()
        self._drop_waiting(f"the link towards {self.path} was lost: {problem}")
        self.on_lost(problem, cause)
        if self.router is not None:  # watches that went out this way end UNREACHABLE
            self.router.lost(self)

    def fail_pending(self, error: Callable[[], BaseException]) -> None:
        """Fail every ask still waiting for a reply from the other side."""
        pending, self.pending = self.pending, {}
        for reply in pending.values():
            if not reply.done():
                reply.set_exception(error())

    def dead_letter_in_flight(self, reason: str) -> int:
        """Publish the tells sent but never taken out of the other mailbox; returns how many."""
        cell = self.out_cell
        in_flight, self.in_flight = self.in_flight, deque()
        lost = 0
        for _ident, out, reply in in_flight:
            if reply is None and cell is not None:
                cell.system.dead_letters._publish(cell.ref, out.message, reason)
                lost += 1
        return lost

    def take_back_in_flight(self) -> list[tuple[Outgoing, Any]]:
        """The messages the other side never took out of its mailbox, to send them again.

        Only sound after the other side ended cleanly: it sent every credit it owed.
        """
        in_flight, self.in_flight = self.in_flight, deque()
        returned = []
        for ident, out, reply in in_flight:
            if reply is not None:
                if self.pending.pop(ident, None) is None or reply.done():
                    continue
                out.ask_id = 0
            if out.shared:  # its payloads were read (and their slots freed): write them again
                try:
                    out = outgoing(self.codec, self.path, out.message, out.timeout)
                except MessageEncodingError:
                    continue
            returned.append((out, reply))
        return returned

    async def aclose(self) -> None:
        """Stop the tasks and close the connection (idempotent)."""
        was_open, self.closed = not self.closed, True
        if was_open and self.router is not None:  # (closed first: nothing more goes this way)
            self.router.lost(self)  # (watches answered on the way out are not in it)
        self._drop_waiting(f"the link towards {self.path} was closed")
        current = asyncio.current_task()
        tasks = [task for task in self.tasks if task is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
        await self.conn.aclose()


def outgoing(codec: BodyCodec, path: str, message: Any, deadline: float = 0.0) -> Outgoing:
    """Encode ``message`` for the actor at ``path``; ``MessageEncodingError`` naming why not."""
    puts = ARENA.puts
    try:
        name, body = codec.encode(message)
    except (TypeError, ValueError) as exc:
        cls = message.__class__
        raise MessageEncodingError(path, f"{cls.__module__}:{cls.__qualname__}", str(exc)) from None
    out = Outgoing(message, name, body, deadline)
    out.shared = ARENA.puts != puts
    return out


_TYPE_NAMES = CODEC._names  # the codec's cache of type names, read on the tell hot path
_ENCODE = CODEC._encoder.encode


class ProcessRef(ActorRef):
    """The ref of an actor in a child process: messages are encoded as they are sent."""

    __slots__ = ()

    async def tell(self, message: Any) -> None:
        cell = self._cell
        name = _TYPE_NAMES.get(message.__class__)
        if name is None:  # the first message of its type, or one that cannot be encoded
            out = outgoing(CODEC, cell.path, message)
        else:  # the hot path: one encode, no extra calls
            try:
                out = Outgoing(message, name, _ENCODE(message))
            except (TypeError, ValueError):
                out = outgoing(CODEC, cell.path, message)  # raises, naming the problem
        queue = cell.queue
        if cell.accepting and not cell.waiters and cell.pump is not None:
            if not queue:
                if cell.deliverable:
                    link: Link | None = getattr(cell.actor, "link", None)  # a host, or a root
                    if link is not None and link.send_tell(out):  # straight to the wire
                        return
            elif len(queue) < cell.capacity:
                # Messages wait here only while there are no credits (or while paused):
                # the link pumps them when credits come back. Nothing to schedule.
                queue.append((out, None))
                return
        await ActorRef.tell(self, out)

    def tell_nowait(self, message: Any) -> None:
        cell = self._cell
        if not cell.put_nowait(outgoing(CODEC, cell.path, message), None):
            raise MailboxFullError(cell.path, cell.capacity)

    async def ask(self, message: Any) -> Any:
        cell = self._cell
        deadline = anyio.current_effective_deadline()
        out = outgoing(CODEC, cell.path, message, deadline if deadline != float("inf") else 0.0)
        reply = cell.system._loop.create_future()
        host = cell.actor
        if not cell.put_nowait(out, reply):
            try:
                await cell.put(out, reply)
            except BaseException:
                reply.cancel()
                raise
        try:
            return await reply
        except asyncio.CancelledError:
            link: Link | None = getattr(host, "link", None)  # a ProcessHost, or a child's root
            if out.ask_id and link is not None:
                link.cancel_ask(out.ask_id)
            raise


wrapped_sends(ProcessRef)  # (tracing and metrics wrap its sends when on: see _sends)
