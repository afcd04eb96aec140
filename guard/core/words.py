"""How the guard says things to people: counts with the right noun, absent values in words,
and progress for anything that waits more than a second.

Every command and the status page say counts and missing values through here, so that no
output shows "1 files", "None" or "True" (issue 16).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

IRREGULAR = {"copy": "copies", "entry": "entries", "directory": "directories",
             "property": "properties", "child": "children", "alias": "aliases",
             "process": "processes", "this": "these"}


def plural(noun: str) -> str:
    """The plural of an English noun as the guard uses them ("file", "copy", "process")."""
    if noun in IRREGULAR:
        return IRREGULAR[noun]
    if noun.endswith(("s", "x", "sh", "ch")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def count(n: int, noun: str, many: str | None = None) -> str:
    """'1 file', '2 files', '0 files'; `many` for a plural `plural` gets wrong."""
    return f"{n} {noun if n == 1 else (many or plural(noun))}"


def said(value: object, absent: str = "unknown") -> str:
    """A value for a person: None as `absent` in words, booleans as yes/no."""
    if value is None or value == "":
        return absent
    if value is True:
        return "yes"
    if value is False:
        return "no"
    return str(value)


class Progress:
    """One status line for a wait: shown only on a terminal, only once the wait has lasted
    `after` seconds, rewritten in place at most every `every` seconds, and cleared at the end,
    so piped output stays exactly the command's result."""

    def __init__(self, what: str, stream: TextIO | None = None, after: float = 1.0,
                 every: float = 0.2, force: bool = False) -> None:
        self.what, self.stream = what, stream if stream is not None else sys.stderr
        self.after, self.every = after, every
        self.live = force or _is_terminal(self.stream)
        self.started = time.monotonic()
        self._last = 0.0
        self._width = 0

    def update(self, detail: str = "") -> None:
        """Say how far the wait has got (cheap to call often: most calls print nothing)."""
        if not self.live:
            return
        now = time.monotonic()
        if now - self.started < self.after or now - self._last < self.every:
            return
        self._last = now
        text = f"{self.what}: {detail}" if detail else f"{self.what} ({now - self.started:.0f} s)"
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)

    def done(self) -> None:
        """Clear the line, if one was shown."""
        if self.live and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.done()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
