"""Durable executions: what a ``Runner`` keeps of its executions, so they survive it.

A ``Runner(state="sqlite:///path/runner.db")`` (or ``postgresql://...``, which
several runners may share) writes each execution when it
starts (definition, initial store, how it runs), every broker message with
its seq, and a checkpoint at every action boundary: the store after the last
completed action, the next step, paused or not, the running ``sleep``'s end.
After a crash a runner on the same state ``recover()``s every execution that
had not ended: it runs again from its next step with its checkpointed store
(the action that was running when the runner died runs again: at least
once), paused ones stay paused, ended ones stay ended.

Writes are batched (within ``LINGER`` seconds) and in order; a step boundary
waits until its step is durable (``flush``: committed, or appended to a
SQLite state's step log). A start is written before it is answered. What was
not yet durable when the process died is what runs again.

``"memory"`` (or ``None``) keeps nothing.

With PostgreSQL, several runners share the work: each execution is owned by
one runner at a time, under a lease its owner renews (``LEASE`` seconds); a
runner takes over the unfinished executions whose lease ran out (their owner
died) and recovers them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import sqlite3
import struct
import time
import urllib.parse
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from actorstage.exceptions import ActorstageError
from actorstage.workflows._events import BrokerMessage, MessageType, ProgressEvent, typed

__all__ = ["SCHEMA_VERSION", "PostgresState", "Saved", "SqliteState", "StateError",
           "StateStore", "open_state", "state_directory"]

SCHEMA_VERSION = 2
LEASE = 15.0  # seconds an owner's lease on its executions lasts without a renewal
ENDED = ("succeeded", "failed", "cancelled")

_json = msgspec.json.Encoder(enc_hook=str)
_message = msgspec.json.Decoder(BrokerMessage)
_log_encoder = msgspec.msgpack.Encoder(enc_hook=str)
_log_decoder = msgspec.msgpack.Decoder()

# Schema migrations: MIGRATIONS[n] takes a database from version n to n + 1.
MIGRATIONS: list[tuple[str, ...]] = [(
    """CREATE TABLE executions (
        id TEXT PRIMARY KEY,
        number INTEGER NOT NULL,
        workflow_id TEXT NOT NULL,
        dialect TEXT NOT NULL,
        definition TEXT NOT NULL,
        request TEXT NOT NULL,
        status TEXT NOT NULL,
        store TEXT NOT NULL,
        next_step INTEGER NOT NULL DEFAULT 0,
        last_seq INTEGER NOT NULL DEFAULT 0,
        paused INTEGER NOT NULL DEFAULT 0,
        timers TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL,
        ended_at REAL,
        error TEXT,
        reason TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX executions_ended ON executions (ended_at)",
    """CREATE TABLE events (
        execution_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        message TEXT NOT NULL,
        PRIMARY KEY (execution_id, seq)
    )""",
    """CREATE TABLE outbox (
        sink TEXT NOT NULL,
        execution_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        body BLOB NOT NULL,
        PRIMARY KEY (sink, execution_id, seq)
    )""",
), (
    "ALTER TABLE executions ADD COLUMN owner TEXT",
    "ALTER TABLE executions ADD COLUMN lease_until REAL",
)]
# The same schema in PostgreSQL's words.
PG_MIGRATIONS: list[tuple[str, ...]] = [tuple(
    statement.replace("REAL", "DOUBLE PRECISION").replace("BLOB", "BYTEA")
    .replace("number INTEGER", "number BIGINT").replace("seq INTEGER", "seq BIGINT")
    .replace("(\n        sink", "(\n        id BIGSERIAL,\n        sink")
    for statement in step) for step in MIGRATIONS]


class StateError(ActorstageError):
    """The state cannot be used: a bad URL, a database it cannot open, a newer schema."""


@dataclass
class Saved:
    """One execution as the state has it."""

    id: str
    workflow_id: str
    dialect: str  # "stages" or "serverless"
    definition: str  # JSON
    request: dict[str, Any]  # what it was started with (store, process, and the caller's)
    status: str = "pending"
    store: dict[str, Any] = field(default_factory=dict)
    next_step: int = 0
    last_seq: int = 0
    paused: bool = False
    timers: dict[str, float] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    error: dict[str, Any] | None = None
    reason: str = ""
    number: int = 0
    owner: str | None = None  # the runner that runs it (a shared state's lease)

    @property
    def ended(self) -> bool:
        return self.status in ENDED


def state_directory() -> Path:
    """Where ``actorstage serve`` keeps its state by default: ``$ACTORSTAGE_STATE_DIR``, or
    ``$XDG_STATE_HOME/actorstage``, or ``~/.local/state/actorstage``."""
    if os.environ.get("ACTORSTAGE_STATE_DIR"):
        return Path(os.environ["ACTORSTAGE_STATE_DIR"])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "actorstage"


