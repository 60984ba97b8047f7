"""Large payloads between processes go through shared memory, not through the stream.

A ``bytes``, ``bytearray`` or ``memoryview`` of ``THRESHOLD`` bytes or more
(and a numpy array's data, when numpy is installed) in a message or a reply
for another process is written into a slot of the sending process's arena,
and the message carries the slot's name and the size instead of the bytes.
The receiver maps the slot (once: mappings are kept), copies the bytes out
into the value it hands to the actor (a value that crosses is a copy, as
ever) and marks the slot free by writing its first byte. The sender reuses
free slots, so steady traffic touches warm pages and makes no system call;
one payload costs a copy in and a copy out, against a copy per buffer on
the way through HTTP/2, the socket and the frame decoder.

A slot is a file in the shared-memory folder (see ``actorstage._shm``)
named ``actorstage-m<pid>-<token>-<n>`` (the token: a reused pid never
names the slot of a process that is gone), owned by the process ``<pid>``: it
unlinks its slots when its system closes; when it is killed, its parent
sweeps them as it learns of the death, its guard sweeps those of the
processes it watches, and ``actorstage cleanup`` finds them by the
arena's marker, which the owner holds while it lives. A slot that is never
read (its message was dropped before the far side decoded it) stays taken
until its owner ends; the arena is bounded (``LIMIT`` bytes), and past
that payloads travel inline.

A node that only passes a message on (a routed message for a process
further on) does not decode it (see ``_routing``): the slot is freed by the
process that delivers it. Except where the next process may be on another
machine (it joined the tree, or this one did): there the message's payloads
are read out of their slots and it goes on inline.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import secrets
from typing import Any

from actorstage import _shm

__all__ = ["ARENA", "LIMIT", "THRESHOLD", "Arena", "prefix_of"]

THRESHOLD = 256 * 1024  # payloads from this size on go through shared memory
LIMIT = 512 * 1024 * 1024  # the most an arena holds; past it, payloads go inline
_HEADER = 64  # a slot's first byte: 1 while a payload waits in it, 0 once read
_MIN_SLOT = 1024 * 1024
_MAPPED = 64  # slots of other processes kept mapped, at most


def prefix_of(pid: int) -> str:
    """The name prefix of the arena of process ``pid``."""
    return f"{_shm.PREFIX}m{pid}-"


class Arena:
    """This process's slots for payloads it sends, and the slots of others it has mapped."""

    def __init__(self) -> None:
        self.off = False  # payloads inline with everyone (a process that another may not
        # share memory with: one that joined, or one with a process that joined)
        self.pid = 0
        self.marker: int | None = None
        self.slots: list[tuple[str, mmap.mmap]] = []
        self.size = 0
        self.count = 0
        self.token = ""
        self.mapped: dict[str, mmap.mmap] = {}
        self.puts = 0  # payloads written, ever: tells an encoder whether it used a slot
        self.systems = 0  # running actor systems of this process: the last one closes it

    # -- sending -----------------------------------------------------------------------

    def put(self, data: Any) -> tuple[str, int] | None:
        """Copy ``data`` (a buffer) into a free slot: ``(name, size)``, or ``None`` when the
        arena is full (then the payload travels inline)."""
        if self.off:
            return None
        view = memoryview(data).cast("B")
        size = view.nbytes
        if self.pid != os.getpid():  # a forked child starts an arena of its own
            self._forget()
        found = next(((name, mapping) for name, mapping in self.slots
                      if mapping[0] == 0 and len(mapping) - _HEADER >= size), None)
        if found is None:
            found = self._create(size)
            if found is None:
                return None
        name, mapping = found
        mapping[_HEADER:_HEADER + size] = view
        mapping[0] = 1
        self.puts += 1
        return name, size

    def _create(self, size: int) -> tuple[str, mmap.mmap] | None:
        capacity = max(_MIN_SLOT, 1 << (size + _HEADER - 1).bit_length())
        if self.size + capacity > LIMIT:
            return None
        if self.marker is None:
            self.pid = os.getpid()
            self.marker = _shm.mark_session(prefix_of(self.pid))
            self.token = secrets.token_hex(4)
        self.count += 1
        name = f"{prefix_of(self.pid)}{self.token}-{self.count}"
        fd = os.open(_shm.SHM_DIR / name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(fd, capacity)
            mapping = mmap.mmap(fd, capacity)
        finally:
            os.close(fd)
        self.slots.append((name, mapping))
        self.size += capacity
        return name, mapping

    def _forget(self) -> None:
        """In a forked child: the parent's slots and mappings are the parent's."""
        self.slots, self.mapped = [], {}
        self.size = self.count = 0
        if self.marker is not None:
            with contextlib.suppress(OSError):
                os.close(self.marker)
        self.marker = None
        self.pid = os.getpid()

    # -- receiving ---------------------------------------------------------------------

    def take(self, name: str, size: int, into: Any) -> Any:
        """``into(view)`` of the payload in slot ``name`` (``bytes``, say: it must copy);
        the slot is free again once this returns."""
        mapping = self._map(name)
        if size > len(mapping) - _HEADER or mapping[0] != 1:
            raise ValueError(f"shared-memory slot {name} does not hold the {size} bytes "
                             "announced")
        with memoryview(mapping) as view:
            value = into(view[_HEADER:_HEADER + size])
        mapping[0] = 0
        return value

    def _map(self, name: str) -> mmap.mmap:
        mapping = self.mapped.get(name)
        if mapping is not None:
            return mapping
        if not name.startswith(_shm.PREFIX + "m") or "/" in name:
            raise ValueError(f"not an actorstage payload slot: {name!r}")
        if self.pid != os.getpid():
            self._forget()
        fd = os.open(_shm.SHM_DIR / name, os.O_RDWR)
        try:
            mapping = mmap.mmap(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)
        if len(self.mapped) >= _MAPPED:  # the oldest goes (its owner may have closed it)
            oldest = next(iter(self.mapped))
            with contextlib.suppress(BufferError):
                self.mapped.pop(oldest).close()
        self.mapped[name] = mapping
        return mapping

    # -- the end -----------------------------------------------------------------------

    def close(self) -> None:
        """Unlink this process's slots (its last system is closing)."""
        if self.pid != os.getpid():
            self._forget()
            return
        slots, self.slots = self.slots, []
        for name, mapping in slots:
            _shm.unlink(name)
            with contextlib.suppress(BufferError):
                mapping.close()
        self.size = 0
        if self.marker is not None:
            _shm.unlink(prefix_of(self.pid) + _shm.MARKER)
            os.close(self.marker)
            self.marker = None


ARENA = Arena()
