"""Process actors: a supervised worker in a child process, crashed and restarted on purpose.

Run it with `python examples/process_actors.py`. The worker class lives in
this script; the child runs the script under another name (its
``if __name__ == "__main__":`` block does not run there) to find it.
"""

from __future__ import annotations

import logging
import os

import actorstage
from actorstage import (
    Actor,
    ActorCrashedError,
    ActorSystem,
    ChildSpec,
    Message,
    ProcessOptions,
    Supervisor,
)


class Square(Message, frozen=True):
    n: int


class Crash(Message, frozen=True):
    pass


class Squarer(Actor):
    """CPU work off the parent's event loop; logs as it starts."""

    async def on_start(self) -> None:
        logging.getLogger("example.squarer").warning("squarer up in process %d", os.getpid())

    async def receive(self, message: Square | Crash) -> int:
        if isinstance(message, Crash):
            raise RuntimeError("crashed on purpose")
        return sum(message.n * message.n for _ in range(10_000)) // 10_000


async def main() -> None:
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    options = ProcessOptions(heartbeat_interval=0.5, heartbeat_timeout=5.0)
    async with ActorSystem() as system:
        await system.spawn(Supervisor, name="work", children=[
            ChildSpec("squarer", Squarer, process=options),
        ])
        squarer = system.lookup("/user/work/squarer")
        assert squarer is not None
        first = system.tree().find(squarer.path)
        assert first is not None and first.pid is not None
        print(f"parent {os.getpid()}, squarer in process {first.pid}")
        print("7 squared is", await squarer.ask(Square(7)))
        try:
            await squarer.ask(Crash())
        except ActorCrashedError as error:
            print(f"the child crashed: {error.type_name}: {error.error_message}")
        print("12 squared is", await squarer.ask(Square(12)))  # a fresh process answers
        second = system.tree().find(squarer.path)
        assert second is not None and second.pid != first.pid
        print(f"restarted in process {second.pid}; restarts={second.restarts}")
    print("every child process has exited")


if __name__ == "__main__":
    actorstage.run(main)
