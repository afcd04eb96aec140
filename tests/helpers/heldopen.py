"""Files another program holds open, as Windows reports them: a rename, replace or hard link
that fails with winerror 32 (a sync client, Explorer or an antivirus scan has the file open)
a few times, then works. Raised on any OS: the guard decides by the error, not the platform.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

import pytest

from guard.core import safepath

SHARING_VIOLATION, LOCK_VIOLATION, ACCESS_DENIED = 32, 33, 5


def held_open_error(winerror: int = SHARING_VIOLATION) -> PermissionError:
    """The PermissionError Windows raises for a file another process holds open."""
    exc = PermissionError(errno.EACCES, "The process cannot access the file because it is "
                                        "being used by another process")
    exc.winerror = winerror  # type: ignore[attr-defined]
    return exc


def failing(monkeypatch: pytest.MonkeyPatch, name: str, times: int | None,
            error: Callable[[], OSError] = held_open_error) -> list[tuple]:
    """Make `os.<name>` (as safepath calls it) raise `error()` the first `times` calls (None:
    every call), then do its work; returns the calls made, one (args) per call."""
    real = getattr(os, name)
    calls: list[tuple] = []

    def op(*args: object, **kwargs: object) -> object:
        calls.append(args)
        if times is None or len(calls) <= times:
            raise error()
        return real(*args, **kwargs)

    monkeypatch.setattr(safepath.os, name, op)
    return calls


def no_waiting(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Retries without the pauses; returns the pauses asked for (seconds)."""
    pauses: list[float] = []
    monkeypatch.setattr(safepath, "pause", pauses.append)
    return pauses
