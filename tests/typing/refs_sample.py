# ruff: noqa: E501
"""Checked by mypy in test_typed_refs.py, never run: each `# reveal:` and `# error:`
comment says what mypy must say about its line (and nothing else may be said)."""

from __future__ import annotations

from typing import Any, reveal_type

from actorstage import Actor, ActorRef, ActorSystem, Message, ProcessOptions, Supervisor


class Ping(Message, frozen=True):
    pass


class Pong(Message, frozen=True):
    pass


class Result(Message, frozen=True):
    value: int


class Job(Message, frozen=True):
    number: int
    reply_to: ActorRef[Result, None]  # a ref in a message keeps its types


class Echo(Actor):
    def __init__(self, start: int, *, label: str = "") -> None:
        self.count = start

    async def receive(self, message: Ping | Pong) -> int:
        self.count += 1
        return self.count


class Collector(Actor):
    async def receive(self, message: Result) -> None:
        pass


class Worker(Actor):
    async def receive(self, message: Job) -> None:
        await message.reply_to.tell(Result(message.number * 2))
        await message.reply_to.tell(Ping())  # error: arg-type
        child = await self.context.spawn(Echo, 1, name="echo")
        reveal_type(child)  # reveal: actorstage.actors._ref.ActorRef[tests.typing.refs_sample.Ping | tests.typing.refs_sample.Pong, builtins.int]


class Anything(Actor):
    async def receive(self, message: Any) -> Any:
        return message


class Inherited(Actor):
    pass


async def main(system: ActorSystem) -> None:
    echo = await system.spawn(Echo, 1)
    reveal_type(echo)  # reveal: actorstage.actors._ref.ActorRef[tests.typing.refs_sample.Ping | tests.typing.refs_sample.Pong, builtins.int]
    reveal_type(await echo.ask(Ping()))  # reveal: builtins.int
    await echo.tell(Pong())
    echo.tell_nowait(Ping())
    await echo.tell("ping")  # error: arg-type
    await echo.ask(Result(1))  # error: arg-type
    await system.spawn(Echo, "1")  # error: arg-type
    await system.spawn(Echo)  # error: call-arg, arg-type
    await system.spawn(Echo, 1, 2)  # error: call-arg, arg-type
    await system.spawn(Echo, 1, name="e", mailbox_size=10, process=True)
    await system.spawn(Echo, 1, process=ProcessOptions(transport="unix"))
    await system.spawn(Echo, 1, label="x")
    await system.spawn(Echo, 1, lable="x")  # error: call-arg
    await system.spawn(Echo, start=1, label="x", name="both")  # (mixed: not checked)

    collector = await system.spawn(Collector)
    worker = await system.spawn(Worker)
    await worker.tell(Job(1, collector))
    await worker.tell(Job(1, echo))  # error: arg-type

    narrower: ActorRef[Ping, int] = echo  # takes Ping: so does echo
    wider: ActorRef[Ping | str, int] = echo  # error: assignment
    reply: ActorRef[Ping | Pong, object] = echo

    reveal_type(await system.spawn(Anything))  # reveal: actorstage.actors._ref.ActorRef[Any, Any]
    reveal_type(await system.spawn(Inherited))  # reveal: actorstage.actors._ref.ActorRef[Any, Any]
    reveal_type(await system.spawn(Supervisor))  # reveal: actorstage.supervisors._supervisor.SupervisorRef
    found = system.lookup("/user/echo")
    reveal_type(found)  # reveal: actorstage.actors._ref.ActorRef[Any, Any] | None
    del narrower, wider, reply
