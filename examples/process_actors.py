"""Process actors: a supervised worker in a child process, crashed and restarted on purpose;
then warm workers forked by a forkserver, reporting progress to their parent actor.

Run it with `python examples/process_actors.py`. The worker classes live in
this script; the child runs the script under another name (its
``if __name__ == "__main__":`` block does not run there) to find them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

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


class Job(Message, frozen=True):
    worker: int
    n: int


class Done(Message, frozen=True):
    worker: int
    result: int
    pid: int


class Worker(Actor):
    """Runs in a forked child; reports each result to its parent actor."""

    async def receive(self, message: Job) -> None:
        parent = self.context.parent
        assert parent is not None  # the Foreman, over in the parent process
        result = sum(i * i for i in range(message.n))
        await parent.tell(Done(message.worker, result, os.getpid()))


class Foreman(Actor):
    """Spawns three warm workers, hands out jobs, and collects what they report."""

    def __init__(self, all_done: asyncio.Event) -> None:
        self.results: list[Done] = []
        self.all_done = all_done

    async def on_start(self) -> None:
        warm = ProcessOptions(start="forkserver")
        started = time.perf_counter()
        self.workers = [await self.context.spawn(Worker, name=f"w{i}", process=warm)
                        for i in range(3)]
        print(f"3 workers forked in {time.perf_counter() - started:.2f}s "
              "(the first spawn starts the forkserver)")

    async def receive(self, message: Done | str) -> list[Done] | None:
        if isinstance(message, Done):
            self.results.append(message)
            if len(self.results) == len(self.workers):
                self.all_done.set()
        elif message == "go":
            for number, worker in enumerate(self.workers):
                await worker.tell(Job(number, 10_000 * (number + 1)))
        elif message == "results":
            return list(self.results)
        return None


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

        all_done = asyncio.Event()
        foreman = await system.spawn(Foreman, all_done, name="foreman")
        await foreman.tell("go")
        await asyncio.wait_for(all_done.wait(), 30)
        results = await foreman.ask("results")
        assert results is not None
        for done in sorted(results, key=lambda done: done.worker):
            print(f"worker {done.worker} (process {done.pid}) reported {done.result}")
    print("every child process has exited")


if __name__ == "__main__":
    actorstage.run(main)
