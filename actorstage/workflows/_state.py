"""Durable executions: what a ``Runner`` keeps of its executions, so they survive it.

A ``Runner(state="sqlite:///path/runner.db")`` writes each execution when it
starts (definition, initial store, how it runs), every broker message with
its seq, and a checkpoint at every action boundary: the store after the last
completed action, the next step, paused or not, the running ``sleep``'s end.
After a crash a runner on the same state ``recover()``s every execution that
had not ended: it runs again from its next step with its checkpointed store
(the action that was running when the runner died runs again: at least
once), paused ones stay paused, ended ones stay ended.

Writes are batched: the messages of one turn of the event loop go in one
transaction, written by one thread of its own, in order. A start is written
before it is answered. What was not yet written when the process died is
what runs again.

``"memory"`` (or ``None``) keeps nothing. PostgreSQL comes in a later step.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import sqlite3
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from actorstage.exceptions import ActorstageError
from actorstage.workflows._events import BrokerMessage, MessageType, ProgressEvent, typed

__all__ = ["SCHEMA_VERSION", "Saved", "SqliteState", "StateError", "StateStore", "open_state",
           "state_directory"]

SCHEMA_VERSION = 1
ENDED = ("succeeded", "failed", "cancelled")

_json = msgspec.json.Encoder(enc_hook=str)
_message = msgspec.json.Decoder(BrokerMessage)

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
)]


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
        raise StateError("PostgreSQL state is not available yet; use sqlite:///PATH")
    raise StateError(f"unknown state {url!r}: memory, or sqlite:///PATH")


class StateStore:
    """Where a Runner keeps its executions. ``SqliteState`` is the one there is."""

    async def open(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def create(self, saved: Saved) -> Saved | None:
        """Write a new execution (at once); the one already there under its id, if any."""
        raise NotImplementedError

    def note(self, message: BrokerMessage, store: dict[str, Any], next_step: int | None
             ) -> None:
        """Take in one broker message of an execution: kept, and (with ``next_step``) a
        checkpoint of the store after it. Written with the next batch."""
        raise NotImplementedError

    def update(self, execution_id: str, **fields: Any) -> None:
        """Change stored fields of an execution (with the next batch)."""
        raise NotImplementedError

    async def flush(self) -> None:
        raise NotImplementedError

    async def load(self, *, unfinished: bool = False) -> list[Saved]:
        raise NotImplementedError

    async def events(self, execution_id: str, after_seq: int = 0) -> list[BrokerMessage]:
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


class SqliteState(StateStore):
    """The state in a SQLite file, written by one thread of its own.

    WAL journal, ``synchronous=NORMAL``: a killed process loses nothing written; a machine
    that loses power may lose the last batches (whose actions then run again).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None
        self._pending: list[tuple[str, tuple[Any, ...]]] = []
        self._updates: dict[str, dict[str, Any]] = {}  # per execution, merged until written
        self._wakeup: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._queued = 0  # statements and updates noted so far
        self._written = 0  # ... and written
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._timer: asyncio.TimerHandle | None = None
        # One connection, used by one thread at a time: whoever holds the lock (a short
        # write or a start on the event loop, without awaiting; anything longer in the
        # state's thread, awaited).
        self._lock = asyncio.Lock()
        self._failure: BaseException | None = None

    async def _run(self, function: Any, *args: Any) -> Any:
        if self._thread is None:
            raise StateError(f"the state {self.path!r} is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, function, *args)

    async def open(self) -> None:
        self._thread = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="actorstage-state")
        await self._run(self._open)
        self._wakeup = asyncio.Event()
        self._writer = asyncio.ensure_future(self._write_loop())

    def _open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=5000")
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        except sqlite3.Error as exc:
            raise StateError(f"cannot open the state {self.path!r}: {exc}") from None
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            db.close()
            raise StateError(
                f"the state {self.path!r} has schema version {version}, newer than this "
                f"actorstage understands ({SCHEMA_VERSION}): run a newer actorstage on it, "
                "or give another state")
        for step in range(version, SCHEMA_VERSION):  # each migration in a transaction
            db.execute("BEGIN IMMEDIATE")
            for statement in MIGRATIONS[step]:
                db.execute(statement)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                       (str(step + 1),))
            db.execute("COMMIT")
        self._db = db

    async def close(self) -> None:
        if self._writer is not None:
            await self.flush()
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        if self._db is not None:
            async with self._lock:
                await self._run(self._db.close)
            self._db = None
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None

    # -- writing ------------------------------------------------------------------------

    def _queue(self, sql: str, params: tuple[Any, ...]) -> None:
        self._pending.append((sql, params))
        self._queued += 1
        self._soon()

    def _soon(self) -> None:
        """Write within ``LINGER`` seconds (a boundary, a flush or a full batch: at once), so
        that a step's messages go in the transaction of its boundary."""
        if self._wakeup is None or self._wakeup.is_set() or self._timer is not None:
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
        """One batch at a time, in order: a small one written here at once (a commit in WAL
        mode takes microseconds), a large one by the state's thread."""
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            await asyncio.sleep(0)  # let the rest of this turn's messages join the batch
            async with self._lock:
                batch, upto = self._take()
                if batch:
                    try:
                        if _small(batch):
                            self._write(batch)
                        else:
                            await self._run(self._write, batch)
                    except Exception as exc:  # kept: flush raises it
                        self._failure = exc
                self._done(upto)

    def _take(self) -> tuple[list[tuple[str, tuple[Any, ...]]], int]:
        """What is noted and not written yet, as one batch; and how far it goes."""
        batch, self._pending = self._pending, []
        updates, self._updates = self._updates, {}
        batch.extend(_update(execution_id, fields) for execution_id, fields in updates.items())
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

    def _write(self, batch: list[tuple[str, tuple[Any, ...]]]) -> None:
        db = self._db
        assert db is not None
        db.execute("BEGIN")
        try:
            run: list[tuple[Any, ...]] = []  # consecutive rows of one statement: executemany
            for index, (sql, params) in enumerate(batch):
                run.append(params)
                if index + 1 == len(batch) or batch[index + 1][0] != sql:
                    db.executemany(sql, run)
                    run = []
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    async def flush(self) -> None:
        """Wait until everything noted so far is written (a small batch is written here and
        now, when no other write is under way: a step boundary costs one commit)."""
        target = self._queued
        if self._written < target and not self._lock.locked() and self._db is not None and \
                not self._waiters:  # (nothing else uses the connection: write it here)
            batch, upto = self._take()
            if _small(batch):
                try:
                    self._write(batch)
                except Exception as exc:
                    self._failure = exc
                self._done(upto)
            else:  # (back in line: the writer takes it)
                self._pending[:0] = batch
        if self._written < target and self._writer is not None and not self._writer.done():
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append((target, waiter))
            assert self._wakeup is not None
            self._wakeup.set()
            await waiter
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise StateError(f"writing the state {self.path!r} failed: {failure}")

    async def create(self, saved: Saved) -> Saved | None:
        await self.flush()
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
            number = db.execute("SELECT COALESCE(MAX(number), 0) + 1 FROM executions"
                                ).fetchone()[0]
            saved.number = number
            db.execute(
                "INSERT INTO executions (id, number, workflow_id, dialect, definition, "
                "request, status, store, next_step, last_seq, paused, timers, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (saved.id, number, saved.workflow_id, saved.dialect, saved.definition,
                 _text(saved.request), saved.status, _text(saved.store), saved.next_step,
                 saved.last_seq, int(saved.paused), _text(saved.timers), saved.created_at))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return None

    def note(self, message: BrokerMessage, store: dict[str, Any], next_step: int | None
             ) -> None:
        self._queue("INSERT OR REPLACE INTO events VALUES (?, ?, ?)",
                    (message.execution_id, message.seq, _text(message)))
        fields: dict[str, Any] = {"last_seq": message.seq}
        payload = message.payload
        if message.message_type == MessageType.TIMER and isinstance(payload, dict):
            fields["timers"] = payload.get("timers", {})
        elif message.message_type == MessageType.FINAL_STORE and isinstance(payload, dict):
            fields["store"] = payload
        if isinstance(payload, ProgressEvent):
            if payload.kind == "workflow_started":
                fields["status"] = "running"
            elif payload.kind == "workflow_paused":
                fields["paused"] = 1
            elif payload.kind == "workflow_resumed":
                fields["paused"] = 0
            elif payload.kind == "workflow_finished":
                fields.update(status=str(payload.status), ended_at=time.time(), store=store,
                              error=None if payload.error is None else
                              msgspec.to_builtins(payload.error))
        if next_step is not None:
            fields.update(store=store, next_step=next_step, timers={})
        self.update(message.execution_id, **fields)

    def update(self, execution_id: str, **fields: Any) -> None:
        self._updates.setdefault(execution_id, {}).update(fields)  # one UPDATE per batch
        self._queued += 1
        self._soon()

    def outbox_add(self, sink: str, execution_id: str, seq: int, body: bytes) -> None:
        self._queue("INSERT OR REPLACE INTO outbox VALUES (?, ?, ?, ?)",
                    (sink, execution_id, seq, body))

    def outbox_done(self, sink: str, execution_id: str, seq: int) -> None:
        self._queue("DELETE FROM outbox WHERE sink = ? AND execution_id = ? AND seq = ?",
                    (sink, execution_id, seq))

    async def outbox(self, sink: str) -> list[tuple[str, int, bytes]]:
        await self.flush()
        async with self._lock:
            rows = await self._run(self._select, "SELECT execution_id, seq, body FROM outbox "
                                   "WHERE sink = ? ORDER BY rowid", (sink,))
        return [(execution_id, seq, bytes(body)) for execution_id, seq, body in rows]

    # -- reading ------------------------------------------------------------------------

    async def load(self, *, unfinished: bool = False) -> list[Saved]:
        await self.flush()
        where = f"WHERE status NOT IN {ENDED!r}" if unfinished else ""
        async with self._lock:
            rows = await self._run(self._select,
                                   f"SELECT * FROM executions {where} ORDER BY number", ())
        return [_saved(row) for row in rows]

    def _select(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        db = self._db
        assert db is not None
        return db.execute(sql, params).fetchall()

    async def events(self, execution_id: str, after_seq: int = 0) -> list[BrokerMessage]:
        await self.flush()
        async with self._lock:
            rows = await self._run(self._select, "SELECT message FROM events WHERE "
                                   "execution_id = ? AND seq > ? ORDER BY seq",
                                   (execution_id, after_seq))
        return [typed(_message.decode(row[0])) for row in rows]

    async def prune(self, *, max_age: float | None, max_count: int | None) -> int:
        """Remove ended executions older than ``max_age`` seconds, and beyond the newest
        ``max_count`` ended ones; how many went."""
        await self.flush()
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


SMALL_BATCH = 64 * 1024  # bytes of parameters a batch written on the event loop may have
LINGER = 0.02  # seconds a message waits for its step's boundary before it is written anyway
MAX_BATCH = 1000  # statements that are written at once, boundary or not


def _small(batch: list[tuple[str, tuple[Any, ...]]]) -> bool:
    return sum(len(value) for _sql, params in batch for value in params
               if isinstance(value, str)) < SMALL_BATCH


def _update(execution_id: str, fields: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    names = ", ".join(f"{name} = ?" for name in fields)
    values = tuple(_text(value) if isinstance(value, dict | list) else value
                   for value in fields.values())
    return f"UPDATE executions SET {names} WHERE id = ?", (*values, execution_id)


def _text(value: Any) -> str:
    return _json.encode(value).decode()


def _saved(row: Any) -> Saved:
    (execution_id, number, workflow_id, dialect, definition, request, status, store,
     next_step, last_seq, paused, timers, created_at, ended_at, error, reason) = row
    return Saved(id=execution_id, number=number, workflow_id=workflow_id, dialect=dialect,
                 definition=definition, request=msgspec.json.decode(request), status=status,
                 store=msgspec.json.decode(store), next_step=next_step, last_seq=last_seq,
                 paused=bool(paused), timers=msgspec.json.decode(timers),
                 created_at=created_at, ended_at=ended_at,
                 error=msgspec.json.decode(error) if error else None, reason=reason)
