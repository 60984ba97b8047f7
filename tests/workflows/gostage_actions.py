"""Actions as gostage's spawn tests have them (written for actorstage): registered under
gostage-style ids, the id being what a gostage definition names."""

from __future__ import annotations

import os

from actorstage.workflows import Action, ActionContext, register_action


@register_action("spawn-test-action")
class SpawnTestAction(Action):
    """Logs, and sends two store updates by message (gostage's store_put)."""

    async def execute(self, ctx: ActionContext) -> None:
        await ctx.log.info("SpawnTestAction is executing.")
        await ctx.send("store_put", {"key": "item1", "value": "value1"})
        await ctx.send("store_put", {"key": "item2", "value": 42})
        await ctx.log.info("SpawnTestAction has finished.")


@register_action("store-modifier-action")
class StoreModifierAction(Action):
    """Changes the store itself, reads its params gostage's way (from the store)."""

    async def execute(self, ctx: ActionContext) -> None:
        await ctx.log.info("StoreModifierAction is executing.")
        await ctx.store.put("item1", "value1")
        await ctx.store.put("item2", 42)
        greeting = ctx.store.get("param:store-modifier-action:greeting")
        if greeting is not None:
            await ctx.store.put("greeting_seen", greeting)
        await ctx.log.info("StoreModifierAction has finished.")


@register_action("error-test-action")
class ErrorTestAction(Action):
    async def execute(self, ctx: ActionContext) -> None:
        await ctx.log.error("This action is designed to fail.")
        raise RuntimeError("intentional action failure")


@register_action("panic-test-action")
class PanicTestAction(Action):
    """gostage's panic: the process it runs in dies (spawned workflows only)."""

    async def execute(self, ctx: ActionContext) -> None:
        await ctx.log.info("PanicTestAction is about to panic.")
        await ctx.checkpoint()  # (the log is on its way before the end)
        os._exit(3)


@register_action("slow-test-action")
class SlowTestAction(Action):
    async def execute(self, ctx: ActionContext) -> None:
        await ctx.log.info("SlowTestAction is starting long operation.")
        await ctx.sleep(60)
