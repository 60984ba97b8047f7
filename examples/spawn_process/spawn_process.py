"""A workflow in a child process: three actions, store updates watched live, results checked.

Run it with `python examples/spawn_process/spawn_process.py`. The actions and the
checks live in `flow.py`, next to this script.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

from flow import FLOW, verify

import actorstage
from actorstage.workflows import BrokerMessage, MessageType, Runner, WorkflowResult


async def run_workflow(workdir: str) -> WorkflowResult:
    """Spawn the workflow, printing each store update as it arrives."""
    async with Runner() as runner:
        def show(message: BrokerMessage) -> None:
            update = message.payload
            print(f"  store update from {message.stage_id}/{message.action_id}: "
                  f"{update['key']} = {update['value']!r}")

        runner.broker.register_handler(MessageType.STORE_PUT, show)
        started = time.perf_counter()
        result = await runner.spawn(FLOW, store={"workdir": workdir})
        print(f"workflow {result.status} in {time.perf_counter() - started:.2f}s "
              "(spawn included)")
    return result


def main() -> None:
    parent_pid = os.getpid()
    print(f"parent process {parent_pid}")
    with tempfile.TemporaryDirectory(prefix="spawn-process-") as workdir:
        result = actorstage.run(run_workflow, workdir)
        for stage in result.stages:
            for action in stage.actions:
                print(f"  {stage.id}/{action.id}: {action.status} in "
                      f"{action.duration * 1000:.1f} ms")
        checks = verify(result, parent_pid)
    for check, passed in checks.items():
        print(f"{'ok  ' if passed else 'FAIL'} {check}")
    if not all(checks.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
