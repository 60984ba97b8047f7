"""Process actors: options, the child's entry point, and the bridge between processes."""

from actorstage.transport._child import child_main, join_main
from actorstage.transport._options import ProcessOptions
from actorstage.transport._placement import JoinPlacement
from actorstage.transport._ray import RayPlacement
from actorstage.transport._tls import TreeTls

__all__ = ["JoinPlacement", "ProcessOptions", "RayPlacement", "TreeTls", "child_main",
           "join_main"]

for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
