"""The real-Syncthing lab itself (tests/helpers/syncthing.py): it syncs, pauses like a host
offline, and leaves conflict copies under the names the guard recognises."""

from __future__ import annotations

import time

import pytest

from guard.core.conflictnames import SYNCTHING, parse_conflict_name

pytestmark = pytest.mark.integration  # real Syncthing processes


def test_two_syncthings_sync_pause_and_name_conflicts_as_the_guard_expects(syncthing_pair):
    lab = syncthing_pair
    a, b = lab.folders
    assert a != b and (a / ".stfolder").is_dir() and (b / ".stfolder").is_dir()
    lags = lab.latency(0, 1, 2) + lab.latency(1, 0, 2)
    assert max(lags) < 5, lags

    lab.pause(0)  # hostA offline: both sides change one file meanwhile
    (a / "tag").write_text("set on A")
    time.sleep(1.1)
    (b / "tag").write_text("set on B")
    (b / "only-b.txt").write_text("made while A was away")
    time.sleep(2)  # scanned on both sides, exchanged with nobody
    assert not (a / "only-b.txt").exists()
    lab.resume(0)
    lab.wait_in_sync(30)

    assert (a / "only-b.txt").read_text() == "made while A was away"
    assert (a / "tag").read_text() == (b / "tag").read_text() == "set on B"  # newer mtime wins
    (copy,) = [p.name for p in a.iterdir() if ".sync-conflict-" in p.name]
    assert (a / copy).read_text() == "set on A"
    parsed = parse_conflict_name(copy)
    assert parsed is not None and parsed.client == SYNCTHING, copy
    assert parsed.who in {inst.short_id for inst in lab.instances}
