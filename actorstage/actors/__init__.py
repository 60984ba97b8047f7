"""Actors, refs, the actor system, messages and timers."""

from actorstage.actors._actor import Actor, Context
from actorstage.actors._deadletters import DeadLetters, DeadLetterSubscription
from actorstage.actors._message import DeadLetter, ExitReason, Message, Terminated
from actorstage.actors._ref import ActorRef
from actorstage.actors._subscription import Subscription
from actorstage.actors._system import ActorSystem
from actorstage.actors._timers import Timer
from actorstage.actors._tree import ActorStatus, TreeEvent, TreeEvents, TreeNode

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
    "Subscription",
    "Terminated",
    "Timer",
    "TreeEvent",
    "TreeEvents",
    "TreeNode",
]

for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
