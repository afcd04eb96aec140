"""Times: how the guard writes durations for people (45s, 3m 05s, 2h 03m, 1d 2h 03m), and how
it reads the epoch-millisecond times MLflow's meta.yaml files hold."""

from __future__ import annotations

import math


def ms(value: object) -> int | None:
    """An epoch-milliseconds time from a meta.yaml, or None when there is none.

    MLflow writes ints; a float (a hand edit, another writer) counts, truncated to whole
    milliseconds, so such a file is neither timeless nor a crash. Anything else (missing,
    a bool, a string, NaN, infinity) is no time at all.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return None


def duration(seconds: float | None) -> str:
    """A duration at the precision a person reads at a glance ('-' when unknown)."""
    if seconds is None:
        return "-"
    seconds = int(max(0.0, seconds))
    days, rem = divmod(seconds, 86400)
    hours, rem = divmod(rem, 3600)
    minutes, secs = divmod(rem, 60)
    if days:
        return f"{days}d {hours}h {minutes:02d}m"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"
