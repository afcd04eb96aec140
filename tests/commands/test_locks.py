"""`guardctl locks`: the leases held in a real store."""

from __future__ import annotations

import json

import pytest

from guard.sync.leases import resource_name
from guard.sync.locks import LeaseLock
from tests.helpers.daemons import guardctl


@pytest.mark.integration
def test_guardctl_locks_lists_holder_and_age(new_store, tmp_path):
    lock = LeaseLock(new_store, "hostA", resource_name("model", "churn"), settle=0.1, ttl=10.0,
                     renew_every=1.0)
    lock.acquire(timeout=5)
    try:
        out = guardctl("locks", "--store", str(new_store), "--state-dir", str(tmp_path / "s"))
        assert out.returncode == 0, out.stderr
        assert "model-churn: held by hostA" in out.stdout
        doc = json.loads(guardctl("locks", "--json", "--store", str(new_store), "--state-dir",
                                  str(tmp_path / "s")).stdout)
        assert doc["backend"] == "lease"
        assert [(x["resource"], x["holder"]) for x in doc["locks"]] == [("model-churn", "hostA")]
    finally:
        lock.release()
    out = guardctl("locks", "--store", str(new_store), "--state-dir", str(tmp_path / "s"))
    assert out.returncode == 0 and "no locks held" in out.stdout


@pytest.mark.integration
def test_guardctl_locks_on_a_missing_store_says_so(tmp_path):
    out = guardctl("locks", "--store", str(tmp_path / "nope"), "--state-dir", str(tmp_path / "s"))
    assert out.returncode == 2 and "nope" in out.stderr
