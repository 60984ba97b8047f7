"""Every python example in README.md, docs/ and examples/ runs; the reference covers the API."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import actorstage
import actorstage.observer
import actorstage.pipelines
import actorstage.serverless
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
def test_doc_example_runs(where: str, code: str, tmp_path: Path) -> None:
    script = tmp_path / "example.py"  # a script, as a reader would save it (child processes
    script.write_text(code)           # import it to find the actors defined in it)
    run_python([str(script)], where)


def test_no_runnable_python_hides_in_text_blocks() -> None:
    """A block that is Python a reader can run is marked python (and so run above).

    (Client fragments that need a running service are marked ``py``; tests/interop runs
    the same recipes against a real server.)"""
    text_fence = re.compile(r"^```text\n(.*?)^```", re.S | re.M)
    hidden = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for match in text_fence.finditer(path.read_text()):
            body = match.group(1)
            if re.search(r"^(import |from \S+ import |async def |class \w+\(|await |@\w)",
                         body, re.M):
                hidden.append(f"{path.relative_to(ROOT)}: {body.splitlines()[0]}")
    assert not hidden, f"Python marked as text: {hidden}"


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
             *actorstage.pipelines.__all__, *actorstage.web.__all__,
             *actorstage.serverless.__all__, *actorstage.observer.__all__]
    missing = [name for name in names if f"`{name}" not in reference]
    assert not missing, f"docs/reference.md does not describe {missing}"


def test_the_workflows_guide_yaml_is_the_same_definition_as_its_python() -> None:
    from actorstage.workflows import WorkflowDef, parse_workflow

    guide = (ROOT / "docs" / "guides" / "workflows.md").read_text()
    yaml_text = re.search(r"^```yaml\n(.*?)^```", guide, re.S | re.M)
    python = FENCE.search(guide)
    assert yaml_text is not None and python is not None
    flow = re.search(r"^FLOW = (WorkflowDef\(.*?^\]\))", python.group(1), re.S | re.M)
    assert flow is not None
    from actorstage.workflows import ActionDef, StageDef

    expected = eval(flow.group(1), {"WorkflowDef": WorkflowDef, "StageDef": StageDef,
                                    "ActionDef": ActionDef})
    assert parse_workflow(yaml_text.group(1), format="yaml") == expected


def test_the_serverless_guide_definitions_are_valid() -> None:
    """Every definition the Serverless Workflow guide shows passes the definition checks."""
    from actorstage.serverless import parse_definition

    guide = (ROOT / "docs" / "guides" / "serverless.md").read_text()
    blocks = re.findall(r"^```yaml\n(.*?)^```", guide, re.S | re.M)
    assert len(blocks) == 14  # one per task kind (call: http, openapi and grpc)
    for block in blocks:
        assert parse_definition(block).tasks, block
