"""Every python example in README.md, docs/ and examples/ runs; the reference covers the API."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import actorstage
import actorstage.pipelines
import actorstage.service
import actorstage.web
import actorstage.workflows

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def doc_blocks() -> list[tuple[str, str]]:
    blocks = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for number, match in enumerate(FENCE.finditer(path.read_text()), 1):
            blocks.append((f"{path.relative_to(ROOT)}#{number}", match.group(1)))
    return blocks


def run_python(args: list[str], where: str) -> None:
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=60, cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"{where} failed:\n{done.stdout}\n{done.stderr}"


@pytest.mark.parametrize(("where", "code"), doc_blocks(), ids=[b[0] for b in doc_blocks()])
def test_doc_example_runs(where: str, code: str) -> None:
    run_python(["-c", code], where)


EXAMPLES = sorted((ROOT / "examples").rglob("*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[str(p.relative_to(ROOT)) for p in EXAMPLES])
def test_example_runs(path: Path) -> None:
    run_python([str(path)], str(path.relative_to(ROOT)))


def test_there_are_examples_to_run() -> None:
    assert len(doc_blocks()) >= 8
    assert EXAMPLES


def test_the_reference_names_every_public_object() -> None:
    reference = (ROOT / "docs" / "reference.md").read_text()
    names = [*actorstage.__all__, *actorstage.workflows.__all__, *actorstage.service.__all__,
             *actorstage.pipelines.__all__, *actorstage.web.__all__]
    missing = [name for name in names if f"`{name}" not in reference]
    assert not missing, f"docs/reference.md does not describe {missing}"
