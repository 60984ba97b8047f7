"""Snapshots of the actor tree, and the stream of its changes."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

import msgspec

from actorstage.actors._cell import RUNNING, STARTING, STOPPED, STOPPING, SUSPENDED, Cell
from actorstage.actors._subscription import Subscription

__all__ = ["ActorStatus", "TreeEvent", "TreeEvents", "TreeNode", "snapshot"]


class ActorStatus(enum.StrEnum):
    """An actor's status in a tree snapshot."""

    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    RESTARTING = "restarting"
    STOPPING = "stopping"
    STOPPED = "stopped"


class TreeNode(msgspec.Struct, frozen=True):
    """One actor in a ``system.tree()`` snapshot.

    Attributes:
        path: The actor's path.
        name: The last part of the path.
        kind: ``"system"``, ``"supervisor"`` or ``"actor"``.
        actor_type: The actor class's qualified name.
        status: Its status when the snapshot was taken.
        restarts: How many times it has been restarted.
        queued: Messages waiting in its mailbox.
        children: Its children, in start order.
        pid: The process it runs in, for actors in child processes.
    """

    path: str
    name: str
    kind: str
    actor_type: str
    status: ActorStatus
    restarts: int
    queued: int
    children: tuple[TreeNode, ...] = ()
    pid: int | None = None

    def render(self, note: Callable[[TreeNode], str] | None = None) -> str:
        """The tree as indented text, one actor per line::

            /user
            └── sup  Supervisor  running
                ├── alice  Worker  running  restarts 2
                └── bob  Worker  running  pid 4242

        ``note(node)`` may add text at the end of each actor's line. ``str(node)``
        is ``node.render()``.
        """
        lines = [self.path if self.kind == "system" else self._line(note)]
        self._render_children("", note, lines)
        return "\n".join(lines)

    def _line(self, note: Callable[[TreeNode], str] | None) -> str:
        parts = [self.name, self.actor_type, self.status.value]
        if self.restarts:
            parts.append(f"restarts {self.restarts}")
        if self.queued:
            parts.append(f"queued {self.queued}")
        if self.pid is not None:
            parts.append(f"pid {self.pid}")
        extra = note(self) if note is not None else ""
        if extra:
            parts.append(extra)
        return "  ".join(parts)

    def _render_children(self, indent: str, note: Callable[[TreeNode], str] | None,
                         lines: list[str]) -> None:
        for index, child in enumerate(self.children):
            last = index == len(self.children) - 1
            lines.append(f"{indent}{'└── ' if last else '├── '}{child._line(note)}")
            child._render_children(indent + ("    " if last else "│   "), note, lines)

    def __str__(self) -> str:
        return self.render()

    def walk(self) -> list[TreeNode]:
        """This node and all below it, parents first."""
        nodes = [self]
        for child in self.children:
            nodes.extend(child.walk())
        return nodes

    def find(self, path: str) -> TreeNode | None:
        """The node at ``path`` in this snapshot, if any."""
        for node in self.walk():
            if node.path == path:
                return node
        return None


def _status(cell: Cell) -> ActorStatus:
    state = cell.state
    if state == RUNNING:
        return ActorStatus.PAUSED if cell.paused else ActorStatus.RUNNING
    if state == SUSPENDED:
        return ActorStatus.RESTARTING
    if state == STARTING:
        return ActorStatus.STARTING
    if state == STOPPING:
        return ActorStatus.STOPPING
    assert state == STOPPED
    return ActorStatus.STOPPED


def snapshot(cell: Cell, kind: str = "") -> TreeNode:
    factory = cell.factory
    if not kind:
        kind = "supervisor" if factory._owns_tasks else "actor"
    return TreeNode(
        path=cell.path,
        name=cell.name,
        kind=kind,
        actor_type=factory.__qualname__,
        status=_status(cell),
        restarts=cell.restarts,
        queued=len(cell.queue or ()) + len(cell.waiters or ()),
        children=tuple(snapshot(child) for child in list(cell.children.values())),
        pid=getattr(cell.actor, "pid", None) if cell.process is not None else None,
    )


class TreeEvent(msgspec.Struct, frozen=True):
    """A change in the actor tree, as ``system.tree_events`` streams it.

    Attributes:
        kind: ``"started"``, ``"crashed"``, ``"restarted"``, ``"paused"``,
            ``"resumed"`` or ``"stopped"``.
        path: The actor's path.
        actor_type: The actor class's qualified name.
        restarts: Its restarts so far.
        pid: The process it runs in, for actors in child processes.
        reason: For ``"stopped"``: its ``ExitReason`` value.
        error: For ``"crashed"``: the error, as ``Type: message``.
        time: Seconds since the epoch.
        traceback: For ``"crashed"``: the error's formatted traceback.
    """

    kind: str
    path: str
    actor_type: str
    restarts: int
    pid: int | None = None
    reason: str = ""
    error: str = ""
    time: float = 0.0
    traceback: str = ""


class TreeEvents:
    """Streams changes of the tree (starts, crashes, restarts, pauses, stops) as they happen.

    With no subscriber, publishing costs one check.
    """

    def __init__(self) -> None:
        self._subscribers: list[Subscription[TreeEvent]] = []

    def subscribe(self, max_buffer: int = 1000) -> Subscription[TreeEvent]:
        """Follow the tree's changes from now on::

            async with system.tree_events.subscribe() as events:
                async for event in events:
                    ...

        A subscriber more than ``max_buffer`` events behind misses the newest
        ones; its ``missed`` counts them.
        """
        return Subscription(self._subscribers, max_buffer)

    def publish(self, cell: Cell, kind: str, *, reason: str = "", error: str = "",
                traceback: str = "") -> None:
        if not self._subscribers:
            return
        event = TreeEvent(
            kind, cell.path, cell.factory.__qualname__, cell.restarts,
            getattr(cell.actor, "pid", None) if cell.process is not None else None,
            reason, error, time.time(), traceback)
        for subscriber in self._subscribers:
            subscriber._offer(event)
