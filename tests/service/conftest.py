"""Service tests start child processes (isolated executions): each must leave none behind."""

from tests.transport.conftest import _no_leftover_processes

__all__ = ["_no_leftover_processes"]  # autouse: checked after every service test
