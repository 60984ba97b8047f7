"""How long closing takes while work runs: ``python -m benchmarks.closing``.

Not a target of ``make bench`` (the tests hold generous bounds); the figures
are quoted in docs/guides/workflows.md. Each line is the median and the
worst of 5 closes, each with a 60-second ``sleep`` action running.
"""

from __future__ import annotations

import asyncio
import time

from actorstage import ActorSystem, ProcessOptions, run
from actorstage.workflows import ActionDef, Runner, StageDef, WorkflowDef

FLOW = WorkflowDef(id="long", stages=[StageDef(id="s", actions=[
    ActionDef(id="nap", action="sleep", params={"seconds": 60})])])


def _line(what: str, times: list[float]) -> str:
    times = sorted(times)
    median, worst = times[len(times) // 2] * 1000, times[-1] * 1000
    return f"{what:<48} median {median:7.1f} ms   worst {worst:7.1f} ms"


async def main() -> None:
    for process in (None, ProcessOptions()):
        times = []
        for _ in range(5):
            async with Runner() as runner:
                await runner.start(FLOW, process=process)
                await asyncio.sleep(0.3)
                began = time.perf_counter()
            times.append(time.perf_counter() - began)
        print(_line(f"leaving Runner(), {'spawned' if process else 'inline'} execution", times))
    times = []
    for _ in range(5):
        async with ActorSystem() as system:
            await Runner(system).start(FLOW)
            await asyncio.sleep(0.3)
            began = time.perf_counter()
        times.append(time.perf_counter() - began)
    print(_line("leaving the ActorSystem under a Runner(system)", times))
    times = []
    async with Runner() as runner:
        for _ in range(5):
            execution = await runner.start(FLOW)
            await asyncio.sleep(0.3)
            began = time.perf_counter()
            await execution.cancel()
            await execution.result()
            times.append(time.perf_counter() - began)
    print(_line("execution.cancel() to its result", times))


if __name__ == "__main__":
    run(main)
