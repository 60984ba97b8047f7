"""Process actors: options, the child's entry point, and the bridge between processes."""

from actorstage.transport._child import child_main
from actorstage.transport._options import ProcessOptions

__all__ = ["ProcessOptions", "child_main"]

for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
