"""Times as the guard reads and shows them (guard.core.timefmt)."""

from __future__ import annotations

import pytest

from guard.core.timefmt import duration, ms

# --- epoch milliseconds ----------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    (1_700_000_000_123, 1_700_000_000_123), (0, 0), (-5, -5),
    (1_700_000_000_123.9, 1_700_000_000_123),  # a float counts, truncated
    (12.5, 12), (-1.5, -1),
    (True, None), (False, None), (None, None), ("1700000000000", None),
    (float("nan"), None), (float("inf"), None), (float("-inf"), None), ([1], None),
])
def test_ms_reads_meta_yaml_times(value, expected):
    got = ms(value)
    assert got == expected and (got is None or type(got) is int)


# --- duration ---------------------------------------------------------------------------------

@pytest.mark.parametrize("seconds, text", [
    (None, "-"), (0, "0s"), (5.9, "5s"), (-3, "0s"), (65, "1m 05s"), (3599, "59m 59s"),
    (3600, "1h 00m"), (3725, "1h 02m"), (86400, "1d 0h 00m"), (90061, "1d 1h 01m"),
    (3 * 86400 + 5 * 3600 + 7 * 60, "3d 5h 07m"),
])
def test_duration(seconds, text):
    assert duration(seconds) == text
