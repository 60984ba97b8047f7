"""Typed refs, checked the way a user's code is: mypy --strict on a sample file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

SAMPLE = Path(__file__).with_name("refs_sample.py")


def _expected() -> set[str]:
    expected = set()
    for number, line in enumerate(SAMPLE.read_text().splitlines(), 1):
        comment = re.search(r"# (reveal|error): (.+)$", line)
        if comment is None:
            continue
        kind, what = comment.groups()
        if kind == "reveal":
            what = what.replace("builtins.", "")  # (mypy's versions differ)
            expected.add(f"{number}: note: Revealed type is \"{what}\"")
        else:
            expected.update(f"{number}: error: [{code.strip()}]" for code in what.split(","))
    return expected


def _said(output: str) -> set[str]:
    said = set()
    for line in output.splitlines():
        found = re.match(r"[^:]*refs_sample\.py:(\d+): (error|note): (.*)$", line)
        if found is None:
            continue
        number, kind, text = found.groups()
        if kind == "note" and text.startswith("Revealed type"):
            said.add(f"{number}: note: {text.replace('builtins.', '')}")
        elif kind == "error":
            code = re.search(r"\[([a-z-]+)\]$", text)
            said.add(f"{number}: error: [{code.group(1) if code else text}]")
    return said


@pytest.mark.timeout(300)
def test_mypy_strict_infers_refs_from_receive_and_rejects_wrong_messages(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    api = pytest.importorskip("mypy.api")
    monkeypatch.chdir(SAMPLE.parents[2])  # the sample is the module tests.typing.refs_sample
    output, errors, _status = api.run([
        "--strict", "--no-error-summary", "--show-error-codes", "--hide-error-context",
        "--config-file", "",
        "--cache-dir", str(tmp_path / "cache"), str(SAMPLE.relative_to(SAMPLE.parents[2]))])
    assert not errors, errors
    said, expected = _said(output), _expected()
    assert said == expected, (
        f"mypy said, unexpectedly: {sorted(said - expected)}\n"
        f"and did not say: {sorted(expected - said)}\n{output}")
