"""Random crash/exit/stop/pause sequences against a small reference model of OTP.

The model is written from the OTP supervisor documentation, independently
of the implementation: which children restart, in which order everything
starts and stops, when the intensity is exceeded. After each operation the
real tree's start/stop log, children and restart counts must equal the
model's.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actorstage import (
    ActorCrashedError,
    ActorRef,
    ActorSystem,
    ChildSpec,
    Restart,
    Strategy,
    Supervisor,
)
from actorstage.testing import wait_until

from .helpers import Worker, settle

pytestmark = pytest.mark.anyio


@dataclass
class Model:
    """OTP's supervisor, as documented, over children that log their starts and stops."""

    strategy: Strategy
    max_restarts: int
    within: float
    specs: list[tuple[str, Restart]]
    children: list[tuple[str, Restart]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    restarts: dict[str, int] = field(default_factory=dict)
    escalations: int = 0

    def start(self) -> None:
        self.children = list(self.specs)
        self.times = []
        self.log += [f"start {c}" for c, _ in self.children]

    def restart_type(self, child: str) -> Restart:
        return dict(self.children)[child]

    def exit(self, child: str, reason: str, now: float) -> set[str]:
        """Apply an exit; returns the children whose incarnation it ended."""
        kind = self.restart_type(child)
        restart = (reason == "crash" and kind is not Restart.TEMPORARY) or (
            reason == "normal" and kind is Restart.PERMANENT)
        if not restart:
            self.log.append(f"stop {child}")
            self.children = [c for c in self.children if c[0] != child]
            return {child}
        self.times = [t for t in self.times if now - t <= self.within] + [now]
        if len(self.times) > self.max_restarts:  # escalate; the system restarts the supervisor
            ended = {c for c, _ in self.children}
            self.log += [f"stop {c}" for c, _ in reversed(self.children)]
            self.escalations += 1
            self.restarts = {}
            self.start()
            return ended
        names = [c for c, _ in self.children]
        if self.strategy is Strategy.ONE_FOR_ONE:
            group = [child]
        elif self.strategy is Strategy.ONE_FOR_ALL:
            group = names
        else:
            group = names[names.index(child):]
        for name in reversed(group):
            self.log.append(f"stop {name}")
            if name != child and self.restart_type(name) is Restart.TEMPORARY:
                self.children = [c for c in self.children if c[0] != name]
        for name in group:
            if any(c == name for c, _ in self.children):
                self.log.append(f"start {name}")
                self.restarts[name] = self.restarts.get(name, 0) + 1
        return set(group)

    def crash_both(self, first: str, second: str, now: float) -> None:
        """Two children crash at once; the second exit is stale if the first one ended it."""
        if second not in self.exit(first, "crash", now):
            self.exit(second, "crash", now)

    def stop(self, child: str) -> None:
        self.log.append(f"stop {child}")
        self.children = [c for c in self.children if c[0] != child]


operations = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["crash", "exit", "stop"]), st.integers(0, 3)),
        st.tuples(st.just("tick"), st.floats(0.0, 4.0)),
        st.tuples(st.just("pause"), st.just(0)),
        st.tuples(st.just("crash2"), st.tuples(st.integers(0, 3), st.integers(1, 3))),
    ),
    max_size=12,
)


def both_in_hand(refs: list[ActorRef | None]) -> bool:
    return all(r is not None and r._cell.draining and not r._cell.queue for r in refs)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    strategy=st.sampled_from(list(Strategy)),
    max_restarts=st.integers(0, 3),
    within=st.floats(1.0, 10.0),
    restarts=st.lists(st.sampled_from(list(Restart)), min_size=1, max_size=4),
    ops=operations,
)
async def test_supervisor_matches_the_otp_model(
    strategy: Strategy, max_restarts: int, within: float, restarts: list[Restart],
    ops: list[tuple[str, Any]],
) -> None:
    now = [0.0]
    log: list[str] = []
    names = [f"c{i}" for i in range(len(restarts))]
    model = Model(strategy, max_restarts, within, list(zip(names, restarts, strict=True)))
    model.start()
    specs = [ChildSpec(n, Worker, (log, n), restart=r) for n, r in model.specs]
    async with ActorSystem() as system:
        sup = await system.spawn(Supervisor, name="s", strategy=strategy,
                                 max_restarts=max_restarts, within=within, children=specs,
                                 clock=lambda: now[0])
        for op, arg in ops:
            if model.escalations >= 3:
                break  # the system's own limit (3 restarts in 5 s) would stop the supervisor
            if op == "tick":
                now[0] += arg
                continue
            if op == "pause":
                await system.pause(sup)
                await system.resume(sup)
                continue
            if not model.children:
                continue
            if op == "crash2":
                if len(model.children) < 2:
                    continue
                names = [c for c, _ in model.children]
                first = names[arg[0] % len(names)]
                second = names[(arg[0] + arg[1]) % len(names)]
                if first == second:
                    continue
                release = asyncio.Event()
                refs = [system.lookup(f"/user/s/{n}") for n in (first, second)]
                doomed = [asyncio.ensure_future(r.ask(release)) for r in refs if r is not None]
                await wait_until(lambda refs=refs: both_in_hand(refs))  # type: ignore[misc]
                release.set()  # both crash in the same turn, first before second
                for pending in doomed:
                    with pytest.raises(ActorCrashedError):
                        await pending
                model.crash_both(first, second, now[0])
                await settle(system)
                assert log == model.log
                continue
            child = model.children[arg % len(model.children)][0]
            ref = system.lookup(f"/user/s/{child}")
            assert ref is not None
            if op == "crash":
                with pytest.raises(ActorCrashedError):
                    await ref.ask("crash")
                model.exit(child, "crash", now[0])
            elif op == "exit":
                await ref.ask("exit")
                model.exit(child, "normal", now[0])
            else:
                await system.stop(ref)
                model.stop(child)
            await settle(system)
            assert log == model.log
            assert [c.id for c in sup.which_children()] == [c for c, _ in model.children]
            assert sup._cell.restarts == model.escalations
            for child_id, _ in model.children:
                found = system.lookup(f"/user/s/{child_id}")
                assert found is not None
                assert found._cell.restarts == model.restarts.get(child_id, 0)
