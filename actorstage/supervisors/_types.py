"""The interface a parent offers its children's exits."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from actorstage.actors._cell import Cell
    from actorstage.actors._message import ExitReason
    from actorstage.exceptions import ActorCrashedError

__all__ = ["ParentPolicy"]


class ParentPolicy(Protocol):
    """Decides what happens to a child that exited; runs in the parent's control lane."""

    async def child_exited(
        self, parent: Cell, child: Cell, reason: ExitReason, error: ActorCrashedError | None
    ) -> None: ...

    def child_removed(self, parent: Cell, child: Cell) -> None: ...
