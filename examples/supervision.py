"""A supervised bank: a crashing account is restarted, its queued messages kept.

Run it with ``python examples/supervision.py``.
"""

from __future__ import annotations

import actorstage
from actorstage import (
    Actor,
    ActorCrashedError,
    ActorSystem,
    ChildSpec,
    Message,
    Strategy,
    Supervisor,
)


class Deposit(Message, frozen=True):
    amount: int


class Balance(Message, frozen=True):
    pass


class Account(Actor):
    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.balance = 0

    async def on_start(self) -> None:
        print(f"  {self.owner}: started (restart #{self.context.restarts})")

    async def receive(self, message: Deposit | Balance) -> int:
        if isinstance(message, Deposit):
            if message.amount <= 0:
                raise ValueError(f"refusing a deposit of {message.amount}")
            self.balance += message.amount
        return self.balance


async def main() -> None:
    async with ActorSystem() as system:
        bank = await system.spawn(
            Supervisor,
            name="bank",
            strategy=Strategy.ONE_FOR_ONE,
            max_restarts=3,
            within=5.0,
            children=[ChildSpec("alice", Account, ("alice",)), ChildSpec("bob", Account, ("bob",))],
        )
        alice = system.lookup("/user/bank/alice")
        assert alice is not None
        print("balance after 10:", await alice.ask(Deposit(10)))
        try:
            await alice.ask(Deposit(-5))
        except ActorCrashedError as error:
            print("crashed as expected:", error)
        # The restarted incarnation starts from a fresh state, with the same ref.
        print("balance after restart:", await alice.ask(Balance()))
        for child in bank.which_children():
            print(f"  {child.id}: {child.status}")


if __name__ == "__main__":
    actorstage.run(main)
