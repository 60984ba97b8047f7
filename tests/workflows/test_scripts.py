"""A program whose actions live in its own __main__ script spawns a workflow with them."""

from __future__ import annotations

from pathlib import Path

from tests.transport.test_scripts import _run_script


def test_actions_defined_in_the_main_script_run_in_a_spawned_workflow(tmp_path: Path) -> None:
    proc = _run_script("""
        import os
        import actorstage
        from actorstage.workflows import (
            Action, ActionDef, Runner, StageDef, WorkflowDef, register_action)

        @register_action("script.where")
        class Where(Action):
            async def execute(self, ctx):
                await ctx.store.put("pid", os.getpid())

        async def main():
            flow = WorkflowDef(id="w", stages=[StageDef(id="s", actions=[
                ActionDef(id="a", action="script.where")])])
            async with Runner() as runner:
                result = await runner.spawn(flow)
            print(result.status, result.store["pid"] != os.getpid())

        if __name__ == "__main__":
            actorstage.run(main)
    """, tmp_path)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.strip() == "succeeded True"
