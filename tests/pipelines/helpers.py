"""Building manifests in tests, and the example pipeline's module."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio

from actorstage.pipelines import Pipeline, parse_manifest
from actorstage.testing import wait_until

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pipeline_audio"


@cache
def speech_example() -> ModuleType:
    """``examples/pipeline_audio/speech_report.py``, loaded as a module (not a package)."""
    spec = importlib.util.spec_from_file_location("speech_report", EXAMPLE / "speech_report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def manifest_doc(nodes: list[dict[str, Any]], connections: Sequence[tuple[str, str]] = (),
                 **settings: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "test"}
    if settings:
        metadata["multiprocess"] = settings
    return {"version": "v1", "metadata": metadata, "nodes": nodes,
            "connections": [{"from": a, "to": b} for a, b in connections]}


def pipeline(nodes: list[dict[str, Any]], connections: Sequence[tuple[str, str]] = (),
             **settings: Any) -> Pipeline:
    return Pipeline(parse_manifest(json.dumps(manifest_doc(nodes, connections, **settings))))


def node(node_id: str, node_type: str, executor: str = "native", **params: Any) -> dict[str, Any]:
    return {"id": node_id, "node_type": node_type, "executor": executor, "params": params}


def chain(node_type: str, count: int, executor: str = "native",
          **settings: Any) -> Pipeline:
    nodes = [node(f"n{index}", node_type, executor) for index in range(count)]
    links = [(f"n{index}", f"n{index + 1}") for index in range(count - 1)]
    return pipeline(nodes, links, **settings)


async def until(condition: Callable[[], bool]) -> None:
    """``wait_until`` with a deadline: a failing test fails, it does not hang."""
    with anyio.fail_after(20):
        await wait_until(condition)
