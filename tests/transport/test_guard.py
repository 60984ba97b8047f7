"""The guard process: what its owner told it holds even if the owner dies at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.transport.helpers import alive


def test_an_owner_that_dies_before_its_guard_runs_still_has_its_files_removed(
        tmp_path: Path) -> None:
    doomed = tmp_path / "actorstage-doomed"
    script = textwrap.dedent(f"""
        import asyncio, os
        from actorstage.transport._guard import Guard

        async def main():
            os.mkdir({str(doomed)!r})
            guard = Guard()
            await guard.start()
            guard.remove_dir({str(doomed)!r})
            print(guard.pid, flush=True)
            os._exit(0)  # before the guard's interpreter has even started

        asyncio.run(main())
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=30, check=True)
    guard = int(done.stdout.strip())
    deadline = time.monotonic() + 10
    while (doomed.exists() or alive(guard)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not doomed.exists()
    assert not alive(guard)
