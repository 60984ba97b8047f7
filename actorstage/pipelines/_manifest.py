"""Pipeline manifests (v1): msgspec Structs, loaded from JSON or YAML, checked all at once.

No ``from __future__ import annotations`` here: the Structs are re-exported
from ``actorstage.pipelines`` under that module name, so msgspec must not
have to look their annotations up by name later.
"""

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import msgspec

from actorstage._documents import DocumentError, load
from actorstage.exceptions import InvalidDefinitionError

__all__ = [
    "Connection",
    "Manifest",
    "ManifestError",
    "Metadata",
    "MultiprocessSettings",
    "NodeSpec",
    "Placement",
    "Problem",
    "RaySpec",
    "load_manifest",
    "parse_manifest",
]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class MultiprocessSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The manifest's ``metadata.multiprocess`` block; every key is optional.

    A key left out takes its value from ``runtime.toml``, then from the
    built-in default (see ``Settings``).
    """

    max_processes_per_session: int | None = None
    channel_capacity: int | None = None
    init_timeout_secs: float | None = None
    python_executable: str | None = None
    enable_backpressure: bool | None = None
    cleanup_grace_period_secs: float | None = None
    memory_limit_bytes: int | None = None
    shared_memory_threshold_bytes: int | None = None
    on_node_crash: Literal["fail", "continue"] | None = None
    max_node_restarts: int | None = None


class Metadata(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The manifest's ``metadata``: a name, and optionally the multiprocess settings."""

    name: str
    description: str = ""
    multiprocess: MultiprocessSettings | None = None


class RaySpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a process node asks of a Ray cluster: ``RayPlacement``'s arguments, by the same
    names (``scheduling_strategy`` by Ray's names for its plain strategies).

    ``address`` and ``runtime_env`` are the operator's: runtime.toml's named placements
    may set them, a manifest may not (a runtime environment installs and runs code).
    """

    address: str | None = None
    num_cpus: float = 1
    num_gpus: float = 0
    resources: dict[str, float] = msgspec.field(default_factory=dict)
    runtime_env: dict[str, Any] | None = None
    scheduling_strategy: Literal["DEFAULT", "SPREAD"] | None = None


class Placement(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where a process node's process runs, other than as a child of this one: on a Ray
    cluster (``ray``), the only kind there is."""

    ray: RaySpec


class NodeSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One node: its id, its registered type, its params and where it runs.

    Attributes:
        id: Unique in the manifest: 1-64 letters, digits or ``_.-``.
        node_type: The name given to ``@register_node``.
        params: Checked against the node type's ``Params`` before anything starts.
        executor: ``"native"`` runs the node in this process; ``"process"`` in
            a child process of its own.
        placement: For a process node, where its process runs: the name of one of
            runtime.toml's ``placements``, or one written here (``{"ray": {...}}``).
            Left out, it is a child process of this one.
    """

    id: str
    node_type: str
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    executor: Literal["native", "process"] = "native"
    placement: str | Placement | None = None


class Connection(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A bounded channel from one node's outputs to another node's inputs.

    ``from_port``/``to_port`` (RemoteMedia's keys) name the node's output and
    input; every node type here has one of each, ``"default"``.
    """

    from_: str = msgspec.field(name="from")
    to: str
    from_port: str = "default"
    to_port: str = "default"


class Manifest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A pipeline: nodes and the connections between them (``version: "v1"``).

    ``unused``: the keys this version does not use (other systems' manifests have
    many), by their place such as ``nodes[2].is_streaming``, kept as they were;
    ``warnings()`` names them.
    """

    version: Literal["v1"]
    metadata: Metadata
    nodes: list[NodeSpec]
    connections: list[Connection] = msgspec.field(default_factory=list)
    unused: dict[str, Any] = msgspec.field(default_factory=dict, name="x-unused")

    def warnings(self) -> list["Problem"]:
        """One ``Problem`` per key kept but not used."""
        return [Problem(place, "not used by actorstage (kept as it is)")
                for place in self.unused]


class Problem(msgspec.Struct, frozen=True):
    """One thing wrong with a manifest, and where: ``nodes[2].params``."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class ManifestError(InvalidDefinitionError):
    """A manifest that cannot run; ``problems`` lists every problem found, each with its place."""

    def __init__(self, problems: Iterable[Problem], source: str = "",
                 kind: str = "pipeline manifest") -> None:
        self.problems = list(problems)
        self.source = source
        count = len(self.problems)
        head = f"{source}: " if source else ""
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(
            f"{head}invalid {kind} ({count} problem{'s' if count != 1 else ''}):\n"
            f"{lines}")


def valid_node_id(text: object) -> bool:
    return isinstance(text, str) and _ID.match(text) is not None


def _converted(raw: Any, cls: type[Any], where: str, problems: list[Problem],
               unused: dict[str, Any] | None = None) -> Any:
    """``raw`` as ``cls``, or ``None`` with the problem recorded under ``where``.

    Keys ``cls`` does not have are kept in ``unused`` (by place), or, without it
    (strict), are one problem each; nested mappings (a node's ``params``) are not
    looked into.
    """
    if isinstance(raw, dict) and msgspec.structs.fields(cls):
        known = {field.encode_name for field in msgspec.structs.fields(cls)}
        kept = {key: value for key, value in raw.items() if key not in known}
        if kept:
            if unused is None:
                problems.extend(Problem(f"{where}.{key}", f"unknown key; known: "
                                                          f"{sorted(known)}") for key in kept)
            else:
                unused.update({f"{where}.{key}": value for key, value in kept.items()})
            raw = {key: value for key, value in raw.items() if key in known}
    try:
        return msgspec.convert(raw, cls)
    except msgspec.ValidationError as exc:
        text = str(exc)
        message, _, path = text.partition(" - at `$")
        location = where + path.rstrip("`")
        problems.append(Problem(location, message))
        return None


def _shape(raw: Any, problems: list[Problem], strict: bool = False) -> Manifest | None:
    """The Structs of a decoded document; one problem per bad element, not just the first.

    Keys actorstage does not use are kept in ``Manifest.unused``; ``strict``: they are
    problems instead.
    """
    if not isinstance(raw, dict):
        problems.append(Problem("", f"a manifest is a mapping, got {type(raw).__name__}"))
        return None
    unused: dict[str, Any] | None = None if strict else {}
    known = {"version", "metadata", "nodes", "connections"}
    for key in raw:
        if key not in known:
            if unused is None:
                problems.append(Problem(str(key), f"unknown key; a manifest has "
                                                  f"{sorted(known)}"))
            else:
                unused[str(key)] = raw[key]
    for key in ("version", "metadata", "nodes"):
        if key not in raw:
            problems.append(Problem(key, "missing"))
    version = raw.get("version")
    if "version" in raw and version != "v1":
        problems.append(Problem("version", f"must be \"v1\", got {version!r}"))
    metadata = _converted(raw["metadata"], Metadata, "metadata", problems, unused) \
        if "metadata" in raw else None
    nodes: list[NodeSpec] = []
    raw_nodes = raw.get("nodes", [])
    if not isinstance(raw_nodes, list):
        problems.append(Problem("nodes", f"must be a list, got {type(raw_nodes).__name__}"))
        raw_nodes = []
    for index, item in enumerate(raw_nodes):
        if isinstance(item, dict) and "node_type" not in item and "nodeType" in item:
            problems.append(Problem(f"nodes[{index}].node_type", (
                "missing; this node spells it `nodeType`, which RemoteMedia's own parser "
                "refuses too: write `node_type`")))
            continue
        node = _converted(item, NodeSpec, f"nodes[{index}]", problems, unused)
        if node is not None:
            nodes.append(node)
    connections: list[Connection] = []
    raw_connections = raw.get("connections", [])
    if not isinstance(raw_connections, list):
        problems.append(Problem(
            "connections", f"must be a list, got {type(raw_connections).__name__}"))
        raw_connections = []
    for index, item in enumerate(raw_connections):
        connection = _converted(item, Connection, f"connections[{index}]", problems, unused)
        if connection is not None:
            connections.append(connection)
    if problems or metadata is None:
        return None
    return Manifest(version="v1", metadata=metadata, nodes=nodes, connections=connections,
                    unused=unused or {})


def _decode(data: bytes | str, format: str) -> Any:
    try:
        return load(data, format, "the manifest")
    except DocumentError as exc:
        raise ManifestError([Problem("", str(exc))]) from None


def parse_manifest(data: bytes | str, *, format: Literal["json", "yaml"] = "json",
                   strict: bool = False) -> Manifest:
    """A ``Manifest`` from JSON or YAML text.

    Raises ``ManifestError`` listing every structural problem (missing keys,
    wrong types), each with its location. Keys actorstage does not use (such
    as RemoteMedia's ``is_streaming`` or ``metadata.category``) are kept in
    ``manifest.unused`` and named by ``manifest.warnings()``; ``strict``: they
    are problems too. Node types, params, connections, cycles and limits are
    checked by ``check_manifest``, which ``Pipeline`` runs before anything starts.
    """
    problems: list[Problem] = []
    manifest = _shape(_decode(data, format), problems, strict)
    if manifest is None:
        raise ManifestError(problems)
    return manifest


def load_manifest(path: str | Path, *, strict: bool = False) -> Manifest:
    """A ``Manifest`` from a ``.json``, ``.yaml`` or ``.yml`` file (``strict``: as in
    ``parse_manifest``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise ManifestError([Problem(
            "", f"a manifest file ends in .json, .yaml or .yml, not {suffix or 'nothing'!r}")],
            str(path))
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ManifestError([Problem("", f"cannot read the file: {exc}")], str(path)) from None
    try:
        return parse_manifest(data, format="json" if suffix == ".json" else "yaml",
                              strict=strict)
    except ManifestError as exc:
        raise ManifestError(exc.problems, str(path)) from None


def find_cycle(nodes: list[str], edges: dict[str, list[str]]) -> list[str] | None:
    """One cycle of the graph as a path of node ids (first == last), or ``None``."""
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(nodes, white)
    for start in nodes:
        if color[start] != white:
            continue
        color[start] = grey
        stack: list[tuple[str, int]] = [(start, 0)]
        while stack:
            node, index = stack[-1]
            targets = edges.get(node, [])
            if index == len(targets):
                color[node] = black
                stack.pop()
                continue
            stack[-1] = (node, index + 1)
            target = targets[index]
            if color.get(target) == grey:
                path = [name for name, _ in stack]
                return [*path[path.index(target):], target]
            if color.get(target) == white:
                color[target] = grey
                stack.append((target, 0))
    return None
