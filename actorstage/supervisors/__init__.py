"""Supervisors: child specs, restart strategies, restart intensity and backoff."""

from actorstage.supervisors._spec import Backoff, ChildSpec, Restart, Strategy
from actorstage.supervisors._supervisor import ChildCount, ChildInfo, Supervisor, SupervisorRef

__all__ = [
    "Backoff",
    "ChildCount",
    "ChildInfo",
    "ChildSpec",
    "Restart",
    "Strategy",
    "Supervisor",
    "SupervisorRef",
]

for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
