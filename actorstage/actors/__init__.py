"""Actors, refs, the actor system, messages and timers."""

from actorstage.actors._actor import Actor, Context
from actorstage.actors._deadletters import DeadLetters, DeadLetterSubscription
from actorstage.actors._message import DeadLetter, ExitReason, Message, Terminated
from actorstage.actors._ref import ActorRef
from actorstage.actors._system import ActorSystem
from actorstage.actors._timers import Timer
from actorstage.actors._tree import ActorStatus, TreeNode

__all__ = [
    "Actor",
    "ActorRef",
    "ActorStatus",
    "ActorSystem",
    "Context",
    "DeadLetter",
    "DeadLetterSubscription",
    "DeadLetters",
    "ExitReason",
    "Message",
    "Terminated",
    "Timer",
    "TreeNode",
]

for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
