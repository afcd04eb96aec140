"""`guardctl conflicts`: what the reconcile shell resolved in a copy of the shipped store, and what
needs a person."""

from __future__ import annotations

import json

import pytest

from guard.core.journal import Journal
from guard.sync.reconcile import Reconciler, find_copies
from tests.helpers.daemons import guardctl
from tests.helpers.store import EXP, RUN, copy_direct_store

SYN = "_hostB_Nov-22-0650-2026_Conflict_1"  # Synology Drive's marker, as hostB lost


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return copy_direct_store(tmp_path)


@pytest.mark.integration
def test_guardctl_conflicts_lists_what_needs_a_person(store, tmp_path):
    params = store / EXP / RUN / "params"
    (params / f"p{SYN}").write_text("something else")
    state = tmp_path / "state"
    opts = ["--store", str(store), "--state-dir", str(state)]
    out = guardctl("conflicts", *opts)
    assert out.returncode == 0 and "waiting for the daemon" in out.stdout
    Reconciler(store, state / "quarantine",
               Journal(state / "journal" / "conflicts.jsonl")).resolve_all(find_copies(store))
    out = guardctl("conflicts", *opts)
    assert "1 conflict copies resolved, 1 need a look" in out.stdout
    assert f"{EXP}/{RUN}/params/p" in out.stdout and "kept:" in out.stdout
    doc = json.loads(guardctl("conflicts", "--json", *opts).stdout)
    assert doc["in_store_now"] == [] and len(doc["needs_attention"]) == 1
