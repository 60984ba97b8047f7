"""``actorstage run-pipeline``: a real command on a real WAV file, and its errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.pipelines.helpers import EXAMPLE, speech_example

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = EXAMPLE / "manifest.json"
make_recording = speech_example().make_recording
BURSTS = speech_example().BURSTS


def command(*args: str, stdin: str = "", cwd: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "actorstage", "run-pipeline", *args],
                          capture_output=True, text=True, timeout=60, env=env, check=False,
                          input=stdin, cwd=cwd)


def test_run_pipeline_shows_progress_and_a_table_and_writes_the_outputs(tmp_path: Path) -> None:
    wav, out = tmp_path / "speech.wav", tmp_path / "out.jsonl"
    make_recording(wav)
    done = command(str(MANIFEST), "--input", str(wav), "--output", str(out),
                   "--progress", "always")
    assert done.returncode == 0, done.stderr
    assert "[##############################] 100%  inputs 1/1  outputs 1" in done.stderr
    assert done.stdout == ""  # the outputs went to --output; what is for people, to stderr
    lines = [line for line in done.stderr.splitlines()  # (text mode made each \r a newline)
             if line and not line.startswith("[")]  # less the progress line's redraws
    assert lines[0] == "pipeline 'speech-report': 5 nodes, 1 input(s)"
    assert lines[1].split() == ["node", "executor", "items", "in", "items", "out", "failed",
                                "busy", "s", "mean", "ms", "max", "queue", "restarts"]
    rows = {line.split()[0]: line.split() for line in lines[3:8]}
    assert rows["chunker"][:4] == ["chunker", "native", "1", "200"]
    assert rows["resample"][:4] == ["resample", "process", "200", "200"]
    assert rows["vad"][:4] == ["vad", "process", "200", "2"]
    assert lines[8].startswith("1 output(s) in ") and lines[8].endswith("0 failed item(s)")
    [record] = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["node_id"] == "report"
    found = [(round(s["start"], 2), round(s["end"], 2)) for s in record["item"]]
    assert found == BURSTS


def test_run_pipeline_reads_json_lines_and_reports_bad_input_and_manifests(
    tmp_path: Path
) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text("version: v1\nmetadata: {name: m}\nnodes:\n"
                        "  - {id: map, node_type: JsonMapperNode, params: {fields: {n: a}}}\n")
    items = tmp_path / "items.jsonl"
    items.write_text('{"a": 1}\n{"a": 2}\n')
    done = command(str(manifest), "--input", str(items), "--progress", "never")
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == [  # stdout by default
        {"node_id": "map", "item": {"n": 1}}, {"node_id": "map", "item": {"n": 2}}]
    assert "2 output(s)" in done.stderr
    items.write_text('{"a": 1}\n{"b": 2}\n')
    done = command(str(manifest), "--input", str(items))
    assert done.returncode == 1
    assert "failed: node 'map' failed on its item 2: KeyError" in done.stderr
    items.write_text("{oops\n")
    done = command(str(manifest), "--input", str(items))
    assert done.returncode == 2 and "items.jsonl: line 1:" in done.stderr
    manifest.write_text("version: v1\nmetadata: {name: m}\nnodes: [{id: a, node_type: Nope}]\n")
    done = command(str(manifest), "--input", str(items))
    assert done.returncode == 2
    assert "nodes[0].node_type: unknown node type 'Nope'" in done.stderr
    assert "did you mean" not in done.stderr and "--import MODULE" in done.stderr


def test_run_pipeline_reads_stdin_writes_stdout_and_imports_from_the_current_directory(
    tmp_path: Path
) -> None:
    (tmp_path / "my_nodes.py").write_text(
        "from actorstage.pipelines import Node, register_node\n"
        "@register_node('MyTriple')\n"
        "class Triple(Node):\n"
        "    async def process(self, item):\n"
        "        return item * 3\n")
    manifest = tmp_path / "m.yaml"
    manifest.write_text("version: v1\nmetadata: {name: m}\nnodes:\n"
                        "  - {id: t, node_type: MyTriple}\n")
    done = command(str(manifest), "--input", "-", "--output", "-", "--import", "my_nodes",
                   "--progress", "never", stdin="1\n2\n\n5\n", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["item"] for line in done.stdout.splitlines()] == [3, 6, 15]
    assert not (tmp_path / "-").exists()
    manifest.write_text("version: v1\nmetadata: {name: m}\nnodes:\n"
                        "  - {id: t, node_type: MyTripel}\n")
    done = command(str(manifest), "--input", "-", "--import", "my_nodes", stdin="1\n",
                   cwd=tmp_path)
    assert done.returncode == 2
    assert "unknown node type 'MyTripel'; did you mean 'MyTriple'?" in done.stderr
    done = command(str(manifest), "--input", "-", "--import", "no_such_module", cwd=tmp_path)
    assert done.returncode == 2
    assert "cannot import 'no_such_module': ModuleNotFoundError" in done.stderr


def test_the_guides_command_line_runs_on_the_recording_the_example_leaves(
    tmp_path: Path
) -> None:
    example = subprocess.run(
        [sys.executable, str(EXAMPLE / "speech_report.py"), "--keep", str(tmp_path)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert example.returncode == 0, example.stderr
    assert (tmp_path / "speech.wav").exists() and (tmp_path / "report.json").exists()
    done = command(str(MANIFEST), "--input", "speech.wav", "--output", "out.jsonl",
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [record] = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(record["item"]) == len(BURSTS)
