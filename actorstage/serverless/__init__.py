"""The CNCF Serverless Workflow DSL 1.x, run by actorstage: every task an actor.

``parse_definition(text)`` reads and checks a definition (every problem at
once, each with its JSON pointer); ``await execute(definition, input)`` runs
it and returns its output, or raises ``WorkflowError`` with the DSL's error.
Runs so far: ``set``, ``do``, ``switch``, ``for``, ``try`` (catch, retry), ``fork``
(branches, compete), ``call: http``, ``raise``, ``wait``, with
the DSL's data flow (``input.from``, ``output.as``, ``export.as``,
``$context`` and the other arguments) and flow (``if``, ``then``).
"""

from actorstage.serverless._definition import (
    Definition,
    DefinitionError,
    Task,
    is_serverless,
    parse_definition,
)
from actorstage.serverless._expressions import ExpressionError
from actorstage.serverless._runtime import Cancelled, Run, WorkflowError, execute

__all__ = [
    "Cancelled",
    "Definition",
    "DefinitionError",
    "ExpressionError",
    "Run",
    "Task",
    "WorkflowError",
    "execute",
    "is_serverless",
    "parse_definition",
]

for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
