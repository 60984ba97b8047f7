"""Warm spawn through a forkserver, with real processes."""

from __future__ import annotations

import os
import signal

import anyio
import msgspec
import pytest

from actorstage import (
    ActorCrashedError,
    ActorSystem,
    InvalidDefinitionError,
    ProcessOptions,
)
from actorstage.testing import wait_until
from tests.transport.actors import Add, Counter
from tests.transport.helpers import supervised
from tests.transport.threaded import Threaded

pytestmark = pytest.mark.anyio

WARM = ProcessOptions(start="forkserver", heartbeat_interval=0.2, heartbeat_timeout=1.5)


def _forkservers(system: ActorSystem) -> list[int]:
    return [server.pid for server in system._forkservers.values() if server.alive]


async def test_children_are_forked_by_one_forkserver_and_behave_as_spawned_ones() -> None:
    async with ActorSystem(process_defaults=WARM) as system:
        refs = [await system.spawn(Counter, process=True) for _ in range(3)]
        [server] = _forkservers(system)
        pids = set()
        for ref in refs:
            await ref.tell(Add(2))
            total = await ref.ask(Add(3))
            assert total.value == 5
            assert await ref.ask("ppid") == server  # forked by the server, not by us
            pids.add(total.pid)
            node = system.tree().find(ref.path)
            assert node is not None and node.pid == total.pid
        assert len(pids | {os.getpid(), server}) == 5
    assert not _forkservers(system)


@pytest.mark.parametrize("transport", ["unix", "tcp", "stdio"])
async def test_every_transport_works_from_a_forkserver(transport: str) -> None:
    async with ActorSystem() as system:
        options = ProcessOptions(start="forkserver", transport=transport)  # type: ignore[arg-type]
        ref = await system.spawn(Counter, process=options)
        for amount in range(100):
            await ref.tell(Add(amount))
        assert (await ref.ask("total")).value == sum(range(100))


@pytest.mark.parametrize(("how", "status"), [("sys.exit", "exited with status 3"),
                                             ("kill-self", "killed by SIGKILL")])
async def test_a_forked_child_that_dies_is_reported_with_its_status_and_restarted(
    how: str, status: str
) -> None:
    async with ActorSystem() as system:
        ref = await supervised(system, Counter, WARM)
        pid = await ref.ask("pid")
        with pytest.raises(ActorCrashedError) as caught:
            await ref.ask(how)
        assert status in caught.value.error_message
        with anyio.fail_after(10):
            await wait_until(lambda: ref._cell.restarts >= 1)
        assert await ref.ask("pid") != pid


async def test_a_killed_forkserver_takes_its_children_along_and_a_new_one_takes_over() -> None:
    async with ActorSystem() as system:
        ref = await supervised(system, Counter, WARM)
        pid = await ref.ask("pid")
        [server] = _forkservers(system)
        os.kill(server, signal.SIGKILL)
        with anyio.fail_after(10):  # the child gets SIGTERM from Linux, and loses nothing else
            await wait_until(lambda: ref._cell.restarts >= 1)
            new_pid = await ref.ask("pid")
        assert new_pid != pid
        [new_server] = _forkservers(system)
        assert new_server != server
        assert await ref.ask("ppid") == new_server


def _spares(system: ActorSystem) -> list[int]:
    pool = system._spares
    return [] if pool is None else [spare.proc.pid for group in pool.spares.values()
                                    for spare in group]


async def _a_spare(system: ActorSystem) -> int:
    with anyio.fail_after(10):
        await wait_until(lambda: bool(_spares(system)))
    [pid] = _spares(system)
    return pid


@pytest.mark.parametrize("transport", ["unix", "tcp", "stdio"])
async def test_a_spare_child_waits_ready_and_the_next_spawn_takes_it(transport: str) -> None:
    options = msgspec.structs.replace(WARM, transport=transport)
    async with ActorSystem() as system:
        first = await system.spawn(Counter, process=options)
        spare = await _a_spare(system)  # made once the first actor had started
        assert spare != await first.ask("pid")
        second = await supervised(system, Counter, options)
        assert await second.ask("pid") == spare  # it became the second actor
        assert (await second.ask(Add(4))).value == 4
        replacement = await _a_spare(system)  # and the pool is refilled
        assert replacement != spare
        with pytest.raises(ActorCrashedError):  # a crash restarts it as usual (from a spare)
            await second.ask("kill-self")
        with anyio.fail_after(10):
            await wait_until(lambda: second._cell.restarts >= 1)
            assert await second.ask("pid") == replacement
    # Leaving the system ended the spares too (the fixture finds no process left).


async def test_a_spare_that_died_while_waiting_is_passed_over() -> None:
    async with ActorSystem() as system:
        await system.spawn(Counter, process=WARM)
        spare = await _a_spare(system)
        os.kill(spare, signal.SIGKILL)
        with anyio.fail_after(10):
            await wait_until(lambda: system._spares is not None and all(
                s.proc.returncode is not None for group in system._spares.spares.values()
                for s in group))
        ref = await system.spawn(Counter, process=WARM)
        assert await ref.ask("pid") != spare
        assert (await ref.ask(Add(1))).value == 1


async def test_without_spares_every_spawn_forks_and_none_waits() -> None:
    options = msgspec.structs.replace(WARM, spares=0)
    async with ActorSystem() as system:
        refs = [await system.spawn(Counter, process=options) for _ in range(2)]
        assert system._spares is None  # no pool, so nothing can be making a spare later
        assert _spares(system) == []
        assert len({await ref.ask("pid") for ref in refs}) == 2
    with pytest.raises(InvalidDefinitionError, match=r"ProcessOptions\.spares"):
        ProcessOptions(spares=-1)


async def test_a_module_that_starts_a_thread_is_refused_with_a_clear_error() -> None:
    async with ActorSystem() as system:
        with pytest.raises(ActorCrashedError) as caught:
            await system.spawn(Threaded, process=ProcessOptions(start="forkserver"))
        assert caught.value.type_name == "ForkError"
        assert "thread" in caught.value.error_message
        assert "start='spawn'" in caught.value.error_message
        ref = await system.spawn(Threaded, process=True)  # a fresh interpreter is fine
        assert await ref.ask("hi") == "hi"


async def test_bad_start_methods_and_defaults_are_refused() -> None:
    with pytest.raises(InvalidDefinitionError, match=r"ProcessOptions\.start"):
        ProcessOptions(start="fork")  # type: ignore[arg-type]
    with pytest.raises(InvalidDefinitionError, match="process_defaults"):
        ActorSystem(process_defaults={"start": "forkserver"})  # type: ignore[arg-type]


async def test_a_spawn_that_times_out_while_forking_leaves_no_process() -> None:
    async with ActorSystem() as system:
        # The forkserver itself needs longer than this to start, so the fork request is
        # still unanswered when the spawn gives up; the late child is killed, not leaked.
        hasty = ProcessOptions(start="forkserver", start_timeout=0.05)
        with pytest.raises(ActorCrashedError, match=r"did not start within 0\.05s"):
            await system.spawn(Counter, process=hasty)
        ref = await system.spawn(Counter, process=ProcessOptions(start="forkserver"))
        assert (await ref.ask(Add(1))).value == 1
