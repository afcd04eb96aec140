"""Writes the disk refuses: the reason in words, what to do, and the retry spacing."""

from __future__ import annotations

import errno

import pytest

from guard.core.writefaults import RETRY_FIRST, RETRY_MAX, hold_reason, holds, retry_delay


@pytest.mark.parametrize("code, words, todo", [
    (errno.ENOSPC, "store full", "free space on its disk"),
    (errno.EDQUOT, "store over its disk quota", "raise the quota"),
    (errno.EROFS, "store read-only", "mount it read-write"),
    (errno.EACCES, "no permission to write in the store", "write access"),
    (errno.EPERM, "no permission to write in the store", "write access"),
])
def test_refused_writes_hold_with_the_reason_and_what_to_do(code, words, todo):
    exc = OSError(code, "msg", "/s/0/meta.yaml")
    reason = hold_reason(exc, "store")
    assert holds(exc)
    assert reason is not None and reason.startswith(words)
    assert "/s/0/meta.yaml" in reason and todo in reason
    assert reason.endswith(todo)
    assert hold_reason(exc, "store", "then run it again") == f"{reason}; then run it again"


def test_other_errors_do_not_hold():
    assert hold_reason(OSError(errno.EIO, "I/O error"), "store", "x") is None
    assert hold_reason(ValueError("no"), "store", "x") is None
    assert not holds(FileNotFoundError(errno.ENOENT, "gone"))
    assert hold_reason(OSError(errno.ENOSPC, "full"), "state folder") == \
        "state folder full (full); free space on its disk"


def test_retry_delay_doubles_from_the_first_up_to_the_most():
    assert [retry_delay(n) for n in range(1, 6)] == [RETRY_FIRST, 20, 40, RETRY_MAX, RETRY_MAX]
    assert retry_delay(0) == RETRY_FIRST
