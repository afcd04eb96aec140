"""Writes the file system refuses for a while: a full disk, a quota, a read-only mount, no
permission. A part that meets one does not die: it is held, with the reason in words and what
to do, tries again now and then, and resumes by itself once a write succeeds. Pure."""

from __future__ import annotations

import errno

RETRY_FIRST = 10.0  # seconds before the first retry of a held part
RETRY_MAX = 60.0

_WHAT = {
    errno.ENOSPC: ("{where} full", "free space on its disk"),
    errno.EROFS: ("{where} read-only", "mount it read-write"),
    errno.EACCES: ("no permission to write in the {where}",
                   "give the guard's user write access"),
    errno.EPERM: ("no permission to write in the {where}",
                  "give the guard's user write access"),
}
if hasattr(errno, "EDQUOT"):
    _WHAT[errno.EDQUOT] = ("{where} over its disk quota", "free space or raise the quota")


def holds(exc: BaseException) -> bool:
    """Whether an error is one of those that pass when someone fixes the disk."""
    return isinstance(exc, OSError) and exc.errno in _WHAT


def hold_reason(exc: BaseException, where: str, then: str = "") -> str | None:
    """"store full (writing X: No space left on device); free space on its disk" (and
    `then`, what follows) for a refused write, None for any other error. `where`: "store",
    "state folder". Status adds that a held part resumes by itself."""
    if not isinstance(exc, OSError) or exc.errno not in _WHAT:
        return None
    what, todo = _WHAT[exc.errno]
    target = f"writing {exc.filename}: " if exc.filename else ""
    reason = f"{what.format(where=where)} ({target}{exc.strerror or exc}); {todo}"
    return f"{reason}; {then}" if then else reason


def retry_delay(failures: int, first: float = RETRY_FIRST, most: float = RETRY_MAX) -> float:
    """Seconds before the next attempt after `failures` refused attempts in a row (1, 2...)."""
    return min(most, first * 2 ** max(0, failures - 1))
