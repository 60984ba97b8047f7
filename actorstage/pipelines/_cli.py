"""``actorstage run-pipeline MANIFEST --input FILE``: a progress bar, then a per-node table."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import msgspec

from actorstage.cli import import_modules
from actorstage.exceptions import InvalidDefinitionError
from actorstage.pipelines._audio import read_wav
from actorstage.pipelines._manifest import load_manifest
from actorstage.pipelines._pipeline import Pipeline
from actorstage.pipelines._session import NodeStats, PipelineError, PipelineSession

__all__ = ["read_inputs", "run_pipeline_command", "summary_table"]

_BAR = 30


def read_inputs(paths: list[str], stdin: BinaryIO | None = None) -> list[Any]:
    """The items of the input files (``-``: JSON lines on stdin); ``InvalidDefinitionError``
    naming a bad one."""
    items: list[Any] = []
    for name in paths:
        path = Path(name)
        suffix = ".jsonl" if name == "-" else path.suffix.lower()
        try:
            if name == "-":
                lines = (stdin or sys.stdin.buffer).read().splitlines()
                for number, line in enumerate(lines, 1):
                    if line.strip():
                        try:
                            items.append(msgspec.json.decode(line))
                        except msgspec.DecodeError as exc:
                            raise ValueError(f"line {number}: {exc}") from None
            elif suffix == ".wav":
                items.append(read_wav(path))
            elif suffix == ".json":
                items.append(msgspec.json.decode(path.read_bytes()))
            elif suffix == ".jsonl":
                for number, line in enumerate(path.read_bytes().splitlines(), 1):
                    if line.strip():
                        try:
                            items.append(msgspec.json.decode(line))
                        except msgspec.DecodeError as exc:
                            raise ValueError(f"line {number}: {exc}") from None
            else:
                items.append(path.read_bytes())
        except (OSError, ValueError, EOFError, msgspec.DecodeError) as exc:
            where = "stdin" if name == "-" else name
            raise InvalidDefinitionError(f"input {where}: {exc}") from None
    return items


def _seconds(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def summary_table(stats: dict[str, NodeStats]) -> str:
    """The per-node figures as an aligned text table."""
    head = ("node", "executor", "items in", "items out", "failed", "busy s", "mean ms",
            "max queue", "restarts")
    rows = [head] + [
        (s.node_id, s.executor, f"{s.items_in:,}", f"{s.items_out:,}", f"{s.failed:,}",
         _seconds(s.busy_seconds), f"{1000 * s.mean_seconds:.3f}", f"{s.max_queue:,}",
         str(s.restarts))
        for s in stats.values()
    ]
    widths = [max(len(row[col]) for row in rows) for col in range(len(head))]
    lines = []
    for index, row in enumerate(rows):
        cells = [cell.ljust(width) if col < 2 else cell.rjust(width)
                 for col, (cell, width) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


class _Progress:
    """One redrawn line: inputs taken by the first nodes, items out, elapsed time."""

    def __init__(self, session: PipelineSession, total: int, out: TextIO) -> None:
        self.session = session
        self.total = max(total, 1)
        self.out = out
        self.started = time.monotonic()
        self.roots = session.plan.roots

    def line(self, outputs: int) -> str:
        stats = self.session.stats()
        taken = min(stats[root].items_in + stats[root].failed for root in self.roots)
        share = min(taken / self.total, 1.0)
        filled = round(share * _BAR)
        bar = "#" * filled + "." * (_BAR - filled)
        busiest = max(stats.values(), key=lambda s: s.items_in)
        return (f"[{bar}] {100 * share:3.0f}%  inputs {taken:,}/{self.total:,}  "
                f"outputs {outputs:,}  busiest {busiest.node_id} ({busiest.items_in:,})  "
                f"{time.monotonic() - self.started:6.1f}s")

    def draw(self, outputs: int, end: str = "") -> None:
        self.out.write("\r" + self.line(outputs) + end)
        self.out.flush()


async def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from actorstage.actors._system import ActorSystem

    try:
        import_modules(args.imports)
        # (keys it does not use are named on stderr, as a warning: see Pipeline)
        pipeline = Pipeline(load_manifest(args.manifest, strict=args.strict),
                            runtime=args.runtime)
        inputs = read_inputs(args.inputs)
    except InvalidDefinitionError as exc:
        print(f"actorstage run-pipeline: {exc}", file=err)
        return 2
    show = args.progress == "always" or (args.progress == "auto" and err.isatty())
    if args.output in ("-", "", None):
        writer: BinaryIO | _TextBytes = out.buffer if hasattr(out, "buffer") else _TextBytes(out)
        own_writer = False
    else:
        try:
            writer = open(args.output, "wb")  # noqa: SIM115, ASYNC230
        except OSError as exc:
            print(f"actorstage run-pipeline: cannot write {args.output}: {exc.strerror}",
                  file=err)
            return 2
        own_writer = True
    encoder = msgspec.json.Encoder()
    count = 0
    err.write(f"pipeline {pipeline.name!r}: {len(pipeline.plan.nodes)} nodes, "
              f"{len(inputs)} input(s)\n")
    err.flush()
    try:
        async with ActorSystem(f"pipeline-{pipeline.name}") as system, \
                pipeline.session(system) as session:
            progress = _Progress(session, len(inputs), err)

            async def redraw() -> None:
                while True:
                    progress.draw(count)
                    await asyncio.sleep(0.1)

            feeder = asyncio.get_running_loop().create_task(session.feed(inputs))
            drawer = asyncio.get_running_loop().create_task(redraw()) if show else None
            try:
                async for output in session.outputs():
                    count += 1
                    writer.write(encoder.encode({"node_id": output.node_id,
                                                 "item": output.item}) + b"\n")
                    writer.flush()
            finally:
                for task in (feeder, drawer):
                    if task is not None:
                        task.cancel()
                await asyncio.wait([t for t in (feeder, drawer) if t is not None])
                if show:
                    progress.draw(count, "\n")
            result = await session.result()
    except PipelineError as exc:
        print(f"actorstage run-pipeline: failed: {exc}", file=err)
        return 1
    finally:
        if own_writer:
            writer.close()
    err.write(summary_table(result.nodes) + "\n")
    err.write(f"{count:,} output(s) in {result.duration:.2f}s, "
              f"{len(result.failures)} failed item(s)\n")
    for failure in result.failures:
        err.write(f"  failed: node {failure.node_id!r} item {failure.item_number}: "
                  f"{failure.type_name}: {failure.message}\n")
    return 0


class _TextBytes:
    """A text stream written as bytes (a test's StringIO standing in for stdout)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def write(self, data: bytes) -> int:
        return self.out.write(data.decode())

    def flush(self) -> None:
        self.out.flush()

    def close(self) -> None:
        pass


def run_pipeline_command(args: argparse.Namespace) -> int:
    from actorstage._run import run

    try:
        return run(_run, args, sys.stdout, sys.stderr)
    except KeyboardInterrupt:
        print("actorstage: interrupted", file=sys.stderr)
        return 130
