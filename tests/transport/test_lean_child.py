"""A cold child imports what its bridge needs, and no more: not pydantic (which
betterproto2 would import whenever it is installed), and not the runner's and the
pipelines' protobuf messages. betterproto2 still treats pydantic messages as it would."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("pydantic")  # (what is left out is only worth checking when installed)

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ["pydantic", "pydantic.dataclasses", "actorstage._proto.actorstage.v1"]


def _python(code: str, tmp_path: Path) -> list[str]:
    """Run ``code`` in a fresh interpreter; its stdout's lines."""
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(code))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_a_process_actor_s_child_imports_neither_pydantic_nor_the_runner_s_messages(
    tmp_path: Path,
) -> None:
    out = _python(f"""
        import sys
        import actorstage
        from actorstage import Actor, ActorSystem

        class Modules(Actor):
            async def receive(self, names):
                return [name for name in names if name in sys.modules]

        async def main():
            async with ActorSystem() as system:
                ref = await system.spawn(Modules, process=True)
                print(await ref.ask({HEAVY!r}))
                print(await ref.ask(["actorstage._proto.actorstage.bridge.v1"]))

        if __name__ == "__main__":
            actorstage.run(main)
    """, tmp_path)
    assert out == ["[]", "['actorstage._proto.actorstage.bridge.v1']"]


def test_pydantic_messages_are_validated_when_actorstage_imported_betterproto2_first(
    tmp_path: Path,
) -> None:
    out = _python("""
        import sys
        from actorstage._proto.actorstage.bridge.v1 import Envelope, Hello

        envelope = Envelope(hello=Hello(secret="s", pid=7, token="t"))
        assert Envelope.parse(bytes(envelope)) == envelope
        print("pydantic" in sys.modules)

        import betterproto2
        import pydantic
        from pydantic.dataclasses import dataclass

        @dataclass(eq=False, repr=False)
        class Point(betterproto2.Message):
            x: int = betterproto2.field(1, betterproto2.TYPE_INT32)

        point = Point(x=3)
        print(Point.parse(bytes(point)).x, point._is_pydantic(), envelope._is_pydantic())
        point.x = "three"
        try:
            bytes(point)  # betterproto2 validates a pydantic message before writing it
        except pydantic.ValidationError:
            print("refused")
        Point.__pydantic_validator__  # (pydantic's own, untouched)
    """, tmp_path)
    assert out == ["False", "3 True False", "refused"]


def test_betterproto2_is_imported_as_usual_when_another_thread_runs(tmp_path: Path) -> None:
    out = _python("""
        import sys, threading
        stop = threading.Event()
        thread = threading.Thread(target=stop.wait)
        thread.start()
        import actorstage._proto.actorstage.bridge.v1
        import betterproto2
        print("pydantic" in sys.modules, betterproto2.pydantic is sys.modules["pydantic"])
        stop.set()
        thread.join()
    """, tmp_path)
    assert out == ["True True"]
