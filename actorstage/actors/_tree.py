"""Snapshots of the actor tree."""

from __future__ import annotations

import enum

import msgspec

from actorstage.actors._cell import RUNNING, STARTING, STOPPED, STOPPING, SUSPENDED, Cell

__all__ = ["ActorStatus", "TreeNode", "snapshot"]


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
