"""The CNCF Serverless Workflow DSL 1.x, run by actorstage: every task an actor.

``parse_definition(text)`` reads and checks a definition (every problem at
once, each with its JSON pointer); ``await execute(definition, input)`` runs
it and returns its output, or raises ``WorkflowError`` with the DSL's error.
Every task kind runs (``call`` over http, openapi and grpc; ``run`` shell and
script only where the runner allows them; ``emit``/``listen`` over an
in-process ``EventBus``), with the DSL's data flow, schemas and flow. A
``Runner`` (``actorstage.workflows``) runs a ``Definition`` as it runs a
stages workflow: in this process or in a child process, with progress
events, pause, resume and cancel.
"""

from actorstage.serverless._bus import EventBus, default_bus
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
    "EventBus",
    "ExpressionError",
    "Run",
    "Task",
    "WorkflowError",
    "default_bus",
    "execute",
    "is_serverless",
    "parse_definition",
]

for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
