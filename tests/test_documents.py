"""Untrusted definitions: too deep, alias bombs, not UTF-8, and fuzzed input of every shape."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actorstage import InvalidDefinitionError
from actorstage._documents import LIMITS, DocumentError, load
from actorstage.pipelines import ManifestError, parse_manifest
from actorstage.transport._codec import FrameError, decode_frame, unpack
from actorstage.workflows import parse_workflow

DEEP_JSON = "[" * 50_000
DEEP_YAML = "".join("  " * depth + "-\n" for depth in range(500))
# Nine levels of ten aliases each: 10^9 leaves once expanded, a few hundred bytes written.
BOMB = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 10)}]\n" for level in range(1, 9))


@pytest.mark.parametrize(("text", "fmt"), [(DEEP_JSON, "json"), (DEEP_YAML, "yaml"),
                                           (DEEP_JSON, "yaml")])
def test_a_deeply_nested_workflow_is_refused_naming_the_limit(text: str, fmt: str) -> None:
    with pytest.raises(InvalidDefinitionError, match=f"more than {LIMITS.max_depth} deep"):
        parse_workflow(text, format=fmt)  # type: ignore[arg-type]


def test_deep_params_inside_a_workflow_are_refused_too() -> None:
    params = {"value": json.loads("[" * 60 + "]" * 60)}
    text = json.dumps({"id": "w", "stages": [{"id": "s", "actions": [
        {"id": "a", "action": "log", "params": {"nested": [params]}}]}]})
    with pytest.raises(InvalidDefinitionError, match="deep"):
        parse_workflow(text)


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_a_deeply_nested_manifest_is_a_manifest_error_not_a_recursion_error(fmt: str) -> None:
    with pytest.raises(ManifestError, match=f"more than {LIMITS.max_depth} deep"):
        parse_manifest(DEEP_JSON if fmt == "json" else DEEP_YAML, format=fmt)  # type: ignore[arg-type]


def test_a_yaml_alias_bomb_is_refused_before_it_is_expanded() -> None:
    with pytest.raises(InvalidDefinitionError, match=r"expands to \d+ YAML nodes through its"):
        parse_workflow(BOMB, format="yaml")
    with pytest.raises(ManifestError, match="aliases"):
        parse_manifest(BOMB, format="yaml")


def test_too_many_aliases_are_refused_even_when_each_expands_little() -> None:
    text = "a: &a 1\nb: [" + ", ".join(["*a"] * (LIMITS.max_aliases + 1)) + "]\n"
    with pytest.raises(DocumentError, match=f"more than {LIMITS.max_aliases} YAML aliases"):
        load(text, "yaml", "the document")


def test_a_few_aliases_still_work() -> None:
    assert load("a: &x [1, 2]\nb: *x\n", "yaml", "the document") == {"a": [1, 2], "b": [1, 2]}


def test_bytes_that_are_not_utf8_are_named() -> None:
    with pytest.raises(InvalidDefinitionError, match=r"not valid UTF-8: byte 0xff at offset 8"):
        parse_workflow(b'{"id": "\xff", "stages": []}')
    with pytest.raises(ManifestError, match="not valid UTF-8"):
        parse_manifest(b"version: v1\nnodes: [\xfe]\n", format="yaml")


def test_a_document_over_the_size_limit_is_refused_unread() -> None:
    text = " " * (LIMITS.max_bytes + 1)
    with pytest.raises(DocumentError, match=f"more than the limit of {LIMITS.max_bytes} bytes"):
        load(text, "json", "the document")


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = json.dumps({"id": "w", "name": "[" * 1000, "stages": [{"id": "s", "actions": [
        {"id": "a", "action": "log", "params": {"message": "{" * 1000}}]}]})
    assert parse_workflow(text).name == "[" * 1000


# -- fuzzing: whatever the input, a clear error or a correct result ---------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30)
_fuzz = settings(max_examples=300, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])


@_fuzz
@given(st.one_of(st.binary(max_size=400), st.text(max_size=400).map(str.encode),
                 _json_values.map(lambda value: json.dumps(value).encode())),
       st.sampled_from(["json", "yaml"]))
def test_fuzzed_workflow_definitions_give_a_definition_or_a_clear_error(
    data: bytes, fmt: str,
) -> None:
    try:
        parse_workflow(data, format=fmt)  # type: ignore[arg-type]
    except InvalidDefinitionError as exc:
        assert str(exc)  # noqa: PT017


@_fuzz
@given(st.one_of(st.binary(max_size=400), st.text(max_size=400).map(str.encode),
                 _json_values.map(lambda value: json.dumps(value).encode()),
                 _json_values.map(lambda value: json.dumps(
                     {"version": "v1", "nodes": value, "connections": []}).encode())),
       st.sampled_from(["json", "yaml"]))
def test_fuzzed_manifests_give_a_manifest_or_a_manifest_error(data: bytes, fmt: str) -> None:
    try:
        parse_manifest(data, format=fmt)  # type: ignore[arg-type]
    except ManifestError as exc:
        assert exc.problems  # noqa: PT017


@_fuzz
@given(st.binary(max_size=600))
def test_fuzzed_bridge_frames_decode_or_raise_frame_error(data: bytes) -> None:
    try:
        _envelopes, packed = decode_frame(data)
        if packed:
            unpack(packed)
    except FrameError as exc:
        assert str(exc)  # noqa: PT017
