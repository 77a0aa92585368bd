"""Registered names as users type them: one case-insensitive match, or the closest names.

``--method SSCL`` means ``sscl`` (names are lower case, labels are not), and ``--method simclr``
should answer "did you mean simsiam?" in one line instead of a traceback. Every registry and the
CLI's early check use this one function, so the answer reads the same everywhere.

Names also become file names (weights, locks, journals, exports), so every registry, ``--study``,
the MLflow experiment and ``--label`` are checked here, at registration or parse time, against one
rule each (:func:`check_name`, :func:`check_label`): a plugin named ``../../x`` or ``team/recon``
is refused in one line before it can write outside ``BENCH_HOME``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from typing import Any

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


#: Every name that becomes part of a path (weights, digests, locks, journals, exports: registry names
#: of methods, protocols and backbones; tune studies; MLflow experiments): lower-case letters,
#: digits, ``_ . -``, starting with a letter or digit, at most 64 characters. No separator, no
#: ``..``, no leading dot (a hidden file), nothing a shell or a file system reads specially.
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
#: Labels (table columns, legends; user's ``--label``) may hold capitals, spaces and punctuation,
#: but no path separator or control character, and are at most 64 characters.
LABEL_FORBIDDEN = re.compile(r"[/\\\x00-\x1f\x7f]")
NAME_RULE = "lower-case letters, digits, '_', '.', '-', starting with a letter or digit, at most 64"


def check_name(name: object, what: str, *, any_case: bool = False) -> str:
    """``name`` when it fits :data:`NAME_PATTERN` (``any_case``: capitals allowed, for user-chosen
    study and experiment names); else a one-line :class:`BenchError` naming it and the rule."""
    text = name if isinstance(name, str) else ""
    if NAME_PATTERN.fullmatch(text.lower() if any_case else text) and ".." not in text:
        return text
    rule = NAME_RULE.replace("lower-case letters", "letters") if any_case else NAME_RULE
    raise BenchError(f"{what} name {name!r} is not allowed: names become file names ({rule})")


def check_label(label: object, what: str) -> str:
    """``label`` stripped, when it is a non-empty one-line text of at most 64 characters with no path
    separator; else a one-line :class:`BenchError`."""
    text = label.strip() if isinstance(label, str) else ""
    if not text or len(text) > 64 or LABEL_FORBIDDEN.search(text) or text in (".", ".."):
        raise BenchError(
            f"{what} label {label!r} is not allowed: 1 to 64 characters, no '/', '\\\\' or control "
            "characters (labels name table columns and files)"
        )
    return text


def clash(candidate: str, taken: Mapping[str, str]) -> str | None:
    """The entry of ``taken`` (``{what it is: text}``) equal to ``candidate`` ignoring case, if any:
    ``SSCL`` beside ``sscl`` would be two columns for one name, or one column for two methods."""
    folded = candidate.casefold()
    return next((who for who, text in taken.items() if text.casefold() == folded), None)


class RegistrationError(BenchError, ValueError):
    """A method, protocol or backbone (usually a plugin's) that cannot be registered; one line
    naming it and why (a ``ValueError`` too, for callers that caught the registries' old errors)."""


def refuse_taken(kind: str, name: str, where: str, registered: Mapping[str, Any], cls: object) -> None:
    """Refuse ``name`` for ``cls`` when another entry of ``registered`` holds it, ignoring case
    (``SSCL`` beside ``sscl``): one line naming both owners."""
    others = {n: c for n, c in registered.items() if c is not cls}
    owner = others.get(name) or others.get(clash(name, {n: n for n in others}) or "")
    if owner is not None:
        raise RegistrationError(
            f"{kind} {name!r} ({where}) is already registered (as {owner.name!r} by "
            f"{owner.__module__}); names are unique ignoring case: choose another"
        )
