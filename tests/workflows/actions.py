"""Actions the workflow tests run (a child process imports this module by name)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import msgspec

from actorstage.workflows import Action, ActionContext, register_action


@register_action("test.greet")
class Greet(Action):
    class Params(msgspec.Struct):
        name: str = "world"

    async def execute(self, ctx: ActionContext) -> None:
        await ctx.log.info(f"greeting {self.params.name}")
        await ctx.store.put("greeting", f"hello {self.params.name}")


@register_action("test.count")
class Count(Action):
    async def execute(self, ctx: ActionContext) -> None:
        await ctx.store.put("count", ctx.store.get("count", 0, type=int) + 1)


@register_action("test.flaky")
class Flaky(Action):
    class Params(msgspec.Struct):
        succeed_on: int

    async def execute(self, ctx: ActionContext) -> None:
        if ctx.attempt < self.params.succeed_on:
            raise ConnectionError(f"attempt {ctx.attempt} failed")
        await ctx.store.put("flaky_attempts", ctx.attempt)


@register_action("test.fail")
class Fail(Action):
    class Params(msgspec.Struct):
        message: str = "failed on purpose"

    async def execute(self, ctx: ActionContext) -> None:
        raise RuntimeError(self.params.message)


@register_action("test.sleep")
class Sleep(Action):
    """Sleeps in short steps with a checkpoint after each; marks a file when cancelled."""

    class Params(msgspec.Struct):
        seconds: float
        step: float = 0.01
        marker: str = ""

    async def execute(self, ctx: ActionContext) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + self.params.seconds
        try:
            while loop.time() < end:
                await asyncio.sleep(self.params.step)
                await ctx.checkpoint()
        except asyncio.CancelledError:
            if self.params.marker:
                Path(self.params.marker).write_text("cancelled")
            raise
        await ctx.store.put("slept", self.params.seconds)


@register_action("test.emit")
class Emit(Action):
    async def execute(self, ctx: ActionContext) -> None:
        await ctx.send("custom.note", {"from": ctx.action_id})
        await ctx.store.put("temp", 1)
        await ctx.store.delete("temp")


def _make_count(params: object) -> Action:
    return Count(params)


register_action("test.count-factory")(_make_count)


@register_action("test.whoami")
class WhoAmI(Action):
    async def execute(self, ctx: ActionContext) -> None:
        await ctx.store.put("pid", os.getpid())
        await ctx.store.put("ppid", os.getppid())


@register_action("test.block")
class Block(Action):
    """Blocks its whole process (``time.sleep``), as careless synchronous code does."""

    class Params(msgspec.Struct):
        seconds: float

    async def execute(self, ctx: ActionContext) -> None:
        time.sleep(self.params.seconds)  # noqa: ASYNC251 - blocking is what it is for
