"""One wording for "no such name": what was asked, the closest names, and where names come from."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["unknown_name"]

_LISTED = 20


def unknown_name(kind: str, name: str, known: Iterable[str]) -> str:
    """``unknown action 'lgo'; did you mean 'log'? (registered: ...; ...)``."""
    names = sorted(known)
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    listed = ", ".join(names[:_LISTED]) or "none"
    if len(names) > _LISTED:
        listed += f" and {len(names) - _LISTED} more"
    return (f"unknown {kind} {name!r}{hint} (registered: {listed}; import the module that "
            f"registers it first: --import MODULE on the command line)")
