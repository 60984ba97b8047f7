"""``actorstage demo``: a supervision tree at work, rendered live.

The tree::

    /user/app              Supervisor one_for_one
      workers              Supervisor one_for_one (generous intensity)
        steady-1, steady-2 handle a stream of jobs
        flaky              crashes every few hundred milliseconds
        sleepy             paused and resumed by the demo every 1.5 s
      fragile              Supervisor one_for_all, at most 3 restarts in 2 s
        sensor-a, sensor-b a crash burst at 60 % of the run exceeds the
                           intensity: fragile escalates and app restarts it
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from actorstage.actors import Actor, ActorSystem, TreeNode
from actorstage.exceptions import ActorCrashedError, ActorDeadError
from actorstage.supervisors import ChildSpec, Restart, Strategy, Supervisor
from actorstage.transport import ProcessOptions

__all__ = ["demo_command", "run_demo"]

STATUS_STYLE = {
    "running": "green",
    "paused": "yellow",
    "restarting": "bold red",
    "stopping": "magenta",
    "stopped": "dim",
    "starting": "cyan",
}


@dataclass
class Stats:
    processed: Counter[str] = field(default_factory=Counter)
    events: deque[str] = field(default_factory=lambda: deque(maxlen=8))
    crashes: int = 0
    escalations: int = 0
    started: float = field(default_factory=time.monotonic)
    echo: bool = False  # print each event as it happens (no live view)

    def event(self, text: str) -> None:
        line = f"{time.monotonic() - self.started:5.1f}s  {text}"
        self.events.append(line)
        if self.echo:
            print(line, flush=True)


class Job(Actor):
    """Counts the jobs it handles."""

    def __init__(self, stats: Stats, name: str) -> None:
        self.stats = stats
        self.name = name

    async def receive(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError(f"{self.name}: crash on request")
        self.stats.processed[self.name] += 1
        return self.stats.processed[self.name]


class Flaky(Job):
    """Works, and crashes a few hundred milliseconds after every start."""

    def __init__(self, stats: Stats, name: str, seed: int) -> None:
        super().__init__(stats, name)
        self.rng = random.Random(seed * 1000 + stats.processed[f"{name}:starts"])

    async def on_start(self) -> None:
        self.stats.processed[f"{self.name}:starts"] += 1
        self.context.send_after(self.rng.uniform(0.2, 0.45), "crash")


class Cruncher(Actor):
    """Runs in a child process: CPU work that never blocks the demo's event loop."""

    async def receive(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError("cruncher crashed on purpose")
        return sum(i * i for i in range(int(message)))


class _EventLog(logging.Handler):
    """Turns the runtime's crash and escalation log records into demo events."""

    def __init__(self, stats: Stats) -> None:
        super().__init__(logging.WARNING)
        self.stats = stats

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.levelno >= logging.ERROR and "exceeded its restart intensity" in text:
            self.stats.escalations += 1
            self.stats.event("ESCALATED  " + text.split(";")[0]
                             + ": it stops, and its own supervisor restarts it")


def build_tree(stats: Stats, seed: int) -> list[ChildSpec]:
    workers = [
        ChildSpec("steady-1", Job, (stats, "steady-1")),
        ChildSpec("steady-2", Job, (stats, "steady-2")),
        ChildSpec("flaky", Flaky, (stats, "flaky", seed)),
        ChildSpec("sleepy", Job, (stats, "sleepy"), restart=Restart.TRANSIENT),
        ChildSpec("cruncher", Cruncher, process=ProcessOptions(heartbeat_interval=0.5,
                                                               heartbeat_timeout=5.0)),
    ]
    sensors = [
        ChildSpec("sensor-a", Job, (stats, "sensor-a")),
        ChildSpec("sensor-b", Job, (stats, "sensor-b")),
    ]
    return [
        ChildSpec("workers", Supervisor, kwargs={
            "strategy": Strategy.ONE_FOR_ONE, "max_restarts": 50, "within": 5.0,
            "children": workers}),
        ChildSpec("fragile", Supervisor, kwargs={
            "strategy": Strategy.ONE_FOR_ALL, "max_restarts": 3, "within": 2.0,
            "children": sensors}),
    ]


async def _drive(system: ActorSystem, stats: Stats, duration: float, seed: int) -> None:
    rng = random.Random(seed)
    start = time.monotonic()
    burst_at = start + duration * 0.6
    burst_done = False
    next_toggle = start + 1.5
    paused = False
    while (now := time.monotonic()) < start + duration:
        for path in ("/user/app/workers/steady-1", "/user/app/workers/steady-2",
                     "/user/app/workers/sleepy", "/user/app/fragile/sensor-a",
                     "/user/app/fragile/sensor-b", "/user/app/workers/flaky"):
            ref = system.lookup(path)
            if ref is not None:
                for _ in range(rng.randint(1, 20)):
                    await ref.tell("job")
        sleepy = system.lookup("/user/app/workers/sleepy")
        if now >= next_toggle and sleepy is not None:
            if paused:
                await system.resume(sleepy)
                stats.event("resumed    /user/app/workers/sleepy")
            else:
                await system.pause(sleepy)
                stats.event("paused     /user/app/workers/sleepy")
            paused = not paused
            next_toggle = now + 1.5
        cruncher = system.lookup("/user/app/workers/cruncher")
        if cruncher is not None:
            with contextlib.suppress(ActorCrashedError, ActorDeadError):
                await cruncher.ask(rng.randint(1000, 20000))
                stats.processed["cruncher"] = stats.processed.get("cruncher", 0) + 1
        if not burst_done and now >= burst_at:
            burst_done = True
            if cruncher is not None:
                stats.event("crash of the process actor /user/app/workers/cruncher")
                await cruncher.tell("crash")
            stats.event("crash burst on /user/app/fragile/sensor-b")
            target = system.lookup("/user/app/fragile/sensor-b")
            if target is not None:
                for _ in range(5):
                    await target.tell("crash")
        await asyncio.sleep(0.05)
    sleepy = system.lookup("/user/app/workers/sleepy")
    if paused and sleepy is not None:
        await system.resume(sleepy)


def _plain_tree(node: TreeNode, stats: Stats) -> list[str]:
    def jobs(node: TreeNode) -> str:
        return f"jobs {stats.processed.get(node.name, 0)}" if node.kind == "actor" else ""

    return ["  " + line for line in node.render(jobs).splitlines()]


def _rich_view(system: ActorSystem, stats: Stats, duration: float) -> Any:
    from rich.console import Group
    from rich.panel import Panel
    from rich.text import Text
    from rich.tree import Tree

    def label(node: TreeNode) -> Text:
        text = Text()
        text.append(node.name, style="bold")
        text.append(f"  {node.status.value}", style=STATUS_STYLE.get(node.status.value, ""))
        text.append(f"  restarts {node.restarts}", style="cyan" if node.restarts else "dim")
        if node.kind == "actor":
            text.append(f"  jobs {stats.processed.get(node.name, 0)}", style="dim")
        if node.pid is not None:
            text.append(f"  pid {node.pid}", style="magenta")
        return text

    def add(branch: Tree, node: TreeNode) -> None:
        for child in node.children:
            add(branch.add(label(child)), child)

    root = system.tree()
    tree = Tree(Text("/user", style="bold blue"))
    add(tree, root)
    elapsed = time.monotonic() - stats.started
    header = Text(f"actorstage demo  {elapsed:4.1f}s / {duration:.0f}s   crashes {stats.crashes}"
                  f"   escalations {stats.escalations}   dead letters "
                  f"{system.dead_letters.count}", style="bold")
    events = Text("\n".join(stats.events) or "(no events yet)")
    return Group(header, tree, Panel(events, title="events", border_style="dim"))


def _summary(system_tree: TreeNode, stats: Stats, dead_letters: int, seconds: float) -> str:
    nodes = [n for n in system_tree.walk() if n.kind != "system"]
    restarts = {n.path: n.restarts for n in nodes if n.restarts}
    jobs = sum(v for k, v in stats.processed.items() if ":" not in k)
    lines = [
        "",
        f"actorstage demo finished in {seconds:.1f}s",
        f"  jobs handled      {jobs}",
        f"  crashes           {stats.crashes}",
        f"  escalations       {stats.escalations}",
        f"  dead letters      {dead_letters}",
        "  restarts          " + (", ".join(f"{p}={c}" for p, c in restarts.items()) or "none"),
        "",
        "final tree:",
        *_plain_tree(system_tree, stats),
    ]
    return "\n".join(lines)


LEGEND = """\
The tree (each supervisor restarts its crashed children):
  /user/app            Supervisor one_for_one
    workers            Supervisor one_for_one, up to 50 restarts in 5 s
      steady-1/2       handle a stream of jobs
      flaky            crashes a few hundred ms after each start
      sleepy           paused and resumed every 1.5 s
      cruncher         a process actor: CPU work in a child process
    fragile            Supervisor one_for_all, at most 3 restarts in 2 s
      sensor-a/b       a crash burst at 60 % of the run is too much for fragile:
                       it escalates, and app restarts it with fresh sensors"""


async def _narrate(system: ActorSystem, stats: Stats) -> None:
    """Turn the tree's crashes and restarts into story lines, as they happen."""
    async with system.tree_events.subscribe() as events:
        async for event in events:
            if event.kind == "crashed":
                stats.crashes += 1
                stats.event(f"crashed    {event.path}: {event.error}")
            elif event.kind == "restarted":
                stats.event(f"restarted  {event.path} (restart {event.restarts})")


async def run_demo(duration: float = 12.0, seed: int = 7, live: bool | None = None,
                   observe: tuple[str, int] | None = None) -> int:
    """Run the demo for ``duration`` seconds (Ctrl-C ends it early); returns the exit code.
    ``observe``: serve the observer page on that host and port too."""
    console = None
    if live is not False:
        try:
            from rich.console import Console
        except ImportError:
            if live:
                print("actorstage demo: --live draws with rich, which is not installed "
                      "(pip install rich); run without --live for the plain story",
                      file=sys.stderr)
                return 2
        else:
            console = Console()
            if live is None and not console.is_terminal:
                console = None
    stats = Stats(echo=console is None)
    handler = _EventLog(stats)
    logger = logging.getLogger("actorstage")
    saved = (logger.propagate, logger.level)
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.WARNING)
    began = time.monotonic()
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, interrupted.set)
    print(f"actorstage demo: {duration:g}s, seed {seed} (Ctrl-C stops it early and prints "
          f"the summary)\n\n{LEGEND}\n", flush=True)
    try:
        async with ActorSystem("demo") as system, contextlib.AsyncExitStack() as stack:
            if observe is not None:
                await _observer(system, stack, *observe)
            narrator = asyncio.ensure_future(_narrate(system, stats))
            await system.spawn(Supervisor, name="app", strategy=Strategy.ONE_FOR_ONE,
                               max_restarts=10, within=5.0, children=build_tree(stats, seed))
            driver = asyncio.ensure_future(_drive(system, stats, duration, seed))
            stop = asyncio.ensure_future(interrupted.wait())
            if console is not None:
                from rich.live import Live

                with Live(_rich_view(system, stats, duration), console=console,
                          refresh_per_second=10, transient=False) as view:
                    while not driver.done() and not interrupted.is_set():
                        view.update(_rich_view(system, stats, duration))
                        await asyncio.wait({driver, stop}, timeout=0.1)
                    view.update(_rich_view(system, stats, duration))
            else:
                await asyncio.wait({driver, stop}, return_when=asyncio.FIRST_COMPLETED)
            for task in (driver, stop):
                task.cancel()
            await asyncio.gather(driver, stop, return_exceptions=True)
            if driver.done() and not driver.cancelled() and driver.exception() is not None:
                raise driver.exception()  # type: ignore[misc]
            final = system.tree()
            dead = system.dead_letters.count
            narrator.cancel()
            await asyncio.gather(narrator, return_exceptions=True)
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
        logger.removeHandler(handler)
        logger.propagate, _ = saved
        logger.setLevel(saved[1])
    if interrupted.is_set():
        print("\nactorstage demo: interrupted", flush=True)
    print(_summary(final, stats, dead, time.monotonic() - began))
    return 130 if interrupted.is_set() else 0


async def _observer(system: ActorSystem, stack: contextlib.AsyncExitStack, host: str,
                    port: int) -> None:
    """The observer page, with a token for its buttons in the URL's fragment (never sent to
    the server by the browser, nor logged); opened in a browser where there is a screen."""
    import os
    import secrets
    import webbrowser

    token = secrets.token_urlsafe(16)
    observer = await stack.enter_async_context(system.observer(host, port, token=token))
    url = f"{observer.url}#token={token}"
    print(f"actorstage observer: {url}\n", flush=True)
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or \
            sys.platform == "darwin":
        with contextlib.suppress(Exception):
            webbrowser.open(url)


def demo_command(duration: float, seed: int, live: bool | None,
                 observe: tuple[str, int] | None = None) -> int:
    """``actorstage demo`` and ``actorstage observe``."""
    from actorstage._run import run

    try:
        return run(run_demo, duration, seed, live, observe)
    except KeyboardInterrupt:  # a second Ctrl-C, while the summary was on its way
        print("actorstage demo: interrupted", file=sys.stderr)
        return 130
