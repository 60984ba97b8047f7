"""Shared memory for large payloads, and the cursor that tells which item a dead process held.

A segment is a file in ``/dev/shm`` (a RAM file system; the temporary
folder where there is none; ``$ACTORSTAGE_SHM_DIR`` when set, which child
processes inherit) named ``actorstage-<session>-<writer>-<n>``.
The writer fills it with one ``write`` and closes it; a reader maps it
read-only and hands out a ``memoryview`` of the mapping: no copy. Names
are unlinked by the session (the parent process), which counts the
consumers each segment was routed to; a mapping stays valid after its name
is gone, and the kernel frees the memory with the last mapping, also when
the process holding it is killed. Whatever a killed writer left behind is
found by its name prefix and removed.

Every session that has node processes also holds a marker, ``<prefix>session``:
the session's owner and each of its node processes hold a shared ``flock``
on it while they live. A killed owner's segments are removed by its guard
process (see ``actorstage.transport._guard``) once its nodes are gone;
``actorstage cleanup`` removes what is left of sessions whose marker
nobody holds any more (every process of theirs is dead), and leaves
every live session alone.

``multiprocessing.shared_memory`` is not used: in Python 3.11 it registers
every segment with a resource-tracker process, which would outlive our
bookkeeping and warn about segments that the session already removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import struct
import tempfile
from pathlib import Path

__all__ = [
    "SHM_DIR",
    "Cursor",
    "SegmentReader",
    "SegmentWriter",
    "cleanup",
    "hold_marker",
    "mark_session",
    "read_segment",
    "segments",
    "sweep",
    "unlink",
]

def _shm_dir() -> Path:
    """``$ACTORSTAGE_SHM_DIR``, else ``/dev/shm``, else the temporary folder."""
    chosen = os.environ.get("ACTORSTAGE_SHM_DIR")
    if chosen:
        return Path(chosen)
    return Path("/dev/shm") if os.path.isdir("/dev/shm") else Path(tempfile.gettempdir())


SHM_DIR = _shm_dir()
PREFIX = "actorstage-"
_CURSOR = struct.Struct("=qq")  # (started seq, finished seq), native: one machine reads it


def _path(name: str) -> Path:
    if "/" in name or not name.startswith(PREFIX):
        raise ValueError(f"not an actorstage segment name: {name!r}")
    return SHM_DIR / name


def segments(prefix: str) -> list[str]:
    """The names of the segments starting with ``prefix``."""
    try:
        return sorted(name for name in os.listdir(SHM_DIR) if name.startswith(prefix))
    except FileNotFoundError:
        return []


def unlink(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_path(name))


def sweep(prefix: str, keep: set[str] | frozenset[str] = frozenset()) -> int:
    """Remove the segments named ``prefix*`` except ``keep``; returns how many went."""
    if not prefix.startswith(PREFIX) or len(prefix) <= len(PREFIX):
        raise ValueError(f"refusing to sweep the broad prefix {prefix!r}")
    removed = 0
    for name in segments(prefix):
        if name not in keep:
            unlink(name)
            removed += 1
    return removed


MARKER = "session"  # <prefix>session: held (flock LOCK_SH) by every live process of a session


def mark_session(prefix: str) -> int:
    """Create the session's marker, held by this process: the open descriptor to keep.

    It is created under a temporary name, locked, then renamed, so that
    ``cleanup`` never sees it unheld while the session lives.
    """
    name = prefix + MARKER
    _path(name)
    temporary = SHM_DIR / f".{name}.{os.getpid()}"
    fd = os.open(temporary, os.O_CREAT | os.O_TRUNC | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        os.rename(temporary, _path(name))
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return fd


def hold_marker(name: str) -> int:
    """Hold an existing marker in this process too (a node process): the descriptor to keep."""
    fd = os.open(_path(name), os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RuntimeError(f"session marker {name} is being cleaned up: its session is over")\
            from None
    return fd


def cleanup(dry_run: bool = False) -> tuple[list[str], int, int]:
    """Remove what sessions whose processes all died left behind.

    Returns ``(removed, live, unmarked)``: the names removed (or that would
    be), the number of live sessions left alone, and the number of segments
    that belong to no marker (from before markers, or of a foreign program)
    and are left alone as well.
    """
    names = segments(PREFIX)
    markers = [name for name in names if name.endswith("-" + MARKER)]
    prefixes = [name[: -len(MARKER)] for name in markers]
    removed: list[str] = []
    live = 0
    for marker, prefix in zip(markers, prefixes, strict=True):
        try:
            fd = os.open(_path(marker), os.O_RDONLY)
        except FileNotFoundError:  # its session ended meanwhile
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                live += 1
                continue
            gone = [name for name in segments(prefix) if name != marker] + [marker]
            if not dry_run:
                for name in gone:
                    unlink(name)
            removed += gone
        finally:
            os.close(fd)
    unmarked = sum(1 for name in names
                   if not any(name.startswith(prefix) for prefix in prefixes))
    return removed, live, unmarked


class SegmentWriter:
    """Writes payloads into new segments named ``<prefix><n>``."""

    __slots__ = ("count", "prefix")

    def __init__(self, prefix: str) -> None:
        _path(prefix + "0")
        self.prefix = prefix
        self.count = 0

    def write(self, data: bytes | bytearray | memoryview) -> tuple[str, int]:
        """A new segment holding ``data``: its ``(name, size)``."""
        self.count += 1
        name = f"{self.prefix}{self.count}"
        view = memoryview(data).cast("B")
        size = view.nbytes
        fd = os.open(_path(name), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            written = 0
            while written < size:
                written += os.write(fd, view[written:])
        except BaseException:
            os.close(fd)
            unlink(name)
            raise
        os.close(fd)
        return name, size


def _open_sized(name: str, size: int) -> int:
    """A read-only descriptor of segment ``name``, checked to hold ``size`` bytes."""
    fd = os.open(_path(name), os.O_RDONLY)
    actual = os.fstat(fd).st_size
    if actual != size:
        os.close(fd)
        raise ValueError(f"segment {name} holds {actual} bytes, not the {size} announced")
    return fd


def read_segment(name: str, size: int) -> bytes:
    """The ``size`` bytes of segment ``name``, read into ``bytes``: one copy, with no
    mapping to fault in and take down (for what leaves shared memory for good)."""
    fd = _open_sized(name, size)
    try:
        data = os.read(fd, size)
        while len(data) < size:  # (a read may stop short: the rest in further ones)
            more = os.read(fd, size - len(data))
            if not more:
                raise ValueError(f"segment {name} ended after {len(data)} of {size} bytes")
            data += more
        return data
    finally:
        os.close(fd)


class SegmentReader:
    """Maps segments read-only; remembers which mapping each view it gave out belongs to."""

    __slots__ = ("maps",)

    def __init__(self) -> None:
        self.maps: dict[str, tuple[mmap.mmap, int]] = {}

    def open(self, name: str, size: int) -> memoryview:
        """A read-only view of segment ``name`` (``size`` bytes); each call must be released."""
        known = self.maps.get(name)
        if known is not None:
            mapping, users = known
            self.maps[name] = (mapping, users + 1)
            return memoryview(mapping)
        fd = _open_sized(name, size)
        try:
            mapping = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
        self.maps[name] = (mapping, 1)
        return memoryview(mapping)

    def owner(self, value: object) -> tuple[str, int] | None:
        """``(name, size)`` when ``value`` is a whole view of a segment mapped here and in use."""
        if not isinstance(value, memoryview):
            return None
        mapping = value.obj
        for name, (known, _users) in self.maps.items():
            if known is mapping:
                return (name, len(known)) if value.nbytes == len(known) else None
        return None

    def release(self, name: str) -> None:
        """One user fewer; the last one unmaps it, unless a node still holds a view of it."""
        known = self.maps.get(name)
        if known is None:
            return
        mapping, users = known
        if users > 1:
            self.maps[name] = (mapping, users - 1)
            return
        del self.maps[name]
        with contextlib.suppress(BufferError):  # a node kept a view: it goes with the last view
            mapping.close()

    def close(self) -> None:
        for name in list(self.maps):
            self.maps[name] = (self.maps[name][0], 1)
            self.release(name)


class Cursor:
    """Two numbers in shared memory: the item a node process started last, and finished last.

    The process writes them around each item; when it dies, the parent
    reads them from the file to tell the item in flight (reported failed)
    from those finished (their outputs may be lost: they are given again).
    """

    __slots__ = ("mapping", "marks", "name")

    def __init__(self, name: str, mapping: mmap.mmap | None = None) -> None:
        self.name = name
        self.mapping = mapping
        # The two numbers as a view: ``marks[0] = seq`` is the cheapest write there is.
        self.marks = memoryview(mapping).cast("q") if mapping is not None else None

    @classmethod
    def create(cls, name: str) -> Cursor:
        fd = os.open(_path(name), os.O_CREAT | os.O_TRUNC | os.O_RDWR, 0o600)
        try:
            os.write(fd, _CURSOR.pack(0, 0))
        finally:
            os.close(fd)
        return cls(name)

    @classmethod
    def attach(cls, name: str) -> Cursor:
        """The cursor a node process writes; ``""``: one of its own that nobody reads (a
        process that may be on another machine)."""
        if not name:
            cursor = cls(name)
            cursor.marks = memoryview(bytearray(_CURSOR.size)).cast("q")
            return cursor
        fd = os.open(_path(name), os.O_RDWR)
        try:
            mapping = mmap.mmap(fd, _CURSOR.size)
        finally:
            os.close(fd)
        return cls(name, mapping)

    def started(self, seq: int) -> None:
        assert self.marks is not None
        self.marks[0] = seq

    def finished(self, seq: int) -> None:
        assert self.marks is not None
        self.marks[1] = seq

    def read(self) -> tuple[int, int]:
        """``(started, finished)`` as last written; ``(0, 0)`` when the file is gone."""
        try:
            data = _path(self.name).read_bytes()
        except FileNotFoundError:
            return 0, 0
        if len(data) < _CURSOR.size:
            return 0, 0
        started, finished = _CURSOR.unpack_from(data)
        return int(started), int(finished)

    def close(self) -> None:
        if self.marks is not None:
            self.marks.release()
            self.marks = None
        if self.mapping is not None:
            self.mapping.close()
            self.mapping = None
