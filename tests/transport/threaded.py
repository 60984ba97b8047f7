"""A module that starts a thread when imported: a forkserver must refuse to fork after it."""

from __future__ import annotations

import threading
from typing import Any

from actorstage import Actor

_stop = threading.Event()
threading.Thread(target=_stop.wait, name="started-on-import", daemon=True).start()


class Threaded(Actor):
    async def receive(self, message: Any) -> Any:
        return message
