"""Fault: a unit removed by hand (`rm -rf`) is put back as something MLflow can open, and the
guard says "restored" only once MLflow's own store API opens it.

Real daemon, real MLflow server, real clients. Each case checks what status says, that the
server keeps serving, that nothing outside the store and state folder changed, and that nothing
is lost (the unit's folders and files come back byte for byte).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from tests.helpers.clients import read_through_server, result_of, start_training_client
from tests.helpers.daemons import healthy_guard, wait_for

pytestmark = pytest.mark.integration


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every folder (None) and file (its bytes) below `folder`."""
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes()
            for p in sorted(folder.rglob("*"))}


def outside(tmp_path: Path, store: Path, guard) -> dict[str, float]:
    """What lies in the test's folder beside the store and the state folder (the config, the
    client's work folder), with mtimes; the daemon's own output log aside."""
    out = {}
    for p in tmp_path.rglob("*"):
        if store in p.parents or p == store or guard.state_dir in p.parents \
                or p == guard.state_dir or p.name.startswith("guard-run-"):
            continue
        out[str(p.relative_to(tmp_path))] = p.stat().st_mtime
    return out


def vault_journal(guard) -> list[dict]:
    path = guard.state_dir / "journal" / "vault.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def restored(guard) -> set[str]:
    return {e["path"] for e in vault_journal(guard) if e.get("action") == "restored"}


def settled(guard) -> None:
    """The vault has a full pass and has heard the watcher's events for what was just made."""
    wait_for(lambda: (guard.status().get("vault") or {}).get("ready"), 60,
             what="the vault's first pass")
    time.sleep(1.5)


def read_run(client, run_id: str) -> dict:
    """What a client sees of a run through the server."""
    run = client.get_run(run_id)
    return {"data": run.data.to_dictionary(),
            "history": {k: sorted((m.step, m.timestamp, m.value)
                                  for m in client.get_metric_history(run_id, k))
                        for k in run.data.metrics},
            "artifacts": sorted(a.path for a in client.list_artifacts(run_id))}


def test_runs_with_empty_folders_removed_by_hand_come_back_and_open_through_the_server(
        new_store, make_guard, tmp_path):
    """A run with nothing logged and one with only a metric have empty params/ (and
    artifacts/) folders, which MLflow needs to open them: without them "Run ... not found"."""
    from mlflow import MlflowClient

    guard = healthy_guard(new_store, make_guard, tmp_path)
    client = MlflowClient(guard.url)
    nothing = client.create_run("0").info.run_id
    metric_only = client.create_run("0").info.run_id
    for step in range(3):
        client.log_metric(metric_only, "loss", 1.0 / (step + 1), step=step)
    full = client.create_run("0").info.run_id
    client.log_param(full, "lr", "0.1")
    client.log_metric(full, "acc", 0.9)
    client.log_text(full, "w=1", "notes.txt")
    runs = [nothing, metric_only, full]
    for run in runs:
        client.set_terminated(run)
    settled(guard)
    for run in (nothing, metric_only):  # the case: folders MLflow needs, with nothing in them
        assert not any((new_store / "0" / run / "params").iterdir())
        assert not any((new_store / "0" / run / "artifacts").iterdir())
    seen = {run: read_run(client, run) for run in runs}
    kept = {run: tree(new_store / "0" / run) for run in runs}
    around = outside(tmp_path, new_store, guard)

    for run in runs:
        shutil.rmtree(new_store / "0" / run)
    wanted = {f"0/{run}" for run in runs}
    wait_for(lambda: wanted <= restored(guard), 60,
             what="the vault to put the runs back and MLflow to open them")

    for run in runs:
        assert tree(new_store / "0" / run) == kept[run]  # every folder and byte back
        assert read_run(client, run) == seen[run]  # through the server: get_run, history, list
    wait_for(lambda: (guard.status().get("vault") or {}).get("restored") == 3, 10,
             what="the status file to count them")
    status = guard.ctl("status")
    assert status.returncode == 0, status.stdout
    assert "3 restored" in status.stdout and "incomplete" not in status.stdout
    figures = guard.status()["vault"]
    assert figures["restored"] == 3 and figures["incomplete"] == []
    assert outside(tmp_path, new_store, guard) == around
    assert client.search_experiments()  # still serving


def test_a_model_version_removed_by_hand_comes_back_and_loads_through_the_server(
        new_store, make_guard, tmp_path):
    guard = healthy_guard(new_store, make_guard, tmp_path)
    logged = result_of(start_training_client(guard.url, "served", 1, "restored-model",
                                             tmp_path / "client"))
    run = logged["runs"][0]
    assert run["version"] == "1"
    settled(guard)
    around = outside(tmp_path, new_store, guard)
    model = new_store / "models" / "restored-model"
    version = model / "version-1"
    kept = tree(model)

    shutil.rmtree(version)
    wait_for(lambda: "models/restored-model/version-1" in restored(guard), 60,
             what="the vault to put the version back and MLflow to open it")
    assert tree(model) == kept
    report = read_through_server(guard.url, {run["run_id"]: run["artifact"]},
                                 [("restored-model", "1")])
    assert report["predictions"]["restored-model/1"] == [11]  # AddN(1) on 10
    assert report["artifacts"][run["run_id"]]["content"] == "run 0 of served"

    shutil.rmtree(model)  # the whole registered model, its version with it
    wait_for(lambda: "models/restored-model" in restored(guard), 60,
             what="the vault to put the registered model back")
    assert tree(model) == kept
    report = read_through_server(guard.url, {}, [("restored-model", "1")])
    assert report["predictions"]["restored-model/1"] == [11]
    wait_for(lambda: (guard.status().get("vault") or {}).get("restored") == 2, 10,
             what="the status file to count them")
    status = guard.ctl("status")
    assert status.returncode == 0, status.stdout
    assert "2 restored" in status.stdout and "incomplete" not in status.stdout
    assert outside(tmp_path, new_store, guard) == around


def test_a_restore_mlflow_cannot_open_is_incomplete_and_the_guard_degraded(
        new_store, make_guard, tmp_path):
    """A run whose meta.yaml was emptied in place, then removed: the vault's copy is the same
    file (a hard link), so what comes back is an empty meta.yaml MLflow cannot read. Status
    must not say "restored": it says what failed, names the run, and is DEGRADED."""
    from mlflow import MlflowClient

    guard = healthy_guard(new_store, make_guard, tmp_path)
    client = MlflowClient(guard.url)
    run = client.create_run("0").info.run_id
    client.log_param(run, "lr", "0.1")
    client.set_terminated(run)
    settled(guard)
    around = outside(tmp_path, new_store, guard)

    with open(new_store / "0" / run / "meta.yaml", "r+b") as fh:
        fh.truncate(0)
    time.sleep(1.5)
    shutil.rmtree(new_store / "0" / run)
    wait_for(lambda: any(e.get("action") == "restore incomplete" for e in vault_journal(guard)),
             60, what="the vault to report the restore incomplete")
    assert (new_store / "0" / run / "params" / "lr").is_file()  # put back, all the same
    assert f"0/{run}" not in restored(guard)
    wait_for(lambda: (guard.status().get("vault") or {}).get("incomplete"), 10)
    status = guard.ctl("status")
    assert status.returncode == 1, status.stdout
    assert f"restore incomplete: 0/{run} (run): run deleted without a tombstone; MLflow " \
           "cannot open it: get_run: " in status.stdout
    assert guard.status()["vault"]["restored"] == 0
    assert client.search_experiments()  # still serving
    assert outside(tmp_path, new_store, guard) == around
