"""Web tests run real servers whose apps start process actors: none may be left behind."""

from tests.transport.conftest import _no_leftover_processes

__all__ = ["_no_leftover_processes"]  # autouse: checked after every web test
