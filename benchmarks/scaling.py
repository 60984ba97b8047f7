"""Scaling-out benchmarks: process actors placed on a real local Ray cluster against Ray's own
actors, on the same cluster, in the same run.

Run one with ``python -m benchmarks.scaling NAME LOOP``; it prints one JSON object. The
cluster (a head and a second raylet with a custom resource, as the tests have) is started
and stopped here; both sides are placed on the second raylet with the same resources.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from typing import Any

from actorstage import ActorSystem, ProcessOptions, run
from benchmarks.process import Echo, ask_p50  # (the subject of process_ask too)

ROUNDS = 5
ASKS = 2000
WANTS: dict[str, Any] = {"num_cpus": 0.5, "resources": {"node_b": 0.1}}


class RayEcho:
    """The Ray actor of the baselines."""

    def ping(self, value: Any) -> Any:
        return value


def _ray_echo() -> Any:
    """A new Ray actor of the baselines, on the second raylet."""
    import ray

    remote: Any = ray.remote(RayEcho)
    return remote.options(**WANTS).remote()


def _options(address: str) -> ProcessOptions:
    from actorstage.transport import RayPlacement

    return ProcessOptions(transport="tcp", start_timeout=120,
                          placement=RayPlacement(address, **WANTS))


async def placed_ask(address: str) -> float:
    async with ActorSystem() as system:
        ref = await system.spawn(Echo, process=_options(address))
        return await ask_p50(ref, ASKS)


async def placed_spawn(address: str) -> float:
    async with ActorSystem() as system:
        began = time.perf_counter()
        ref = await system.spawn(Echo, process=_options(address))
        await ref.ask(1)
        return (time.perf_counter() - began) * 1e6


def ray_call(_address: str) -> float:
    """p50 of sequential Ray actor method calls, in us: the faster of Ray's two ways to
    wait for one, ``ray.get(actor.ping.remote(1))`` and ``await actor.ping.remote(1)``."""
    import ray

    actor = _ray_echo()

    def blocking() -> list[float]:
        times = []
        for _ in range(ASKS):
            began = time.perf_counter()
            ray.get(actor.ping.remote(1))
            times.append(time.perf_counter() - began)
        return times

    async def awaiting() -> list[float]:
        times = []
        for _ in range(ASKS):
            began = time.perf_counter()
            await actor.ping.remote(1)
            times.append(time.perf_counter() - began)
        return times

    try:
        for _ in range(200):
            ray.get(actor.ping.remote(1))
        return min(statistics.median(blocking()),
                   statistics.median(asyncio.run(awaiting()))) * 1e6
    finally:
        ray.kill(actor)


def ray_spawn(_address: str) -> float:
    """Ray actor creation to the reply of its first call, in us."""
    import ray

    began = time.perf_counter()
    actor = _ray_echo()
    ray.get(actor.ping.remote(1))
    took = (time.perf_counter() - began) * 1e6
    ray.kill(actor)
    return took


BENCHMARKS: dict[str, tuple[Any, Any, str]] = {
    "ray_ask": (placed_ask, ray_call, "us"),
    "ray_spawn": (placed_spawn, ray_spawn, "us"),
}


def main(argv: list[str]) -> None:
    import ray

    from actorstage.testing import ray_cluster

    name, loop = argv
    subject, baseline, unit = BENCHMARKS[name]
    with ray_cluster({"node_b": {"node_b": 1}}) as cluster:
        warm = _ray_echo()
        ray.get(warm.ping.remote(0))
        ray.kill(warm)
        subjects, baselines = [], []
        for _ in range(ROUNDS):
            baselines.append(baseline(cluster.address))
            subjects.append(run(subject, cluster.address, use_uvloop=loop == "uvloop"))
    value, base = statistics.median(subjects), statistics.median(baselines)
    print(json.dumps({"value": value, "baseline": base, "ratio": value / base, "unit": unit,
                      "subjects": subjects, "baselines": baselines}))


if __name__ == "__main__":
    main(sys.argv[1:])
