"""Giving memory back: after a full pass over a large store, the freed memory of its listings
and of SQLite's transactions stays in the C allocator's free lists, counted in the daemon's
resident size (several MB at 50,000 runs; issue 16's footprint). glibc's `malloc_trim` hands
it back to the system; elsewhere this does nothing."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger("guard.daemon")

_trim = None
if sys.platform.startswith("linux"):
    try:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _trim = getattr(_libc, "malloc_trim", None)  # glibc only (not musl)
    except OSError:
        _trim = None


def give_back() -> bool:
    """Return the allocator's free memory to the system; True if it could be asked to."""
    if _trim is None:
        return False
    try:
        _trim(0)
    except Exception as exc:  # never let housekeeping fail the daemon
        log.debug("malloc_trim failed: %s", exc)
        return False
    return True
