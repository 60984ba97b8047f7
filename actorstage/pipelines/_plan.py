"""From a manifest to a plan: every node type found, every param typed, the graph checked."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

import msgspec

from actorstage._suggest import unknown_name
from actorstage.pipelines._config import RuntimeConfig, Settings, resolve_settings
from actorstage.pipelines._manifest import (
    Manifest,
    ManifestError,
    NodeSpec,
    Placement,
    Problem,
    find_cycle,
    valid_node_id,
)
from actorstage.pipelines._registry import RegisteredNode, lookup, registered_nodes

__all__ = ["Plan", "PlannedNode", "check_manifest"]


@dataclass(frozen=True)
class PlannedNode:
    """A node ready to start: its spec, its type and its typed params."""

    spec: NodeSpec
    node_type: RegisteredNode
    params: Any
    inputs: tuple[str, ...]  # the node ids it reads from (none: a root, fed the inputs)
    outputs: tuple[str, ...]  # the node ids it writes to (none: a leaf, its items are outputs)
    placement: Placement | None = None  # where its process runs, if not as a child of ours

    @property
    def id(self) -> str:
        return self.spec.id


@dataclass(frozen=True)
class Plan:
    """A checked manifest with its settings; nodes in manifest order."""

    manifest: Manifest
    settings: Settings
    nodes: dict[str, PlannedNode]

    @property
    def name(self) -> str:
        return self.manifest.metadata.name

    @property
    def roots(self) -> list[str]:
        return [node.id for node in self.nodes.values() if not node.inputs]

    @property
    def leaves(self) -> list[str]:
        return [node.id for node in self.nodes.values() if not node.outputs]


def _params_problem(exc: msgspec.ValidationError, where: str) -> Problem:
    message, _, path = str(exc).partition(" - at `$")
    return Problem(where + path.rstrip("`"), message)


def check_manifest(manifest: Manifest, runtime: RuntimeConfig | None = None) -> Plan:
    """The ``Plan`` of ``manifest``, or ``ManifestError`` listing every problem found.

    Checks node ids (format, duplicates), node types (naming the registered
    ones), params against each type's ``Params``, connections (missing ends,
    duplicates), cycles, the settings' ranges and the number of process nodes.
    """
    problems: list[Problem] = []
    if not manifest.metadata.name.strip():
        problems.append(Problem("metadata.name", "must not be empty"))
    settings = resolve_settings(manifest.metadata.multiprocess, runtime, problems)
    if not manifest.nodes:
        problems.append(Problem("nodes", "a pipeline needs at least one node"))
    seen: dict[str, int] = {}
    placed: dict[str, Placement | None] = {}
    typed: dict[str, tuple[NodeSpec, RegisteredNode, Any]] = {}
    known = registered_nodes()
    for index, spec in enumerate(manifest.nodes):
        where = f"nodes[{index}]"
        if not valid_node_id(spec.id):
            problems.append(Problem(f"{where}.id", f"{spec.id!r} must be 1-64 letters, digits "
                                    "or _.- (starting with a letter or digit)"))
        if spec.id in seen:
            problems.append(Problem(f"{where}.id",
                                    f"duplicate node id {spec.id!r} (also nodes[{seen[spec.id]}])"))
            continue
        seen[spec.id] = index
        entry = lookup(spec.node_type)
        if entry is None:
            problems.append(Problem(f"{where}.node_type",
                                    unknown_name("node type", spec.node_type, known)))
            continue
        try:
            params = entry.params(spec.params)
        except msgspec.ValidationError as exc:
            problems.append(_params_problem(exc, f"{where}.params"))
            continue
        typed[spec.id] = (spec, entry, params)
        if spec.placement is not None:
            placed[spec.id] = _placement(spec, where, runtime, problems)
    processes = sum(1 for spec in manifest.nodes if spec.executor == "process")
    if processes > settings.max_processes_per_session:
        problems.append(Problem(
            "nodes", f"{processes} nodes have executor \"process\", more than "
            f"max_processes_per_session ({settings.max_processes_per_session})"))
    inputs: dict[str, list[str]] = {spec.id: [] for spec in manifest.nodes}
    outputs: dict[str, list[str]] = {spec.id: [] for spec in manifest.nodes}
    pairs: dict[tuple[str, str], int] = {}
    for index, connection in enumerate(manifest.connections):
        where = f"connections[{index}]"
        ends_known = True
        for end, node_id in (("from", connection.from_), ("to", connection.to)):
            if node_id not in seen:
                problems.append(Problem(f"{where}.{end}", f"no node has the id {node_id!r}"))
                ends_known = False
        for end, port in (("from_port", connection.from_port),
                          ("to_port", connection.to_port)):
            if port not in ("default", ""):  # every node type here has one input, one output
                node_id = connection.from_ if end == "from_port" else connection.to
                problems.append(Problem(f"{where}.{end}", (
                    f"{port!r} is no {'output' if end == 'from_port' else 'input'} of node "
                    f"{node_id!r}: its only one is 'default'")))
        pair = (connection.from_, connection.to)
        if pair in pairs:
            problems.append(Problem(where, f"duplicate of connections[{pairs[pair]}] "
                                    f"({connection.from_} -> {connection.to})"))
            continue
        pairs[pair] = index
        if ends_known:
            outputs[connection.from_].append(connection.to)
            inputs[connection.to].append(connection.from_)
    cycle = find_cycle(list(seen), outputs)
    if cycle is not None:
        problems.append(Problem("connections", "the connections form a cycle: "
                                + " -> ".join(cycle)))
    if problems:
        raise ManifestError(problems)
    nodes = {
        node_id: PlannedNode(spec, entry, params, tuple(inputs[node_id]),
                             tuple(outputs[node_id]), placed.get(node_id))
        for node_id, (spec, entry, params) in typed.items()
    }
    return Plan(manifest, settings, nodes)


def _placement(spec: NodeSpec, where: str, runtime: RuntimeConfig | None,
               problems: list[Problem]) -> Placement | None:
    """The placement a node names or writes out, checked; ``None`` with the problems noted."""
    where = f"{where}.placement"
    placement = spec.placement
    if spec.executor != "process":
        problems.append(Problem(where, "only a process node is placed (executor: process)"))
        return None
    if isinstance(placement, str):
        named = runtime.placements if runtime is not None else {}
        if placement not in named:
            problems.append(Problem(where, unknown_name(
                "placement", placement, named, source="runtime.toml's [placements] has",
                advice="")))
            return None
        placement = named[placement]
    else:
        assert placement is not None
        for key in ("address", "runtime_env"):
            if getattr(placement.ray, key) is not None:
                problems.append(Problem(f"{where}.ray.{key}", (
                    "is the operator's to set: name a placement of runtime.toml "
                    "([placements.NAME.ray]) that has it")))
    ray = placement.ray
    for key in ("num_cpus", "num_gpus"):
        if getattr(ray, key) < 0:
            problems.append(Problem(f"{where}.ray.{key}", f"must be >= 0, got "
                                    f"{getattr(ray, key)!r}"))
    for name, amount in ray.resources.items():
        if amount < 0:
            problems.append(Problem(f"{where}.ray.resources.{name}",
                                    f"must be >= 0, got {amount!r}"))
    if importlib.util.find_spec("ray") is None:
        problems.append(Problem(where, "a placement on Ray needs Ray: "
                                "pip install 'actorstage[ray]'"))
    return placement
