"""How the guard writes durations for people: 45s, 3m 05s, 2h 03m, 1d 2h 03m."""

from __future__ import annotations


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
