"""The actions of the durability tests: each writes a line to a journal file when it runs,
so that a test can tell which actions ran, and how often, across a killed runner."""

from __future__ import annotations

from pathlib import Path

import msgspec

from actorstage.workflows import Action, ActionContext, register_action


@register_action("durable.mark")
class Mark(Action):
    """Appends ``name attempt_key`` to ``journal``, puts ``name`` in the store, and sleeps
    ``seconds`` (running time: a pause holds it, a crash keeps what is left)."""

    class Params(msgspec.Struct):
        journal: str
        name: str
        seconds: float = 0.0

    async def execute(self, ctx: ActionContext) -> None:
        _append(Path(self.params.journal), f"{self.params.name} {ctx.attempt_key}\n")
        await ctx.store.put(self.params.name, ctx.store.get("count", 0, type=int) + 1)
        await ctx.store.put("count", ctx.store.get("count", 0, type=int) + 1)
        if self.params.seconds:
            await ctx.sleep(self.params.seconds)


def _append(path: Path, line: str) -> None:
    with path.open("a") as journal:  # (a line, at once: the test reads it after a kill)
        journal.write(line)
