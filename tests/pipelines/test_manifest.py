"""Manifests: parsing, every validation problem at once, and where settings come from."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

import tests.pipelines.nodes  # registers the test node types
from actorstage.pipelines import (
    ManifestError,
    Pipeline,
    RuntimeConfig,
    check_manifest,
    load_manifest,
    load_runtime_config,
    parse_manifest,
)
from actorstage.pipelines._config import DEFAULTS


def doc(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "version": "v1",
        "metadata": {"name": "demo"},
        "nodes": [
            {"id": "a", "node_type": "IdentityNode"},
            {"id": "b", "node_type": "test.Tag", "params": {"tag": "x"}, "executor": "process"},
        ],
        "connections": [{"from": "a", "to": "b"}],
    }
    base.update(changes)
    return base


def problems(raw: dict[str, Any], runtime: RuntimeConfig | None = None) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        check_manifest(parse_manifest(json.dumps(raw)), runtime)
    return [str(problem) for problem in caught.value.problems]


def test_a_valid_manifest_parses_from_json_and_yaml(tmp_path: Path) -> None:
    raw = doc()
    (tmp_path / "m.json").write_text(json.dumps(raw))
    yaml_text = """
version: v1
metadata: {name: demo}
nodes:
  - {id: a, node_type: IdentityNode}
  - {id: b, node_type: test.Tag, params: {tag: x}, executor: process}
connections:
  - {from: a, to: b}
