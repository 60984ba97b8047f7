"""What a supervisor is told: child specs, restart types, strategies, backoff."""

from __future__ import annotations

import enum
import math
from typing import TYPE_CHECKING, Any

import msgspec

from actorstage.exceptions import InvalidDefinitionError

if TYPE_CHECKING:
    from actorstage.actors._actor import Actor
    from actorstage.transport._options import ProcessOptions

__all__ = ["Backoff", "ChildSpec", "Restart", "Strategy"]


class Restart(enum.StrEnum):
    """When a supervisor restarts a child (OTP's restart types).

    ``PERMANENT``: always, whether it crashed or exited normally.
    ``TRANSIENT``: only after a crash. ``TEMPORARY``: never. A child stopped
    on purpose (``system.stop``, ``terminate_child``) is never restarted.
    """

    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


class Strategy(enum.StrEnum):
    """Which children a supervisor restarts when one fails.

    ``ONE_FOR_ONE``: the failed child. ``ONE_FOR_ALL``: all of them.
    ``REST_FOR_ONE``: the failed child and those started after it.
    """

    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


def _positive(name: str, value: object, *, zero: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not zero):  # type: ignore[operator]
        bound = ">= 0" if zero else "> 0"
        raise InvalidDefinitionError(f"{name} must be a finite number {bound}, got {value!r}")


class Backoff(msgspec.Struct, frozen=True):
    """Delays between restarts of a child that keeps failing.

    The n-th consecutive restart waits ``initial * multiplier**(n-1)``
    seconds, at most ``maximum``, spread by ``jitter`` (0.1 draws from
    +/-10 %). A child that then runs ``reset_after`` seconds without failing
    starts again from ``initial``.
    """

    initial: float = 0.1
    maximum: float = 10.0
    multiplier: float = 2.0
    jitter: float = 0.1
    reset_after: float = 30.0

    def __post_init__(self) -> None:
        _positive("Backoff.initial", self.initial, zero=True)
        _positive("Backoff.maximum", self.maximum, zero=True)
        _positive("Backoff.reset_after", self.reset_after)
        _positive("Backoff.multiplier", self.multiplier)
        if self.multiplier < 1:
            raise InvalidDefinitionError(
                f"Backoff.multiplier must be >= 1, got {self.multiplier!r}"
            )
        if not 0 <= self.jitter < 1:
            raise InvalidDefinitionError(
                f"Backoff.jitter must be in [0, 1), got {self.jitter!r}"
            )
        if self.maximum < self.initial:
            raise InvalidDefinitionError(
                f"Backoff.maximum ({self.maximum!r}) is below initial ({self.initial!r})"
            )

    def delay(self, attempt: int, draw: float) -> float:
        """The delay before restart number ``attempt`` (from 1), with ``draw`` in [0, 1)."""
        base = min(self.maximum, self.initial * self.multiplier ** (attempt - 1))
        return min(self.maximum, base * (1 + self.jitter * (2 * draw - 1)))


class ChildSpec(msgspec.Struct, frozen=True):
    """How a supervisor starts and treats one child.

    Args:
        id: The child's name under the supervisor (unique among its children).
        actor: The ``Actor`` subclass to start.
        args: Positional arguments for its constructor.
        kwargs: Keyword arguments for its constructor.
        restart: When it is restarted (see ``Restart``).
        shutdown: Seconds it gets to finish its message in hand when stopped,
            before it is cancelled; ``None`` cancels it at once and skips
            ``on_stop`` (OTP's brutal kill).
        mailbox_size: Its mailbox bound; the system default when ``None``.
        process: ``True`` or a ``ProcessOptions`` to run the child in a
            process of its own; a restart starts a new process.
    """

    id: str
    actor: type[Actor]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}
    restart: Restart = Restart.PERMANENT
    shutdown: float | None = 5.0
    mailbox_size: int | None = None
    process: ProcessOptions | bool | None = None

    def __post_init__(self) -> None:
        from actorstage.actors._actor import Actor, check_arguments
        from actorstage.actors._lifecycle import validate_name

        try:
            validate_name(self.id)
        except InvalidDefinitionError as exc:
            raise InvalidDefinitionError(f"ChildSpec id: {exc}") from None
        if not (isinstance(self.actor, type) and issubclass(self.actor, Actor)):
            raise InvalidDefinitionError(
                f"ChildSpec {self.id!r}: actor must be an Actor subclass, got {self.actor!r}"
            )
        if not isinstance(self.restart, Restart):
            raise InvalidDefinitionError(
                f"ChildSpec {self.id!r}: restart must be a Restart, got {self.restart!r}"
            )
        if self.shutdown is not None:
            _positive(f"ChildSpec {self.id!r}: shutdown", self.shutdown)
        if self.mailbox_size is not None and (
            not isinstance(self.mailbox_size, int) or self.mailbox_size < 1
        ):
            raise InvalidDefinitionError(
                f"ChildSpec {self.id!r}: mailbox_size must be a positive int, "
                f"got {self.mailbox_size!r}"
            )
        if self.process is not None and self.process is not False:
            from actorstage.transport._host import check_importable
            from actorstage.transport._options import options_for

            try:
                options_for(self.process)
                check_importable(self.actor)
                if self.actor._owns_tasks:
                    raise InvalidDefinitionError(
                        "a supervisor cannot run in a child process yet; give its "
                        "children's ChildSpecs process=... instead")
            except InvalidDefinitionError as exc:
                raise InvalidDefinitionError(f"ChildSpec {self.id!r}: {exc}") from None
        try:
            check_arguments(self.actor, tuple(self.args), dict(self.kwargs))
        except InvalidDefinitionError as exc:
            raise InvalidDefinitionError(f"ChildSpec {self.id!r}: {exc}") from None
