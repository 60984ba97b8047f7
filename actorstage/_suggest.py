"""One wording for "no such name": what was asked, the closest names, and where names come from."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["unknown_name"]

_LISTED = 20


_IMPORT = "import the module that registers it first: --import MODULE on the command line"


def unknown_name(kind: str, name: str, known: Iterable[str], *,
                 source: str = "registered", advice: str = _IMPORT) -> str:
    """``unknown action 'lgo'; did you mean 'log'? (registered: ...; ...)``: ``source``
    says where the names listed come from, ``advice`` how to add one (may be empty)."""
    names = sorted(known)
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    listed = ", ".join(names[:_LISTED]) or "none"
    if len(names) > _LISTED:
        listed += f" and {len(names) - _LISTED} more"
    return f"unknown {kind} {name!r}{hint} ({source}: {listed}{'; ' + advice if advice else ''})"
