"""``ProcessOptions``: how a process actor's child process is started and watched."""

from __future__ import annotations

import math
import os
import sys
from typing import Any, Literal

import msgspec

from actorstage.exceptions import InvalidDefinitionError
from actorstage.transport._tls import is_loopback

__all__ = ["ProcessOptions"]

_TRANSPORTS = ("unix", "tcp", "stdio")
_STARTS = ("spawn", "forkserver")


def _seconds(name: str, value: object) -> None:
    if not (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0):
        raise InvalidDefinitionError(f"ProcessOptions.{name} must be a number > 0, got {value!r}")


class ProcessOptions(msgspec.Struct, frozen=True, kw_only=True):
    """How to start and watch the child process of a process actor.

    ``spawn(..., process=True)`` uses the defaults.

    Args:
        transport: ``"unix"`` (a unix socket in a private 0700 directory),
            ``"tcp"`` (loopback, an OS-assigned port) or ``"stdio"`` (JSON
            lines over the child's stdin and stdout).
        python: The interpreter that runs the child.
        env: Variables added to (or, with ``None`` values, removed from) the
            child's environment, which is otherwise the parent's.
        cwd: The child's working directory; the parent's when ``None``.
        start_timeout: Seconds from launch until the actor's ``on_start`` has
            finished in the child; past it the start fails.
        heartbeat_interval: Seconds between heartbeats in each direction.
        heartbeat_timeout: Seconds without any frame after which the other
            side counts as gone (a frozen child is killed and reported).
        host: The address the parent listens on for ``"tcp"``.
        tls: With ``"tcp"``: TLS between the two processes, each verifying the
            other's certificate against the tree's own certificate authority
            (see the scaling-out guide). ``None`` (the default): on when
            ``host`` is not a loopback address.
        allow_plain: With ``"tcp"`` on an address that is not loopback, and
            ``tls=False``: allow it all the same (refused otherwise: anyone
            on the network could read and inject the traffic).
        placement: Where the child's process comes from when the parent does
            not start it: ``JoinPlacement(launch)`` (a process started by
            something else joins) or ``RayPlacement(...)`` (a Ray actor on a
            cluster; see the scaling-out guide). Needs ``"tcp"`` and
            ``start="spawn"``.
        command: Your own entry point instead of ``python -m
            actorstage.transport``: a program that calls
            ``actorstage.child_main()`` first thing.
        max_frame_size: Largest frame accepted, in bytes, by the parent from
            the child and by the child from the parent.
        handshake_timeout: Seconds a connection to the parent's bridge server
            has to prove itself (its hello with the one-time secret) before it
            is closed. The server is one per system and transport: the first
            process actor that starts it sets it (put it in ``ActorSystem(
            process_defaults=...)`` to set it for all).
        link_idle_timeout: Seconds after which a direct link that the child
            opened to another process of the tree (to reach a sibling or a
            cousin, see the guide) closes when no message used it; the next
            message opens another.
        start: ``"spawn"`` starts a fresh interpreter per child;
            ``"forkserver"`` forks each child from a server process started
            once (per interpreter, environment and working directory) that
            has already imported actorstage and the actor's module: a warm
            start in milliseconds. The server never runs a thread or an
            event loop, so forking it is safe.
        spares: With ``start="forkserver"``: how many children this system
            keeps forked, connected and waiting for an actor, for each kind
            of child (the same interpreter, environment, directory,
            transport and limits). A spawn that finds one only sends it its
            actor, a round trip; a new spare is made once its actor has
            started. ``0``: every spawn forks. Ignored with ``"spawn"``.
    """

    transport: Literal["unix", "tcp", "stdio"] = "unix"
    python: str = sys.executable
    env: dict[str, str | None] | None = None
    cwd: str | None = None
    start_timeout: float = 30.0
    heartbeat_interval: float = 1.0
    heartbeat_timeout: float = 10.0
    host: str = "127.0.0.1"
    tls: bool | None = None
    allow_plain: bool = False
    placement: Any = None
    command: tuple[str, ...] | None = None
    max_frame_size: int = 64 * 1024 * 1024
    start: Literal["spawn", "forkserver"] = "spawn"
    handshake_timeout: float = 5.0
    link_idle_timeout: float = 30.0
    spares: int = 1

    def __post_init__(self) -> None:
        if self.transport not in _TRANSPORTS:
            raise InvalidDefinitionError(
                f"ProcessOptions.transport must be one of {_TRANSPORTS}, got {self.transport!r}"
            )
        for name in ("start_timeout", "heartbeat_interval", "heartbeat_timeout",
                     "handshake_timeout", "link_idle_timeout"):
            _seconds(name, getattr(self, name))
        if self.heartbeat_timeout <= self.heartbeat_interval:
            raise InvalidDefinitionError(
                f"ProcessOptions.heartbeat_timeout ({self.heartbeat_timeout!r}) must exceed "
                f"heartbeat_interval ({self.heartbeat_interval!r})"
            )
        if self.start not in _STARTS:
            raise InvalidDefinitionError(
                f"ProcessOptions.start must be one of {_STARTS}, got {self.start!r}"
            )
        if self.start == "forkserver" and not hasattr(os, "fork"):
            raise InvalidDefinitionError(
                "ProcessOptions.start='forkserver' needs os.fork, which this platform lacks")
        if not isinstance(self.python, str) or not self.python:
            raise InvalidDefinitionError(
                f"ProcessOptions.python must be a path, got {self.python!r}")
        if self.command is not None and (
            not self.command or not all(isinstance(part, str) for part in self.command)
        ):
            raise InvalidDefinitionError(
                f"ProcessOptions.command must be a non-empty tuple of str, got {self.command!r}"
            )
        if not isinstance(self.spares, int) or isinstance(self.spares, bool) or \
                not 0 <= self.spares <= 16:
            raise InvalidDefinitionError(
                f"ProcessOptions.spares must be an int from 0 to 16, got {self.spares!r}")
        if self.transport == "tcp" and not self.use_tls and not is_loopback(self.host) and \
                not self.allow_plain:
            raise InvalidDefinitionError(
                f"ProcessOptions: plain TCP on {self.host!r}, which is not a loopback address, "
                "would let anyone on the network read and inject the tree's traffic; leave "
                "tls on (the default there), or set allow_plain=True for a network you trust")
        if self.placement is not None:
            if not callable(getattr(self.placement, "start", None)):
                raise InvalidDefinitionError(
                    f"ProcessOptions.placement must be a placement (JoinPlacement...), got "
                    f"{self.placement!r}")
            if self.transport != "tcp" or self.start != "spawn":
                raise InvalidDefinitionError(
                    "ProcessOptions.placement needs transport='tcp' and start='spawn' (a "
                    "process that joins dials the parent's TCP address)")
        if not isinstance(self.max_frame_size, int) or self.max_frame_size < 1024:
            raise InvalidDefinitionError(
                f"ProcessOptions.max_frame_size must be an int >= 1024, got {self.max_frame_size!r}"
            )

    @property
    def use_tls(self) -> bool:
        """Whether the child's link is TCP with TLS."""
        return self.transport == "tcp" and (self.tls if self.tls is not None
                                            else not is_loopback(self.host))


def options_for(process: object, default: ProcessOptions | None = None) -> ProcessOptions | None:
    """Normalise ``spawn``'s ``process`` argument; ``True`` means ``default``."""
    if process is None or process is False:
        return None
    if process is True:
        return default if default is not None else ProcessOptions()
    if isinstance(process, ProcessOptions):
        return process
    raise InvalidDefinitionError(
        f"process must be True, False, None or a ProcessOptions, got {process!r}"
    )
