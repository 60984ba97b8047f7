"""The spawn_process workflow again, through a middleware chain.

Run it with `python examples/spawn_middleware/spawn_middleware.py`. The chain, in order:
- `Tag`, a middleware of this example: transforms each store update (it
  adds where the update came from) and drops nothing;
- `EncryptPayloads`: payloads cross from the child to the parent encrypted
  with AES-GCM (the key travels in the child's environment, never its
  command line), and are decrypted here;
- `Metrics`: counts and timings, printed at the end;
- `LogMessages`: the lifecycle hooks (spawn, child exit, error), logged
  (the messages themselves at DEBUG, not shown here).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "spawn_process"))

from flow import FLOW, verify  # the same workflow as examples/spawn_process

import actorstage
from actorstage.workflows import (
    BrokerMessage,
    EncryptPayloads,
    LogMessages,
    MessageType,
    Metrics,
    Middleware,
    Runner,
    WorkflowResult,
)


class Tag(Middleware):
    """Adds to each store update the stage and action that made it."""

    async def incoming(self, message: BrokerMessage) -> BrokerMessage | None:
        if message.message_type != MessageType.STORE_PUT:
            return message
        payload = dict(message.payload, by=f"{message.stage_id}/{message.action_id}")
        return msgspec.structs.replace(message, payload=payload)


class Wiretap(Middleware):
    """First in the chain: sees payloads as they crossed, before decryption."""

    def __init__(self) -> None:
        self.crossed: list[bytes] = []

    async def incoming(self, message: BrokerMessage) -> BrokerMessage | None:
        if isinstance(message.payload, dict) and "aesgcm" in message.payload:
            self.crossed.append(message.payload["aesgcm"])
        return message


async def run_workflow(workdir: str) -> tuple[WorkflowResult, Metrics, Wiretap]:
    metrics, wiretap = Metrics(), Wiretap()
    async with Runner() as runner:
        broker = runner.broker
        for middleware in (wiretap, EncryptPayloads(), Tag(), metrics,
                           LogMessages(level=logging.DEBUG, hooks_level=logging.INFO)):
            broker.use(middleware)

        def show(message: BrokerMessage) -> None:
            update = message.payload
            print(f"  store update ({update['by']}): {update['key']} = {update['value']!r}")

        broker.register_handler(MessageType.STORE_PUT, show)
        started = time.perf_counter()
        result = await runner.spawn(FLOW, store={"workdir": workdir})
        print(f"workflow {result.status} in {time.perf_counter() - started:.2f}s "
              "(spawn included)")
    return result, metrics, wiretap


def main() -> None:
    logging.basicConfig(format="  [hook] %(message)s", level=logging.WARNING)
    logging.getLogger("actorstage.workflows.messages").setLevel(logging.INFO)
    os.environ.setdefault("ACTORSTAGE_WORKFLOW_KEY", EncryptPayloads.generate_key())
    parent_pid = os.getpid()
    print(f"parent process {parent_pid}")
    with tempfile.TemporaryDirectory(prefix="spawn-middleware-") as workdir:
        result, metrics, wiretap = actorstage.run(run_workflow, workdir)
        checks = verify(result, parent_pid)
    checks[f"{len(wiretap.crossed)} payloads crossed encrypted"] = bool(wiretap.crossed) and all(
        b"hello" not in blob and b"written by" not in blob for blob in wiretap.crossed)
    summary = metrics.summary()
    print("metrics:")
    print(f"  messages by type: {summary['messages']}")
    print(f"  progress events:  {summary['progress']}")
    print(f"  delivery delay:   mean {summary['delivery_delay_mean_s'] * 1000:.2f} ms, "
          f"max {summary['delivery_delay_max_s'] * 1000:.2f} ms")
    for execution, figures in summary["executions"].items():
        print(f"  execution {execution[:8]}: {figures['status']} in "
              f"{figures['seconds'] * 1000:.1f} ms (in the child)")
    for check, passed in checks.items():
        print(f"{'ok  ' if passed else 'FAIL'} {check}")
    if not all(checks.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
