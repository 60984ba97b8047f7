"""The generated protobuf code is current: regenerating it changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
        and path != root / "__init__.py"  # (written by hand: `make protos` keeps it)
    }


def test_committed_proto_code_matches_a_fresh_generation(tmp_path: Path) -> None:
    source = ROOT / "actorstage" / "protos"
    protos = sorted(str(path.relative_to(source)) for path in source.rglob("*.proto"))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", ".",
         f"--python_betterproto2_out={tmp_path}",
         "--python_betterproto2_opt=client_generation=async,server_generation=async",
         f"--descriptor_set_out={tmp_path / 'descriptors.binpb'}", "--include_imports", *protos],
        cwd=source, env=env, check=True, capture_output=True,
    )
    fresh, committed = _files(tmp_path), _files(ROOT / "actorstage" / "_proto")
    assert fresh.keys() == committed.keys(), "run `make protos`: the generated files differ"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"run `make protos`: {stale} would change"
