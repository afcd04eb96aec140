"""The vault part's word on a restore: "restored" only when MLflow opens what came back
(the verifier is a stand-in here; tests/faults/test_restore.py asks the real one)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from guard.core.journal import Journal, read_journal
from guard.core.store import init_store
from guard.protection.deletions import FOLLOW, RESTORE, Unit, Verdict
from guard.protection.restorer import (
    INCOMPLETE,
    REFUSED,
    RESTORED,
    RestoreService,
    confirm,
    unit_restored,
)
from guard.protection.vault import Vault
from guard.protection.verify import Probe

RUN = ("0", "b" * 32)


# ---- pure ----------------------------------------------------------------------------------

def test_restored_only_when_mlflow_opened_everything():
    assert confirm("run deleted without a tombstone", []) == \
        (RESTORED, "run deleted without a tombstone")
    assert confirm("run deleted without a tombstone", ["get_run: not found", "x"]) == \
        (INCOMPLETE, "run deleted without a tombstone; MLflow cannot open it: "
                     "get_run: not found; x")


def test_the_unit_opened_is_the_one_deleted_or_the_live_one_a_part_went_back_into():
    run = Unit("run", RUN)
    assert unit_restored(Verdict(RESTORE, run, "deleted"), RUN) == run
    assert unit_restored(Verdict(RESTORE, None, "part of run"), RUN + ("params",)) == run
    version = ("models", "m", "version-1")
    assert unit_restored(Verdict(RESTORE, None, "part"), version + ("tags", "t")) == \
        Unit("model_version", version)
    assert unit_restored(Verdict(FOLLOW, None, "not MLflow's"), (".stray",)) is None


# ---- the part, with a stand-in for MLflow ------------------------------------------------------

class FakeMlflow:
    """Answers each probe with `failures` (empty: opens); keeps what it was asked."""

    def __init__(self) -> None:
        self.failures: list[str] = ["get_run: Run not found"]
        self.asked: list[list[Probe]] = []

    def __call__(self, store: Path, probes) -> list[list[str]]:
        self.asked.append(list(probes))
        return [list(self.failures) for _ in probes]


@pytest.fixture
def part(tmp_path):
    store = tmp_path / "mlruns"
    init_store(store)
    run = store.joinpath(*RUN)
    for folder in ("params", "metrics", "artifacts", "tags"):
        (run / folder).mkdir(parents=True)
    (run / "meta.yaml").write_text(f"run_id: {RUN[1]}\nexperiment_id: '0'\n")
    (run / "metrics" / "loss").write_text("1 0.5 0\n")
    vault = Vault(tmp_path / "vault", store, 10_000)
    vault.open()
    mlflow = FakeMlflow()
    svc = RestoreService(vault, Journal(tmp_path / "vault.jsonl"), "host", "restore", grace=0,
                         scan_interval=3600, retention_s=3600, verifier=mlflow)
    vault.sync(())
    svc.next_full = svc.next_save = float("inf")  # no full pass: the test judges by hand
    yield svc, mlflow, store, tmp_path / "vault.jsonl"
    vault.close()


def delete_and_judge(svc: RestoreService, store: Path) -> None:
    shutil.rmtree(store.joinpath(*RUN))
    svc._note(svc.vault.sync(RUN[:1], recursive=False))
    svc._judge_due()


def test_a_restore_mlflow_cannot_open_is_incomplete_not_restored(part):
    svc, mlflow, store, journal = part
    delete_and_judge(svc, store)
    assert (store.joinpath(*RUN) / "params").is_dir()  # put back, folders and all
    assert mlflow.asked == [[Probe("run", RUN, RUN[1], 0, ("loss",))]]
    figures = svc.snapshot()
    assert figures.restored == 0
    assert [(e.action, e.path) for e in figures.incomplete] == [(INCOMPLETE, "/".join(RUN))]
    assert "MLflow cannot open it: get_run: Run not found" in figures.incomplete[0].reason
    assert [r["action"] for r in read_journal(journal)] == [INCOMPLETE]


def test_an_incomplete_restore_is_checked_again_and_restored_once_mlflow_opens_it(part):
    svc, mlflow, store, journal = part
    delete_and_judge(svc, store)
    svc.handle(None, time.monotonic())  # not due yet: nothing asked
    assert len(mlflow.asked) == 1
    mlflow.failures = ["still broken"]
    svc.next_recheck = 0.0
    svc.handle(None, time.monotonic())
    assert len(mlflow.asked) == 2 and len(svc.snapshot().incomplete) == 1
    assert [r["action"] for r in read_journal(journal)] == [INCOMPLETE]  # said once
    mlflow.failures = []
    svc.next_recheck = 0.0
    svc.handle(None, time.monotonic())
    figures = svc.snapshot()
    assert figures.incomplete == () and figures.restored == 1
    assert [r["action"] for r in read_journal(journal)] == [INCOMPLETE, RESTORED]


def test_an_incomplete_unit_gone_again_is_dropped_without_asking(part):
    svc, mlflow, store, _ = part
    delete_and_judge(svc, store)
    shutil.rmtree(store.joinpath(*RUN))
    svc.next_recheck = 0.0
    svc.handle(None, time.monotonic())
    assert len(mlflow.asked) == 1 and svc.snapshot().incomplete == ()


def test_a_restore_mlflow_opens_is_restored_at_once(part):
    svc, mlflow, store, journal = part
    mlflow.failures = []
    delete_and_judge(svc, store)
    figures = svc.snapshot()
    assert figures.restored == 1 and figures.incomplete == ()
    assert [(r["action"], r["path"]) for r in read_journal(journal)] == \
        [(RESTORED, "/".join(RUN))]


def test_a_symlinked_folder_in_a_unit_is_refused_recorded_once_and_the_rest_restored(part):
    svc, mlflow, store, journal = part
    mlflow.failures = []
    run = store.joinpath(*RUN)
    decoy = store.parent / "decoy"
    decoy.mkdir()
    shutil.rmtree(run / "metrics")
    os.symlink(decoy, run / "metrics")
    for _ in range(2):
        (run / "meta.yaml").unlink(missing_ok=True)
        svc._note(svc.vault.sync(RUN))
        svc._judge_due()
        assert (run / "meta.yaml").is_file()  # the safe part came back
    assert list(decoy.iterdir()) == []  # nothing linked through the symlink
    records = [(r["action"], r["path"]) for r in read_journal(journal)]
    assert records.count((REFUSED, "/".join(RUN + ("metrics",)))) == 1
    refused = next(r for r in read_journal(journal) if r["action"] == REFUSED)
    assert "is a symlink, not a folder" in refused["reason"]
