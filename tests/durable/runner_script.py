"""A durable runner in a process of its own, for the tests to kill (SIGKILL) and restart.

    python -m tests.durable.runner_script STATE start|recover WORKFLOW_JSON [--process]
        [--pause-after SECONDS]

``start`` starts WORKFLOW_JSON as execution "e1" (in a child process with --process);
``recover`` only recovers. Either way it prints "ready" once running, then each event
kind as it comes, and "done STATUS STORE_JSON" at the end of e1.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import msgspec

from actorstage.serverless import parse_definition
from actorstage.workflows import BrokerMessage, ProgressEvent, Runner, WorkflowDef
from tests.durable import actions  # noqa: F401 - registers durable.mark


async def main(state: str, mode: str, workflow: str, process: bool, pause_after: float
               ) -> None:
    async with Runner(state=state) as runner:
        paused = asyncio.Event()

        def show(message: BrokerMessage) -> None:
            if isinstance(message.payload, ProgressEvent):
                event = message.payload
                if event.kind == "workflow_paused":
                    paused.set()
                print("event", message.seq, event.kind, event.action_id or event.task,
                      flush=True)

        runner.broker.register_handler("*", show)
        if mode == "start":
            raw = json.loads(workflow)
            defn: Any = parse_definition(raw) if "document" in raw else \
                msgspec.convert(raw, WorkflowDef)
            execution = await runner.start(defn, execution_id="e1", store={"given": 1},
                                           process=process or None)
        else:
            execution = next(iter(runner._running))
        print("ready", execution.pid or 0, flush=True)
        if pause_after:
            await asyncio.sleep(pause_after)
            await execution.pause()
            await paused.wait()  # the workflow_paused event, then written
            assert runner.state is not None
            await runner.state.flush()
            print("written: paused", flush=True)
        result = await execution.result()
        print("done", result.status, json.dumps(result.store, sort_keys=True), flush=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    pause = float(args[args.index("--pause-after") + 1]) if "--pause-after" in args else 0.0
    asyncio.run(main(args[0], args[1], args[2] if len(args) > 2 else "{}",
                     "--process" in args, pause))
