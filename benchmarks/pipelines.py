"""Pipeline benchmarks, each against a baseline measured in the same process.

``python -m benchmarks.pipelines NAME LOOP`` prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

from actorstage import ActorSystem, ProcessOptions, run
from actorstage.pipelines import Pipeline, parse_manifest
from benchmarks import local, process

ROUNDS = 5
MIB = 1024 * 1024
PAYLOADS = 300  # 1 MiB each
CHAIN_ITEMS = 100_000
NATIVE_ITEMS = 200_000


def chain(executor: str, count: int, capacity: int = 256) -> Pipeline:
    nodes = [{"id": f"n{i}", "node_type": "IdentityNode", "executor": executor}
             for i in range(count)]
    links = [{"from": f"n{i}", "to": f"n{i + 1}"} for i in range(count - 1)]
    return Pipeline(parse_manifest(json.dumps({
        "version": "v1", "metadata": {"name": f"bench-{executor}-{count}",
                                      "multiprocess": {"channel_capacity": capacity}},
        "nodes": nodes, "connections": links})))


async def through(pipeline: Pipeline, items: list[Any]) -> float:
    """Seconds from the first input to the last output, the nodes already started."""
    async with ActorSystem() as system, pipeline.session(system) as session:
        began = time.perf_counter()
        feeder = asyncio.get_running_loop().create_task(session.feed(items))
        count = 0
        async for _output in session.outputs():
            count += 1
        elapsed = time.perf_counter() - began
        await feeder
        assert count == len(items), count
    return elapsed


# -- 1 MiB payloads: process node to process node ------------------------------------


async def payload_throughput() -> float:
    payload = bytes(range(256)) * (MIB // 256)
    elapsed = await through(chain("process", 2, capacity=16), [payload] * PAYLOADS)
    return PAYLOADS / elapsed  # MiB/s


def _echo_bytes(conn: Connection) -> None:
    while (data := conn.recv_bytes()) != b"stop":
        conn.send_bytes(data)


def pipe_payload_throughput() -> float:
    """The same payloads to a child and back over a Pipe, the next sent as one returns."""
    payload = bytes(range(256)) * (MIB // 256)
    child, ours = process._start(_echo_bytes)
    began = time.perf_counter()
    for _ in range(PAYLOADS):
        ours.send_bytes(payload)
        assert len(ours.recv_bytes()) == MIB
    elapsed = time.perf_counter() - began
    ours.send_bytes(b"stop")
    child.join()
    return PAYLOADS / elapsed


# -- small items through 4 process nodes, and through 4 native nodes -----------------------


async def process_chain() -> float:
    return CHAIN_ITEMS / await through(chain("process", 4, capacity=1024),
                                       list(range(CHAIN_ITEMS)))


async def single_hop_tell() -> float:
    return await process.tell_throughput(ProcessOptions(transport="unix"))


async def native_chain() -> float:
    """Microseconds per item through 4 native nodes."""
    return 1e6 * await through(chain("native", 4), list(range(NATIVE_ITEMS))) / NATIVE_ITEMS


async def local_tell() -> float:
    """Microseconds per local tell, as the local tell benchmark measures it."""
    result = await local.tell_throughput()
    return 1e6 / float(result["value"])


BENCHMARKS: dict[str, tuple[Any, Any, str, bool]] = {
    "pipeline_payload": (payload_throughput, pipe_payload_throughput, "MiB/s", False),
    "pipeline_process_chain": (process_chain, single_hop_tell, "msg/s", True),
    "pipeline_native_chain": (native_chain, local_tell, "us", True),
}


def main(argv: list[str]) -> None:
    name, loop = argv
    subject, baseline, unit, async_baseline = BENCHMARKS[name]
    uvloop = loop == "uvloop"
    subjects: list[float] = []
    baselines: list[float] = []
    for _ in range(ROUNDS):
        baselines.append(run(baseline, use_uvloop=uvloop) if async_baseline else baseline())
        subjects.append(run(subject, use_uvloop=uvloop))
    value, base = statistics.median(subjects), statistics.median(baselines)
    print(json.dumps({"value": value, "baseline": base, "ratio": value / base, "unit": unit}))


if __name__ == "__main__":
    main(sys.argv[1:])
