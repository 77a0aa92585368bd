"""Registered names as users type them: one case-insensitive match, or the closest names.

``--method SSCL`` means ``sscl`` (names are lower case, labels are not), and ``--method simclr``
should answer "did you mean simsiam?" in one line instead of a traceback. Every registry and the
CLI's early check use this one function, so the answer reads the same everywhere.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from bench.core.errors import BenchError


class UnknownName(BenchError, KeyError):
    """A name no registry holds. A ``KeyError`` too, for callers that treat unknown names so."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


def match_name(
    name: str, known: Iterable[str], what: str = "method", hint: str = "`bench list` shows them"
) -> str:
    """``name`` itself, or the one known name equal to it ignoring case; else :class:`UnknownName`."""
    names = sorted(set(known))
    if name in names:
        return name
    folded = [n for n in names if n.casefold() == name.casefold()]
    if len(folded) == 1:
        return folded[0]
    close = difflib.get_close_matches(name.casefold(), [n.casefold() for n in names], n=3, cutoff=0.45)
    by_fold = {n.casefold(): n for n in names}
    suggestion = f"did you mean {' or '.join(by_fold[c] for c in close)}? " if close else ""
    raise UnknownName(f"unknown {what} {name!r}; {suggestion}registered: {', '.join(names)} ({hint})")