def open_state(url: str | StateStore | None) -> StateStore | None:
    """The state a URL names: ``memory`` (None), ``sqlite:///path`` (``sqlite:///:memory:``
    for a throwaway database); ``StateError`` naming what is wrong."""
    if url is None or isinstance(url, StateStore):
        return url
    if url == "memory":
        return None
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "sqlite":
        path = urllib.parse.unquote(parsed.path)
        if parsed.netloc or not path:
            raise StateError(f"a SQLite state is sqlite:///PATH (three slashes, then the "
                             f"path), got {url!r}")
        return SqliteState(":memory:" if path == "/:memory:" else path)
    if parsed.scheme in ("postgresql", "postgres"):
        return PostgresState(url)
    raise StateError(f"unknown state {url!r}: memory, sqlite:///PATH or postgresql://...")


class StateStore:
    """Where a Runner keeps its executions: ``SqliteState`` or ``PostgresState``.

    ``shared``: several runners may use it at once (executions are leased to one);
    ``on_lost(execution_id)`` is called when this runner finds that another took one of
    its executions over (its lease ran out while it still ran it).
    """

    shared = False
    lease = LEASE
    on_lost: Callable[[str], None] | None = None

    async def open(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def create(self, saved: Saved) -> Saved | None:
        """Write a new execution (at once); the one already there under its id, if any."""
        raise NotImplementedError

    def note(self, message: BrokerMessage, store: dict[str, Any] | None,
             next_step: int | None) -> None:
        """Take in one broker message of an execution: kept, and (with ``next_step``) a
        checkpoint of ``store`` after it (given at a step boundary; read at once). Written
        with the next batch; ``flush`` waits until it is durable."""
        raise NotImplementedError

    def update(self, execution_id: str, **fields: Any) -> None:
        """Change stored fields of an execution (with the next batch)."""
        raise NotImplementedError

    async def flush(self) -> None:
        """Wait until everything noted so far is durable (survives this process)."""
        raise NotImplementedError

    async def load(self) -> list[Saved]:
        raise NotImplementedError

    async def events(self, execution_id: str, after_seq: int = 0) -> list[BrokerMessage]:
        raise NotImplementedError

    async def get(self, execution_id: str) -> Saved | None:
        raise NotImplementedError

    async def prune(self, *, max_age: float | None, max_count: int | None) -> int:
        raise NotImplementedError

    def outbox_add(self, sink: str, execution_id: str, seq: int, body: bytes) -> None:
        """Keep a callback until it is delivered (written with the next batch)."""
        raise NotImplementedError

    def outbox_done(self, sink: str, execution_id: str, seq: int) -> None:
        raise NotImplementedError

    async def outbox(self, sink: str) -> list[tuple[str, int, bytes]]:
        """The callbacks of ``sink`` not delivered yet, in the order they were kept."""
        raise NotImplementedError

    async def claim(self) -> list[Saved]:
        """Take the unfinished executions nobody runs (all of them, for a state of one
        runner; those whose lease ran out, for a shared one): this runner owns them now."""
        raise NotImplementedError

    async def renew(self) -> None:
        """Renew this runner's lease on the executions it owns (a shared state)."""

    async def listen(self, handler: Callable[[str, str], Any]) -> None:
        """Call ``handler(execution_id, kind)`` for each control (pause, resume, cancel) that
        another runner sends for an execution (a shared state)."""

    async def send_control(self, execution_id: str, kind: str) -> None:
        """Have the runner that owns ``execution_id`` pause, resume or cancel it."""
        raise StateError("controls are sent to other runners through a shared state only")


Op = tuple[str, tuple[Any, ...]]  # (event | outbox_add | outbox_done | update, params)


class _Batched(StateStore):
    _OUTBOX_ORDER = "rowid"  # the order callbacks were kept in
    """What both databases share: messages noted in memory, written in batches by one writer
    task, in order (a step's messages with its boundary); ``flush`` waits for them."""

    def __init__(self, where: str) -> None:
        self.where = where  # for messages: the path or the URL without its password
        self.owner = uuid.uuid4().hex  # this runner, as the executions it owns name it
        self.lease = LEASE
        self._pending: list[Op] = []
        self._updates: dict[str, dict[str, Any]] = {}  # per execution, merged until written
        self._size = 0  # bytes of text in _pending
        self._logged = 0  # how many of _pending a SQLite state's step log holds
        self._dirty: set[str] = set()  # executions whose _updates changed since it last did
        self._wakeup: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._queued = 0  # operations noted so far
        self._written = 0  # ... and written
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._failure: BaseException | None = None
        # The connection is used by one at a time: whoever holds the lock (a short write or
        # a start on the event loop, without awaiting; anything longer awaited).
        self._lock = asyncio.Lock()

    # -- what a database gives -------------------------------------------------------------

    async def _connect(self) -> None:
        raise NotImplementedError

    async def _disconnect(self) -> None:
        raise NotImplementedError

    async def _write(self, ops: list[Op]) -> None:
        """Write ``ops`` in one transaction."""
        raise NotImplementedError

    def _writes_here(self) -> bool:
        """Whether this database writes what is noted on the event loop (``_write_now``)."""
        return False

    def _write_now(self, ops: list[Op]) -> None:
        raise NotImplementedError

    def _log_noted(self) -> None:
        """Append what is noted and not in the step log yet to it (a SQLite state's)."""

    def _seal(self) -> None:
        """A batch is taken: what the step log holds so far is in it."""

    def _stored(self) -> None:
        """The batch taken last is in the database."""

    async def _query(self, sql: str, *params: Any) -> list[Any]:
        """The rows of ``sql`` (its parameters as ``?``), once what is noted is written."""
        raise NotImplementedError

    # -- reading -----------------------------------------------------------------------

    async def load(self) -> list[Saved]:
        return [_saved(row) for row in await self._query(
            "SELECT * FROM executions ORDER BY number")]

    async def get(self, execution_id: str) -> Saved | None:
        rows = await self._query("SELECT * FROM executions WHERE id = ?", execution_id)
        return _saved(rows[0]) if rows else None

    async def events(self, execution_id: str, after_seq: int = 0) -> list[BrokerMessage]:
        rows = await self._query("SELECT message FROM events WHERE execution_id = ? AND "
                                 "seq > ? ORDER BY seq", execution_id, after_seq)
        return [typed(_message.decode(row[0])) for row in rows]

    async def outbox(self, sink: str) -> list[tuple[str, int, bytes]]:
        rows = await self._query("SELECT execution_id, seq, body FROM outbox WHERE sink = ? "
                                 f"ORDER BY {self._OUTBOX_ORDER}", sink)
        return [(row[0], row[1], bytes(row[2])) for row in rows]

    # -- opening and closing -------------------------------------------------------------

    async def open(self) -> None:
        await self._connect()
        self._wakeup = asyncio.Event()
        self._writer = asyncio.ensure_future(self._write_loop())

    async def close(self) -> None:
        if self._writer is not None:
            await self._commit()
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        async with self._lock:
            await self._disconnect()

    # -- writing -----------------------------------------------------------------------

    def _queue(self, kind: str, params: tuple[Any, ...]) -> None:
        self._pending.append((kind, params))
        self._size += sum(len(value) for value in params if isinstance(value, str | bytes))
        self._queued += 1
        self._soon()

    def _soon(self) -> None:
        """Write within ``LINGER`` seconds (a boundary, a flush or a full batch: at once), so
        that a step's messages go in the transaction of its boundary."""
        if self._timer is not None or self._wakeup is None or self._wakeup.is_set():
            return
        if len(self._pending) >= MAX_BATCH:
            self._wakeup.set()
            return
        self._timer = asyncio.get_running_loop().call_later(LINGER, self._wake)

    def _wake(self) -> None:
        self._timer = None
        if self._wakeup is not None:
            self._wakeup.set()

    async def _write_loop(self) -> None:
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            await asyncio.sleep(0)  # let the rest of this turn's messages join the batch
            async with self._lock:
                if self._writes_here():
                    self._store_here()
                    continue
                self._log_noted()  # (so that the log holds the whole batch while it is written)
                batch, upto = self._take()
                if batch:
                    self._seal()
                    try:
                        await self._write(batch)
                    except Exception as exc:  # kept: flush raises it
                        self._failure = exc
                    else:
                        self._stored()
                self._done(upto)

    def _store_here(self) -> None:
        """Write what is noted now, on the event loop, without awaiting."""
        batch, upto = self._take()
        if batch:
            self._seal()
            try:
                self._write_now(batch)
            except Exception as exc:  # kept: flush raises it
                self._failure = exc
            else:
                self._stored()
        self._done(upto)

    def _take(self) -> tuple[list[Op], int]:
        """What is noted and not written yet, as one batch; and how far it goes."""
        batch, self._pending = self._pending, []
        updates, self._updates = self._updates, {}
        self._logged, self._dirty, self._size = 0, set(), 0
        batch.extend(("update", (execution_id, fields)) for execution_id, fields in
                     updates.items())
        return batch, self._queued

    def _done(self, upto: int) -> None:
        self._written = upto
        if self._waiters:
            waiting, self._waiters = self._waiters, []
            for target, waiter in waiting:
                if target <= upto:
                    if not waiter.done():
                        waiter.set_result(None)
                else:
                    self._waiters.append((target, waiter))

    async def flush(self) -> None:
        """Wait until everything noted so far is durable: written to the database, or (a
        SQLite state's) to its step log."""
        await self._commit()

    async def _commit(self) -> None:
        """Wait until everything noted so far is written to the database (a small batch is
        written here and now when the database can and nothing else uses it)."""
        target = self._queued
        if self._written < target and not self._lock.locked() and not self._waiters and \
                self._writes_here():
            self._store_here()
        if self._written < target and self._writer is not None and not self._writer.done():
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append((target, waiter))
            assert self._wakeup is not None
            self._wakeup.set()
            await waiter
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise StateError(f"writing the state {self.where} failed: {failure}")

    def note(self, message: BrokerMessage, store: dict[str, Any] | None,
             next_step: int | None) -> None:
        # (on every message: the fields are merged here, their values as JSON text)
        execution_id, payload = message.execution_id, message.payload
        text = _text(message)
        self._pending.append(("event", (execution_id, message.seq, text)))
        self._size += len(text)
        fields = self._updates.get(execution_id)
        if fields is None:
            fields = self._updates[execution_id] = {}
        fields["last_seq"] = message.seq
        if isinstance(payload, ProgressEvent):
            if payload.kind in ("workflow_started", "workflow_recovered"):
                fields["status"] = "running"
            elif payload.kind == "workflow_paused":
                fields["paused"] = 1
            elif payload.kind == "workflow_resumed":
                fields["paused"] = 0
            elif payload.kind == "workflow_finished":
                fields.update(status=str(payload.status), ended_at=time.time(),
                              error=None if payload.error is None else _text(payload.error))
        elif message.message_type == MessageType.TIMER and isinstance(payload, dict):
            fields["timers"] = _text(payload.get("timers", {}))
        elif message.message_type == MessageType.FINAL_STORE and isinstance(payload, dict):
            fields["store"] = _text(payload)
        if next_step is not None:
            fields.update(store=_text(store), next_step=next_step, timers="{}")
        self._dirty.add(execution_id)
        self._queued += 2  # (the event and the update)
        self._soon()

    def update(self, execution_id: str, **fields: Any) -> None:
        for name, value in fields.items():  # (kept as the JSON text they are written as)
            if isinstance(value, dict | list):
                fields[name] = _text(value)
        self._updates.setdefault(execution_id, {}).update(fields)  # one UPDATE per batch
        self._dirty.add(execution_id)
        self._queued += 1
        self._soon()

    def outbox_add(self, sink: str, execution_id: str, seq: int, body: bytes) -> None:
        self._queue("outbox_add", (sink, execution_id, seq, body))

    def outbox_done(self, sink: str, execution_id: str, seq: int) -> None:
        self._queue("outbox_done", (sink, execution_id, seq))


class SqliteState(_Batched):
    """The state in a SQLite file, for one runner at a time.

    A step boundary is made durable by appending what its step noted to the state's step
    log (``<path>.steps-a``/``-b``: one ``write`` of a few hundred bytes), not by a
    commit; the database takes everything in batches (within ``LINGER`` seconds), and
    the log is emptied once a batch is in. Opening the state first writes what the log
    holds (the steps of a runner that died) into the database.

    WAL journal, ``synchronous=NORMAL``, and a step log written without ``fsync``: a
    killed process loses nothing made durable; a machine that loses power may lose the
    last steps (which then run again). A small batch is written on the event loop (a
    commit takes tens of microseconds), anything larger by a thread of its own.
    """

    SQL = {"event": "INSERT OR REPLACE INTO events VALUES (?, ?, ?)",
           "outbox_add": "INSERT OR REPLACE INTO outbox VALUES (?, ?, ?, ?)",
           "outbox_done": "DELETE FROM outbox WHERE sink = ? AND execution_id = ? AND seq = ?"}

    def __init__(self, path: str) -> None:
        super().__init__(repr(path))
        self.path = path
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None
        self._lock_file: Any = None
        self._log: _StepLog | None = None  # (none for ":memory:": a commit costs nothing)

    async def flush(self) -> None:
        if self._log is None:
            await self._commit()
            return
        self._raise_failure()
        self._log_noted()

    def _log_noted(self) -> None:
        log = self._log
        if log is None:
            return
        pending, updates = self._pending, self._updates
        if self._logged < len(pending) or self._dirty:
            log.append(pending[self._logged:],
                       [(execution_id, updates[execution_id]) for execution_id in self._dirty])
            self._logged = len(pending)
            self._dirty.clear()

    def _seal(self) -> None:
        if self._log is not None:
            self._log.seal()

    def _stored(self) -> None:
        if self._log is not None:
            self._log.stored()

    async def _run(self, function: Any, *args: Any) -> Any:
        if self._thread is None:
            raise StateError(f"the state {self.where} is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, function, *args)

    async def _connect(self) -> None:
        self._claim_file()
        self._thread = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="actorstage-state")
        try:
            await self._run(self._open)
        except BaseException:
            self._release_file()
            raise

    def _claim_file(self) -> None:
        """One runner at a time on a SQLite state: a second one (which would take the
        first's executions for its own) is refused while the first holds the lock."""
        if self.path == ":memory:":
            return
        import fcntl

        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        lock = open(f"{self.path}.lock", "a+")  # noqa: SIM115 (held until close)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip()
            lock.close()
            raise StateError(
                f"the state {self.where} is in use by another runner ({holder or 'a process'})"
                "; a SQLite state has one runner at a time: give this one its own state, or "
                "share a PostgreSQL database") from None
        lock.truncate(0)
        lock.write(f"pid {os.getpid()}")
        lock.flush()
        self._lock_file = lock

    def _release_file(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # (closing releases the lock)
            self._lock_file = None

    def _open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db: sqlite3.Connection | None = None
        try:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=5000")
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        except sqlite3.Error as exc:
            if db is not None:
                db.close()
            raise StateError(f"cannot open the state {self.where}: {exc}") from None
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            db.close()
            raise StateError(_newer(self.where, version))
        for step in range(version, SCHEMA_VERSION):  # each migration in a transaction
            db.execute("BEGIN IMMEDIATE")
            for statement in MIGRATIONS[step]:
                db.execute(statement)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                       (str(step + 1),))
            db.execute("COMMIT")
        db.row_factory = sqlite3.Row
        self._db = db
        if self.path != ":memory:":
            log = _StepLog(self.path)
            ops = log.read()
            if ops:  # the steps a runner that died made durable, into the database first
                self._write_now(ops)
                log.clear()
            self._log = log

    async def _disconnect(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None
        self._release_file()

    def _writes_here(self) -> bool:
        return self._db is not None and self._size < SMALL_BATCH

    async def _write(self, ops: list[Op]) -> None:
        await self._run(self._write_now, ops)

    def _write_now(self, ops: list[Op]) -> None:
        db = self._db
        assert db is not None
        db.execute("BEGIN")
        try:
            for kind, rows in _runs(ops):
                if kind == "update":
                    for execution_id, fields in rows:
                        db.execute(*_update(execution_id, fields))
                else:
                    db.executemany(self.SQL[kind], rows)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    async def create(self, saved: Saved) -> Saved | None:
        await self._commit()
        async with self._lock:
            return self._create(saved)  # (a few statements: here, not in the thread)

    def _create(self, saved: Saved) -> Saved | None:
        db = self._db
        assert db is not None
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT * FROM executions WHERE id = ?", (saved.id,)).fetchone()
            if row is not None:
                db.execute("COMMIT")
                return _saved(row)
            saved.number = db.execute("SELECT COALESCE(MAX(number), 0) + 1 FROM executions"
                                      ).fetchone()[0]
            saved.owner = self.owner
            db.execute(*_insert(saved, time.time() + self.lease))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return None

    def _select(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        db = self._db
        assert db is not None
        return db.execute(sql, params).fetchall()

    async def _query(self, sql: str, *params: Any) -> list[Any]:
        await self._commit()
        async with self._lock:
            return await self._run(self._select, sql, params)  # type: ignore[no-any-return]


    async def claim(self) -> list[Saved]:
        """Every unfinished execution: a SQLite state has one runner at a time."""
        await self._commit()
        async with self._lock:
            return await self._run(self._claim)  # type: ignore[no-any-return]

    def _claim(self) -> list[Saved]:
        db = self._db
        assert db is not None
        db.execute("BEGIN IMMEDIATE")
        rows = db.execute(f"SELECT * FROM executions WHERE status NOT IN {ENDED!r} AND "
                          "(owner IS NULL OR owner != ?) ORDER BY number",
                          (self.owner,)).fetchall()
        db.execute(f"UPDATE executions SET owner = ?, lease_until = ? WHERE status NOT IN "
                   f"{ENDED!r}", (self.owner, time.time() + self.lease))
        db.execute("COMMIT")
        return [_saved(row) for row in rows]

    async def prune(self, *, max_age: float | None, max_count: int | None) -> int:
        """Remove ended executions older than ``max_age`` seconds, and beyond the newest
        ``max_count`` ended ones; how many went."""
        await self._commit()
        async with self._lock:
            return await self._run(self._prune, max_age, max_count)  # type: ignore[no-any-return]

    def _prune(self, max_age: float | None, max_count: int | None) -> int:
        db = self._db
        assert db is not None
        doomed: set[str] = set()
        if max_age is not None:
            doomed.update(row[0] for row in db.execute(
                "SELECT id FROM executions WHERE ended_at IS NOT NULL AND ended_at < ?",
                (time.time() - max_age,)))
        if max_count is not None:
            doomed.update(row[0] for row in db.execute(
                "SELECT id FROM executions WHERE ended_at IS NOT NULL ORDER BY ended_at DESC "
                "LIMIT -1 OFFSET ?", (max_count,)))
        if doomed:
            db.execute("BEGIN")
            for table, column in (("events", "execution_id"), ("outbox", "execution_id"),
                                  ("executions", "id")):
                db.executemany(f"DELETE FROM {table} WHERE {column} = ?",
                               [(execution_id,) for execution_id in doomed])
            db.execute("COMMIT")
        return len(doomed)


class _StepLog:
    """A SQLite state's step log: the operations of the steps made durable and not yet in
    the database, as records (length, CRC-32, number, msgpack), in two files used in turn,
    so that a batch being written empties the one it was sealed in while steps go on into
    the other. A record cut short by a crash fails its CRC and is dropped with what follows."""

    _HEAD = struct.Struct("<IIQ")

    def __init__(self, path: str) -> None:
        self.paths = (f"{path}.steps-a", f"{path}.steps-b")
        self._files = [os.open(name, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
                       for name in self.paths]
        self._sizes = [os.fstat(fd).st_size for fd in self._files]
        self._active = 0
        self._sealed: int | None = None
        self._number = 0

    def read(self) -> list[Op]:
        """The operations the files hold, in the order they were appended."""
        records: list[tuple[int, bytes]] = []
        for fd, size in zip(self._files, self._sizes, strict=True):
            data = os.pread(fd, size, 0)
            offset = 0
            while offset + self._HEAD.size <= len(data):
                length, crc, number = self._HEAD.unpack_from(data, offset)
                body = data[offset + self._HEAD.size:offset + self._HEAD.size + length]
                if len(body) < length or zlib.crc32(body) != crc:
                    break
                records.append((number, body))
                offset += self._HEAD.size + length
        records.sort(key=lambda record: record[0])
        self._number = records[-1][0] + 1 if records else 0
        ops: list[Op] = []
        for _number, body in records:
            noted, updates = _log_decoder.decode(body)
            ops.extend((kind, tuple(params)) for kind, params in noted)
            ops.extend(("update", (execution_id, fields)) for execution_id, fields in updates)
        return ops

    def append(self, ops: list[Op], updates: list[tuple[str, dict[str, Any]]]) -> None:
        body = _log_encoder.encode((ops, updates))
        record = self._HEAD.pack(len(body), zlib.crc32(body), self._number) + body
        os.write(self._files[self._active], record)
        self._sizes[self._active] += len(record)
        self._number += 1

    def seal(self) -> None:
        """What is appended so far is in the batch being taken: the next steps go into the
        other file."""
        if self._sizes[self._active]:
            self._sealed, self._active = self._active, 1 - self._active

    def stored(self) -> None:
        """The sealed batch is in the database: its file is emptied."""
        if self._sealed is not None:
            self._empty(self._sealed)
            self._sealed = None

    def clear(self) -> None:
        for index in (0, 1):
            self._empty(index)

    def _empty(self, index: int) -> None:
        os.ftruncate(self._files[index], 0)
        self._sizes[index] = 0

    def close(self) -> None:
        """Close the files; removed when empty (everything is in the database)."""
        for fd, size, name in zip(self._files, self._sizes, self.paths, strict=True):
            os.close(fd)
            if not size:
                with contextlib.suppress(OSError):
                    os.unlink(name)


class PostgresState(_Batched):
    """The state in a PostgreSQL database, which several runners may share (asyncpg).

    Each execution is owned by one runner, under a lease (``LEASE`` seconds, or the URL's
    ``?lease=SECONDS``) it renews every third of it; another runner takes over the
    unfinished executions whose lease ran out, within a third of a lease after that.
    """

    shared = True
    _OUTBOX_ORDER = "id"
    # Writes are fenced: a runner that lost an execution's lease (another took it over)
    # writes nothing more of it, and learns so from its updates (``on_lost``).
    SQL = {"event": "INSERT INTO events SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM "
                    "executions WHERE id = $1 AND owner = $4) ON CONFLICT (execution_id, seq) "
                    "DO NOTHING",
           "outbox_add": "INSERT INTO outbox (sink, execution_id, seq, body) SELECT $1, $2, "
                         "$3, $4 WHERE EXISTS (SELECT 1 FROM executions WHERE id = $2 AND "
                         "owner = $5) ON CONFLICT (sink, execution_id, seq) DO NOTHING",
           "outbox_done": "DELETE FROM outbox WHERE sink = $1 AND execution_id = $2 AND "
                          "seq = $3"}
    _LOCK_KEY = 0x61637473  # the advisory lock that orders migrations and starts

    def __init__(self, url: str) -> None:
        parsed = urllib.parse.urlsplit(url)
        query = urllib.parse.parse_qsl(parsed.query)
        lease = [float(value) for key, value in query if key == "lease"]
        parsed = parsed._replace(query=urllib.parse.urlencode(
            [(key, value) for key, value in query if key != "lease"]))
        super().__init__(parsed._replace(netloc=parsed.netloc.rpartition("@")[2]).geturl())
        self.url = parsed.geturl()  # (what asyncpg is given: without lease=)
        if lease:
            if not lease[0] > 0:
                raise StateError(f"lease= is a number of seconds > 0, got {lease[0]!r}")
            self.lease = lease[0]
        self._pool: Any = None
        self._listener: Any = None  # the connection that LISTENs for controls

    async def _connect(self) -> None:
        try:
            import asyncpg
        except ImportError:
            raise StateError("a PostgreSQL state needs asyncpg: pip install "
                             "'actorstage[postgres]'") from None
        try:
            self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=4)
        except (OSError, asyncpg.PostgresError) as exc:
            raise StateError(f"cannot open the state {self.where}: {exc}") from None
        async with self._pool.acquire() as db, db.transaction():
            await db.execute("SELECT pg_advisory_xact_lock($1)", self._LOCK_KEY)
            await db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, "
                             "value TEXT)")
            value = await db.fetchval("SELECT value FROM meta WHERE key = 'schema_version'")
            version = int(value) if value else 0
            if version > SCHEMA_VERSION:
                await self._pool.close()
                raise StateError(_newer(self.where, version))
            for step in range(version, SCHEMA_VERSION):
                for statement in PG_MIGRATIONS[step]:
                    await db.execute(statement)
                await db.execute("INSERT INTO meta VALUES ('schema_version', $1) ON CONFLICT "
                                 "(key) DO UPDATE SET value = EXCLUDED.value", str(step + 1))

    async def _disconnect(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
            self._listener = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def listen(self, handler: Callable[[str, str], Any]) -> None:
        import asyncpg

        def delivered(_connection: Any, _pid: int, _channel: str, payload: str) -> None:
            execution_id, _, kind = payload.rpartition(":")
            handler(execution_id, kind)

        self._listener = await asyncpg.connect(self.url)
        await self._listener.add_listener(CONTROL_CHANNEL, delivered)

    async def send_control(self, execution_id: str, kind: str) -> None:
        async with self._pool.acquire() as db:
            await db.execute("SELECT pg_notify($1, $2)", CONTROL_CHANNEL,
                             f"{execution_id}:{kind}")

    async def _write(self, ops: list[Op]) -> None:
        lost = []
        async with self._pool.acquire() as db, db.transaction():
            for kind, rows in _runs(ops):
                if kind == "update":
                    for execution_id, fields in rows:
                        sql, params = _update(execution_id, fields)
                        done = await db.execute(_numbered(f"{sql} AND owner = ?"), *params,
                                                self.owner)
                        if done == "UPDATE 0":
                            lost.append(execution_id)
                elif kind in ("event", "outbox_add"):
                    await db.executemany(self.SQL[kind], [(*row, self.owner) for row in rows])
                else:
                    await db.executemany(self.SQL[kind], rows)
        for execution_id in lost:
            if self.on_lost is not None:
                self.on_lost(execution_id)

    async def create(self, saved: Saved) -> Saved | None:
        await self._commit()
        async with self._pool.acquire() as db, db.transaction():
            await db.execute("SELECT pg_advisory_xact_lock($1)", self._LOCK_KEY)
            row = await db.fetchrow("SELECT * FROM executions WHERE id = $1", saved.id)
            if row is not None:
                return _saved(row)
            saved.number = await db.fetchval("SELECT COALESCE(MAX(number), 0) + 1 FROM "
                                             "executions")
            saved.owner = self.owner
            sql, values = _insert(saved, time.time() + self.lease)
            await db.execute(_numbered(sql), *values)
        return None

    async def _query(self, sql: str, *params: Any) -> list[Any]:
        await self._commit()
        async with self._pool.acquire() as db:
            return list(await db.fetch(_numbered(sql), *params))


    async def claim(self) -> list[Saved]:
        """The unfinished executions nobody owns, or whose owner's lease ran out."""
        await self._commit()
        now = time.time()
        async with self._pool.acquire() as db:
            rows = await db.fetch(
                f"UPDATE executions SET owner = $1, lease_until = $2 WHERE status NOT IN "
                f"{ENDED!r} AND (owner IS NULL OR (owner <> $1 AND lease_until < $3)) "
                "RETURNING *", self.owner, now + self.lease, now)
        return sorted((_saved(row) for row in rows), key=lambda saved: saved.number)

    async def renew(self) -> None:
        async with self._pool.acquire() as db:
            await db.execute(f"UPDATE executions SET lease_until = $1 WHERE owner = $2 AND "
                             f"status NOT IN {ENDED!r}", time.time() + self.lease, self.owner)

    async def prune(self, *, max_age: float | None, max_count: int | None) -> int:
        await self._commit()
        async with self._pool.acquire() as db, db.transaction():
            doomed: set[str] = set()
            if max_age is not None:
                doomed.update(row[0] for row in await db.fetch(
                    "SELECT id FROM executions WHERE ended_at IS NOT NULL AND ended_at < $1",
                    time.time() - max_age))
            if max_count is not None:
                doomed.update(row[0] for row in await db.fetch(
                    "SELECT id FROM executions WHERE ended_at IS NOT NULL ORDER BY ended_at "
                    "DESC OFFSET $1", max_count))
            for table, column in (("events", "execution_id"), ("outbox", "execution_id"),
                                  ("executions", "id")):
                await db.execute(f"DELETE FROM {table} WHERE {column} = ANY($1::text[])",
                                 list(doomed))
        return len(doomed)


CONTROL_CHANNEL = "actorstage_control"  # NOTIFY channel of controls between runners
LINGER = 0.02  # seconds a message waits for its step's boundary before it is written anyway
MAX_BATCH = 1000  # operations written at once, boundary or not
SMALL_BATCH = 64 * 1024  # bytes of text a batch SQLite writes on the event loop may have
_COLUMNS = ("id", "number", "workflow_id", "dialect", "definition", "request", "status",
            "store", "next_step", "last_seq", "paused", "timers", "created_at", "owner",
            "lease_until")


def _newer(where: str, version: int) -> str:
    return (f"the state {where} has schema version {version}, newer than this actorstage "
            f"understands ({SCHEMA_VERSION}): run a newer actorstage on it, or give another "
            "state")


def _runs(ops: list[Op]) -> Iterator[tuple[str, list[tuple[Any, ...]]]]:
    """Consecutive operations of one kind, together (one executemany each)."""
    kind, rows = "", list[tuple[Any, ...]]()
    for op_kind, params in ops:
        if op_kind != kind and rows:
            yield kind, rows
            rows = []
        kind = op_kind
        rows.append(params)
    if rows:
        yield kind, rows


def _numbered(sql: str) -> str:
    """SQL with ``?`` parameters in PostgreSQL's words (``$1``, ``$2``...)."""
    parts = sql.split("?")
    return "".join(part + (f"${index}" if index < len(parts) else "")
                   for index, part in enumerate(parts, 1))


def _update(execution_id: str, fields: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    names = ", ".join(f"{name} = ?" for name in fields)
    values = tuple(_text(value) if isinstance(value, dict | list) else value
                   for value in fields.values())
    return f"UPDATE executions SET {names} WHERE id = ?", (*values, execution_id)


def _insert(saved: Saved, lease_until: float) -> tuple[str, tuple[Any, ...]]:
    values = (saved.id, saved.number, saved.workflow_id, saved.dialect, saved.definition,
              _text(saved.request), saved.status, _text(saved.store), saved.next_step,
              saved.last_seq, int(saved.paused), _text(saved.timers), saved.created_at,
              saved.owner, lease_until)
    marks = ", ".join("?" for _ in values)
    return f"INSERT INTO executions ({', '.join(_COLUMNS)}) VALUES ({marks})", values


def _text(value: Any) -> str:
    return _json.encode(value).decode()


def _saved(row: Any) -> Saved:
    error = row["error"]
    return Saved(id=row["id"], number=row["number"], workflow_id=row["workflow_id"],
                 dialect=row["dialect"], definition=row["definition"],
                 request=msgspec.json.decode(row["request"]), status=row["status"],
                 store=msgspec.json.decode(row["store"]), next_step=row["next_step"],
                 last_seq=row["last_seq"], paused=bool(row["paused"]),
                 timers=msgspec.json.decode(row["timers"]), created_at=row["created_at"],
                 ended_at=row["ended_at"], error=msgspec.json.decode(error) if error else None,
                 reason=row["reason"], owner=row["owner"])
