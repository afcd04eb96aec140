"""`guardctl conflicts`: what the reconcile shell resolved in a copy of the shipped store, and what
needs a person."""

from __future__ import annotations

import json

import pytest

from guard.core.journal import Journal
from guard.core.layout import COORDINATION
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
    assert "1 conflict copy resolved, 1 needs a look" in out.stdout
    assert f"{EXP}/{RUN}/params/p" in out.stdout and "kept:" in out.stdout
    doc = json.loads(guardctl("conflicts", "--json", *opts).stdout)
    assert doc["in_store_now"] == [] and len(doc["needs_attention"]) == 1


@pytest.mark.integration
def test_guardctl_conflicts_lists_renumbered_model_versions(store, tmp_path):
    from guard.core import metayaml

    vdir = store / "models" / "adder" / "version-1"
    ours = metayaml.parse((vdir / "meta.yaml").read_bytes())
    theirs = dict(ours, run_id="b" * 32, creation_timestamp=ours["creation_timestamp"] + 5)
    (vdir / f"meta{SYN}.yaml").write_bytes(metayaml.dump(theirs))  # hostB's, created later
    state = tmp_path / "state"

    class NoLock:
        def __init__(self, name):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

    Reconciler(store, state / "quarantine", Journal(state / "journal" / "conflicts.jsonl"),
               "hostA").resolve_all(find_copies(store), NoLock)
    opts = ["--store", str(store), "--state-dir", str(state)]
    out = guardctl("conflicts", *opts)
    assert "1 model version renumbered" in out.stdout
    assert "  model 'adder': was version 1 on hostB, now 2" in out.stdout
    doc = json.loads(guardctl("conflicts", "--json", *opts).stdout)
    assert doc["renumbered"] == [{"model": "adder", "was": 1, "host": "hostB", "now": 2}]


def fast_locks(store, tmp_path) -> list[str]:
    """Options for a guardctl that settles its locks in half a second (one host)."""
    config = tmp_path / "guard.yaml"
    config.write_text("locks:\n  settle: 0.5\n")
    return ["--config", str(config), "--store", str(store), "--state-dir",
            str(tmp_path / "state")]


def an_older_experiment_of_the_same_name(store) -> None:
    """Experiment 111, named like EXP and created a second earlier (as a second machine's
    create of the same name arrives by sync)."""
    from guard.core import metayaml

    doc = metayaml.parse((store / EXP / "meta.yaml").read_bytes())
    (store / "111").mkdir()
    (store / "111" / "meta.yaml").write_bytes(metayaml.dump(dict(
        doc, experiment_id="111", creation_time=doc["creation_time"] - 1000)))


@pytest.mark.integration
def test_guardctl_conflicts_names_same_named_experiments_and_plans_their_merge(store, tmp_path):
    an_older_experiment_of_the_same_name(store)
    opts = fast_locks(store, tmp_path)
    out = guardctl("conflicts", *opts)
    assert (f"! experiment name 'direct' is held by 2 experiments (ids 111, {EXP}; 111 is the "
            "oldest); see the merge: guardctl conflicts --merge-experiments direct") in out.stdout
    def data() -> list:  # the store but its coordination folder (the lock's lease files)
        return sorted(p.relative_to(store) for p in store.rglob("*")
                      if COORDINATION not in p.parts)

    before = data()
    plan = guardctl("conflicts", "--merge-experiments", "direct", *opts)
    assert plan.returncode == 0, plan.stderr
    assert f"move run {EXP}/{RUN} -> 111/{RUN}" in plan.stdout
    assert "dry run: nothing was changed" in plan.stdout
    assert data() == before
    doc = json.loads(guardctl("conflicts", "--merge-experiments", "direct", "--json",
                              *opts).stdout)
    assert doc["keep"] == "111" and len(doc["moves"]) == 2 and doc["dry_run"]
    assert guardctl("conflicts", "--merge-experiments", "other", *opts).returncode == 1


@pytest.mark.integration
def test_guardctl_conflicts_merges_same_named_experiments_with_yes(store, tmp_path):
    an_older_experiment_of_the_same_name(store)
    opts = fast_locks(store, tmp_path)
    out = guardctl("conflicts", "--merge-experiments", "direct", "--yes", *opts)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "every moved run reads through MLflow" in out.stdout
    assert (store / "111" / RUN / "meta.yaml").is_file() and not (store / EXP).exists()
    assert "experiment name" not in guardctl("conflicts", *opts).stdout  # nothing shared now
