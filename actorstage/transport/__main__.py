"""``python -m actorstage.transport``: the entry point of a child process."""

from actorstage.transport._child import child_main

child_main()
raise SystemExit(
    "python -m actorstage.transport is started by actorstage for process actors; "
    "it is not a command to run by hand"
)