"""
    (tmp_path / "m.yaml").write_text(yaml_text)
    for name in ("m.json", "m.yaml"):
        plan = check_manifest(load_manifest(tmp_path / name))
        assert plan.roots == ["a"] and plan.leaves == ["b"]
        assert plan.nodes["b"].params.tag == "x"
        assert plan.nodes["b"].spec.executor == "process"
        assert plan.nodes["a"].outputs == ("b",)


def test_every_graph_problem_is_reported_at_once_with_its_location() -> None:
    raw = doc(
        nodes=[
            {"id": "a", "node_type": "IdentityNode"},
            {"id": "a", "node_type": "IdentityNode"},
            {"id": "b", "node_type": "Nothing.Here"},
            {"id": "c", "node_type": "test.Tag", "params": {"tag": 5}},
            {"id": "d", "node_type": "test.Tag", "params": {"tag": "t", "extra": 1}},
            {"id": "e", "node_type": "test.Double"},
            {"id": "f", "node_type": "test.Double"},
            {"id": "bad id!", "node_type": "IdentityNode"},
        ],
        connections=[
            {"from": "a", "to": "ghost"},
            {"from": "e", "to": "f"},
            {"from": "f", "to": "e"},
            {"from": "e", "to": "f"},
        ],
    )
    found = problems(raw)
    expected = [
        "nodes[1].id: duplicate node id 'a' (also nodes[0])",
        "nodes[2].node_type: unknown node type 'Nothing.Here' (registered: ",
        "nodes[3].params.tag: Expected `str`, got `int`",
        "nodes[4].params: Object contains unknown field `extra`",
        "nodes[7].id: 'bad id!' must be 1-64 letters",
        "connections[0].to: no node has the id 'ghost'",
        "connections[3]: duplicate of connections[1] (e -> f)",
        "connections: the connections form a cycle: e -> f -> e",
    ]
    assert len(found) == len(expected), found
    for want, got in zip(expected, found, strict=True):
        assert got.startswith(want), (want, got)
    assert "AudioChunkerNode" in found[1] and "registered: " in found[1]  # names them


def test_structural_problems_are_all_reported_with_their_place() -> None:
    raw = {
        "version": "v2",
        "metadata": {"name": "x", "multiprocess": {"channel_capacity": "many"}},
        "nodes": [{"id": "a"}, {"id": "b", "node_type": "IdentityNode", "executor": "gpu"}],
        "connections": [{"from": "a"}],
        "extra": 1,
    }
    with pytest.raises(ManifestError) as lenient:  # unknown keys are kept, not problems
        parse_manifest(json.dumps(raw))
    assert len(lenient.value.problems) == 5
    assert not any(str(problem).startswith("extra") for problem in lenient.value.problems)
    with pytest.raises(ManifestError) as caught:
        parse_manifest(json.dumps(raw), strict=True)
    found = [str(problem) for problem in caught.value.problems]
    assert found[0].startswith("extra: unknown key")
    assert 'version: must be "v1", got \'v2\'' in found
    assert any(p.startswith("metadata.multiprocess.channel_capacity: Expected `int | null`")
               for p in found), found
    assert any(p.startswith("nodes[0]: Object missing required field `node_type`")
               for p in found), found
    assert any(p.startswith("nodes[1].executor: Expected `'native' | 'process'`")
               or p.startswith("nodes[1].executor: Invalid enum value 'gpu'") for p in found), found
    assert any(p.startswith("connections[0]: Object missing required field `to`")
               for p in found), found
    assert "invalid pipeline manifest (6 problems)" in str(caught.value)


def test_bad_text_and_bad_files_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="not valid JSON"):
        parse_manifest("{nope")
    with pytest.raises(ManifestError, match="not valid YAML"):
        parse_manifest("a: [1", format="yaml")
    with pytest.raises(ManifestError, match="a manifest is a mapping"):
        parse_manifest("[1, 2]")
    with pytest.raises(ManifestError, match=r"(?s)m\.txt: .*ends in \.json, \.yaml or \.yml"):
        load_manifest(tmp_path / "m.txt")
    with pytest.raises(ManifestError, match="cannot read the file"):
        load_manifest(tmp_path / "missing.json")


def test_limits_out_of_range_and_too_many_processes_are_problems() -> None:
    settings = {"channel_capacity": 0, "init_timeout_secs": -1, "max_node_restarts": 5000,
                "memory_limit_bytes": 10, "max_processes_per_session": 1}
    raw = doc(metadata={"name": "", "multiprocess": settings}, nodes=[
        {"id": "a", "node_type": "IdentityNode", "executor": "process"},
        {"id": "b", "node_type": "IdentityNode", "executor": "process"},
    ])
    found = problems(raw)
    assert found == [
        "metadata.name: must not be empty",
        "metadata.multiprocess.channel_capacity: must be between 1 and 1e+06, got 0",
        "metadata.multiprocess.init_timeout_secs: must be between 0.001 and 3600, got -1.0",
        "metadata.multiprocess.memory_limit_bytes: must be >= 1.04858e+06, got 10",
        "metadata.multiprocess.max_node_restarts: must be between 0 and 1000, got 5000",
        'nodes: 2 nodes have executor "process", more than max_processes_per_session (1)',
    ]


def test_an_empty_pipeline_and_an_invalid_manifest_start_nothing() -> None:
    assert problems(doc(nodes=[], connections=[])) == [
        "nodes: a pipeline needs at least one node"]
    with pytest.raises(ManifestError):
        Pipeline(parse_manifest(json.dumps(doc(nodes=[{"id": "a", "node_type": "Nope"}],
                                                   connections=[]))))


_VALUES: dict[str, tuple[Any, Any]] = {  # key: (runtime.toml value, manifest value)
    "max_processes_per_session": (5, 7),
    "channel_capacity": (11, 13),
    "init_timeout_secs": (2.5, 3.5),
    "enable_backpressure": (False, True),
    "cleanup_grace_period_secs": (1.5, 2.5),
    "memory_limit_bytes": (2 * 1024 * 1024, 3 * 1024 * 1024),
    "shared_memory_threshold_bytes": (2048, 4096),
    "on_node_crash": ("continue", "fail"),
    "max_node_restarts": (1, 2),
}


@pytest.mark.parametrize("key", sorted(_VALUES))
def test_each_setting_comes_from_the_manifest_then_runtime_toml_then_the_default(
    key: str, tmp_path: Path
) -> None:
    from_runtime, from_manifest = _VALUES[key]
    toml = tmp_path / "runtime.toml"
    toml.write_text(f"{key} = {json.dumps(from_runtime)}\n")
    runtime = load_runtime_config(toml)
    plain = doc(metadata={"name": "demo"})
    assert getattr(check_manifest(parse_manifest(json.dumps(plain))).settings, key) \
        == DEFAULTS[key]
    settings = check_manifest(parse_manifest(json.dumps(plain)), runtime).settings
    assert getattr(settings, key) == from_runtime
    assert settings.sources[key] == "runtime.toml"
    overridden = doc(metadata={"name": "demo", "multiprocess": {key: from_manifest}})
    settings = check_manifest(parse_manifest(json.dumps(overridden)), runtime).settings
    assert getattr(settings, key) == from_manifest
    assert settings.sources[key] == "manifest"


def test_the_python_executable_comes_from_manifest_runtime_venv_or_this_interpreter(
    tmp_path: Path
) -> None:
    plain = parse_manifest(json.dumps(doc()))
    assert check_manifest(plain).settings.python_executable == sys.executable
    toml = tmp_path / "runtime.toml"
    toml.write_text('venv = "envs/nodes"\nimport_paths = ["lib"]\nimports = ["json"]\n')
    runtime = load_runtime_config(toml)
    settings = check_manifest(plain, runtime).settings
    assert settings.python_executable == str(tmp_path / "envs/nodes/bin/python")
    assert settings.import_paths == (str(tmp_path / "lib"),)
    assert settings.imports == ("json",)
    toml.write_text('venv = "envs/nodes"\npython_executable = "/opt/py/bin/python3"\n')
    runtime = load_runtime_config(toml)
    assert check_manifest(plain, runtime).settings.python_executable == "/opt/py/bin/python3"
    mine = doc(metadata={"name": "d", "multiprocess": {"python_executable": "/usr/bin/python3"}})
    settings = check_manifest(parse_manifest(json.dumps(mine)), runtime).settings
    assert settings.python_executable == "/usr/bin/python3"
    assert settings.sources["python_executable"] == "manifest"


def test_a_bad_runtime_toml_names_the_file_and_the_key(tmp_path: Path) -> None:
    toml = tmp_path / "runtime.toml"
    toml.write_text("channel_capacity = 'x'\n")
    with pytest.raises(ManifestError,
                       match=r"(?s)runtime\.toml: invalid runtime config.*channel_capacity"):
        load_runtime_config(toml)
    toml.write_text("colour = 1\n")
    with pytest.raises(ManifestError, match="unknown field `colour`"):
        load_runtime_config(toml)
    toml.write_text("= broken")
    with pytest.raises(ManifestError, match="not valid TOML"):
        load_runtime_config(toml)
    toml.write_text("channel_capacity = 0\n")
    raw = parse_manifest(json.dumps(doc()))
    with pytest.raises(ManifestError, match=r"runtime\.toml: channel_capacity: must be between"):
        check_manifest(raw, load_runtime_config(toml))


def test_runtime_imports_register_node_types_before_the_check(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "extra_nodes_mod.py").write_text(
        "from actorstage.pipelines import Node, register_node\n"
        "@register_node('extra.Echo')\n"
        "class Echo(Node):\n"
        "    async def process(self, item):\n"
        "        return item\n")
    toml = tmp_path / "runtime.toml"
    toml.write_text('import_paths = ["lib"]\nimports = ["extra_nodes_mod"]\n')
    raw = parse_manifest(json.dumps(doc(nodes=[{"id": "a", "node_type": "extra.Echo"}],
                                        connections=[])))
    try:
        pipeline = Pipeline(raw, runtime=toml)
        assert pipeline.plan.nodes["a"].node_type.module == "extra_nodes_mod"
    finally:
        sys.path.remove(str(lib))


def test_a_taken_node_type_name_is_refused_and_the_same_class_may_register_again() -> None:
    from actorstage.exceptions import InvalidDefinitionError
    from actorstage.pipelines import register_node
    from tests.pipelines.nodes import Double

    assert register_node("test.Double")(Double) is Double  # a module imported twice
    with pytest.raises(InvalidDefinitionError, match=(
            r"node type 'test.Double' is already registered for tests.pipelines.nodes.Double")):
        register_node("test.Double")(tests.pipelines.nodes.Tag)  # another class, same name


def test_a_node_placement_is_named_in_runtime_toml_or_written_out_and_checked(
        tmp_path: Path) -> None:
    toml = tmp_path / "runtime.toml"
    toml.write_text('[placements.gpu.ray]\naddress = "127.0.0.1:6379"\nnum_gpus = 1\n'
                    'resources = {accelerator = 0.5}\nruntime_env = {env_vars = {A = "1"}}\n')
    runtime = load_runtime_config(toml)
    nodes = [
        {"id": "named", "node_type": "IdentityNode", "executor": "process", "placement": "gpu"},
        {"id": "written", "node_type": "IdentityNode", "executor": "process",
         "placement": {"ray": {"num_cpus": 2, "resources": {"big": 1},
                               "scheduling_strategy": "SPREAD"}}},
        {"id": "native", "node_type": "IdentityNode"},
    ]
    plan = check_manifest(parse_manifest(json.dumps(doc(nodes=nodes, connections=[]))), runtime)
    named, written = plan.nodes["named"].placement, plan.nodes["written"].placement
    assert named is not None and named.ray.address == "127.0.0.1:6379"
    assert named.ray.num_gpus == 1 and named.ray.resources == {"accelerator": 0.5}
    assert written is not None and written.ray.num_cpus == 2
    assert written.ray.scheduling_strategy == "SPREAD" and written.ray.address is None
    assert plan.nodes["native"].placement is None

    wrong = [
        {"id": "a", "node_type": "IdentityNode", "placement": "gpu"},
        {"id": "b", "node_type": "IdentityNode", "executor": "process", "placement": "gpus"},
        {"id": "c", "node_type": "IdentityNode", "executor": "process",
         "placement": {"ray": {"address": "10.0.0.1:6379", "runtime_env": {"pip": ["x"]},
                               "num_cpus": -1}}},
    ]
    assert problems(doc(nodes=wrong, connections=[]), runtime) == [
        "nodes[0].placement: only a process node is placed (executor: process)",
        "nodes[1].placement: unknown placement 'gpus'; did you mean 'gpu'? (runtime.toml's "
        "[placements] has: gpu)",
        "nodes[2].placement.ray.address: is the operator's to set: name a placement of "
        "runtime.toml ([placements.NAME.ray]) that has it",
        "nodes[2].placement.ray.runtime_env: is the operator's to set: name a placement of "
        "runtime.toml ([placements.NAME.ray]) that has it",
        "nodes[2].placement.ray.num_cpus: must be >= 0, got -1.0",
    ]
    with pytest.raises(ManifestError, match=r"nodes\[0\]\.placement: Object contains unknown "
                                            r"field `kubernetes`"):
        parse_manifest(json.dumps(doc(connections=[], nodes=[
            {"id": "a", "node_type": "IdentityNode", "executor": "process",
             "placement": {"kubernetes": {}}}])))
