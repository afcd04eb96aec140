"""Destructive garbage collection on a synced store, threat by threat, with real parts.

Three machines share one store through the simulated sync client: hostA and hostB run a real
guard daemon each; hostC runs none (a lab member's laptop without the guard). After each
threat the data is present and readable through both guards' servers, or, for a sanctioned
removal, gone everywhere and kept in the vault's trash.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.daemons import LAB_SETTLE, Guard, guardctl, guarded_lab, wait_for

pytestmark = pytest.mark.integration  # three hosts, two real daemons, `mlflow gc`

SETTLE = LAB_SETTLE  # locks.settle, and so the vault's grace before it judges a disappearance


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    hosts = ["hostA", "hostB", "hostC"]  # hostC runs no guard
    # foreign_delay: keep hostC's own paths, so `mlflow gc` there can delete for real.
    with guarded_lab(tmp_path_factory.mktemp("gc-lab"), hosts, 2,
                     "rewrite:\n  foreign_delay: 3600\nvault:\n  scan_interval: 5\n") as lab:
        guards, stores, syncer = lab
        yield guards, stores[2], syncer


def client(where):
    from mlflow import MlflowClient

    return MlflowClient(where.url if isinstance(where, Guard) else where.as_uri())


def log_run(where, exp_name: str, tmp_path: Path, text: str = "weights") -> tuple[str, str]:
    """A real run with a param, a metric and an artifact, through a server or a folder."""
    c = client(where)
    exp = c.get_experiment_by_name(exp_name)
    exp_id = exp.experiment_id if exp else c.create_experiment(exp_name)
    run = c.create_run(exp_id)
    c.log_param(run.info.run_id, "lr", "0.1")
    c.log_metric(run.info.run_id, "loss", 0.5, step=1)
    art = tmp_path / f"{run.info.run_id}.txt"
    art.write_text(text)
    c.log_artifact(run.info.run_id, str(art))
    c.set_terminated(run.info.run_id)
    return exp_id, run.info.run_id


def readable_everywhere(guards, run_id: str, tmp_path: Path, text: str = "weights") -> bool:
    """The run, its param, metric and artifact, read through every guard's server."""
    for guard in guards:
        c = client(guard)
        try:
            run = c.get_run(run_id)
            dst = tmp_path / f"read-{guard.port}-{time.monotonic_ns()}"
            dst.mkdir()
            path = c.download_artifacts(run_id, f"{run_id}.txt", str(dst))
        except Exception:  # noqa: BLE001 - not there (yet)
            return False
        if run.data.params.get("lr") != "0.1" or run.data.metrics.get("loss") != 0.5 \
                or Path(path).read_text() != text:
            return False
    return True


def journal(guard) -> str:
    path = guard.state_dir / "journal" / "vault.jsonl"
    return path.read_text() if path.exists() else ""


def mlflow_gc(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, MLFLOW_ALLOW_FILE_STORE="true")
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "mlflow", "gc", *args], capture_output=True,
                          text=True, timeout=180, env=env)


def run_dir(store: Path, exp_id: str, run_id: str) -> Path:
    return store / exp_id / run_id


def test_mlflow_gc_on_a_machine_without_the_guard_is_undone_on_every_machine(lab, tmp_path):
    (a, b), store_c, syncer = lab
    exp_id, run_id = log_run(store_c, "laptop", tmp_path)  # file:// paths of hostC
    wait_for(lambda: syncer.settled() and readable_everywhere((a, b), run_id, tmp_path), 60,
             what="hostC's run to reach both guards")
    client(store_c).delete_run(run_id)
    wait_for(lambda: syncer.settled() and all(
        client(g).get_run(run_id).info.lifecycle_stage == "deleted" for g in (a, b)), 60,
        what="the soft delete to reach both guards")
    # Paused, the gc's deletion stays on hostC until the assertion below has looked: the
    # guards cannot put the run back there in between.
    syncer.pause()
    try:
        res = mlflow_gc("--backend-store-uri", store_c.as_uri(), "--tracking-uri",
                        store_c.as_uri())
        assert res.returncode == 0 and f"Run with ID {run_id} has been permanently deleted" \
            in res.stdout, res.stderr[-2000:]
        assert not run_dir(store_c, exp_id, run_id).exists()  # gone on hostC
    finally:
        syncer.resume()  # ... and so synced away
    wait_for(lambda: syncer.settled() and run_dir(store_c, exp_id, run_id).is_dir()
             and readable_everywhere((a, b), run_id, tmp_path), 60,
             what="the vaults to put the run back, and the sync to carry it to every host")
    # "restored" is journaled once MLflow opens the run (a second or two after it is back)
    wait_for(lambda: run_id in journal(a) + journal(b), 30, what="the restore journaled")
    assert client(a).get_run(run_id).info.lifecycle_stage == "deleted"  # as it was: deleted


def test_mlflow_gc_pointed_at_the_guards_server_deletes_nothing(lab, tmp_path):
    (a, b), _, syncer = lab
    exp_id, run_id = log_run(a, "through-a", tmp_path)
    client(a).delete_run(run_id)
    res = mlflow_gc("--backend-store-uri", a.store.as_uri(), "--tracking-uri", a.url)
    assert res.returncode != 0 and "403" in res.stderr and "guardctl gc" in res.stderr
    assert run_dir(a.store, exp_id, run_id).is_dir()
    wait_for(lambda: syncer.settled() and readable_everywhere((a, b), run_id, tmp_path), 60,
             what="the run, untouched, on both hosts")


def test_an_artifact_delete_request_is_refused_with_403(lab, tmp_path):
    import requests

    (a, b), _, syncer = lab
    exp_id, run_id = log_run(a, "through-a", tmp_path)
    url = f"{a.url}/api/2.0/mlflow-artifacts/artifacts/{exp_id}/{run_id}/artifacts/{run_id}.txt"
    res = requests.delete(url, timeout=30)
    assert res.status_code == 403 and "guardctl gc" in res.json()["message"]
    assert requests.get(url, timeout=30).status_code == 200  # downloads still pass
    wait_for(lambda: syncer.settled() and readable_everywhere((a, b), run_id, tmp_path), 60,
             what="the artifact on both hosts")


def test_a_run_folder_removed_by_hand_comes_back_on_both_hosts(lab, tmp_path):
    (a, b), _, syncer = lab
    exp_id, run_id = log_run(a, "through-a", tmp_path)
    wait_for(lambda: syncer.settled() and readable_everywhere((a, b), run_id, tmp_path), 60)
    shutil.rmtree(run_dir(a.store, exp_id, run_id))
    # the vault waits out the settle time, restores, and asks MLflow in a child process
    # whether the run opens; on a loaded 2-core machine that has taken over a minute
    wait_for(lambda: syncer.settled() and readable_everywhere((a, b), run_id, tmp_path), 120,
             what="the removed run to be restored and synced")
    wait_for(lambda: f"{exp_id}/{run_id}" in journal(a) + journal(b), 30,
             what="the restore journaled (once MLflow opens the run)")
    assert "restored" in a.ctl("status").stdout


def test_an_experiment_deleted_on_another_machine_comes_back_through_the_sync(lab, tmp_path):
    (a, b), store_c, syncer = lab
    exp_id, run_id = log_run(a, "whole-experiment", tmp_path)
    wait_for(lambda: syncer.settled() and (store_c / exp_id / run_id / "meta.yaml").exists(),
             60)
    shutil.rmtree(store_c / exp_id)  # hostC, without a guard, removes the whole experiment
    wait_for(lambda: syncer.settled() and (store_c / exp_id / "meta.yaml").exists()
             and readable_everywhere((a, b), run_id, tmp_path), 60,
             what="the experiment back on every host")
    assert client(b).get_experiment(exp_id).lifecycle_stage == "active"


def test_soft_deleting_an_experiment_is_not_undone(lab, tmp_path):
    (a, b), _, syncer = lab
    exp_id, run_id = log_run(a, "soft", tmp_path)
    wait_for(lambda: syncer.settled() and (b.store / exp_id).is_dir(), 60)
    client(a).delete_experiment(exp_id)  # MLflow moves it to .trash/<exp>
    time.sleep(SETTLE * 3)
    wait_for(lambda: syncer.settled(), 60)
    for guard in (a, b):
        assert not (guard.store / exp_id).exists()
        assert (guard.store / ".trash" / exp_id / run_id / "meta.yaml").is_file()
        assert client(guard).get_experiment(exp_id).lifecycle_stage == "deleted"


def test_registered_model_deletion_is_kept_in_the_vault_and_not_undone_by_peers(lab, tmp_path):
    (a, b), _, syncer = lab
    exp_id, run_id = log_run(a, "registry", tmp_path)
    c = client(a)
    c.create_registered_model("doomed")
    c.create_model_version("doomed", f"runs:/{run_id}/model", run_id)
    c.create_registered_model("kept")
    mv = c.create_model_version("kept", f"runs:/{run_id}/model", run_id)
    wait_for(lambda: syncer.settled() and (b.store / "models" / "doomed").is_dir(), 60)
    c.delete_registered_model("doomed")
    c.delete_model_version("kept", mv.version)  # the file store only marks a version deleted
    time.sleep(SETTLE * 3)
    wait_for(lambda: syncer.settled(), 60)
    for guard in (a, b):
        names = [m.name for m in client(guard).search_registered_models()]
        assert "doomed" not in names and "kept" in names
        assert not (guard.store / "models" / "doomed").exists()
        assert (guard.store / "models" / "kept" / f"version-{mv.version}" / "meta.yaml").is_file()
    kept = list((a.state_dir / "vault" / "trash").glob("*/models/doomed/version-1/meta.yaml"))
    assert len(kept) == 1
    assert readable_everywhere((a, b), run_id, tmp_path)
    assert "doomed" not in journal(a) + journal(b)  # nobody restored it


def test_guardctl_gc_removes_exactly_the_eligible_runs_and_no_peer_restores_them(lab, tmp_path):
    (a, b), store_c, syncer = lab
    c = client(a)
    _, old = log_run(a, "collect", tmp_path)
    _, registered = log_run(a, "collect", tmp_path)
    exp_id, active = log_run(a, "collect", tmp_path)
    c.create_registered_model("production")
    c.create_model_version("production", f"runs:/{registered}/model", registered)
    for run_id in (old, registered):
        c.delete_run(run_id)
    wait_for(lambda: syncer.settled() and (b.store / exp_id / old).is_dir(), 60)

    def listed(out: str, verb: str) -> set[str]:
        return {line.split()[2] for line in out.splitlines() if line.startswith(f"  {verb} ")}

    dry = guardctl("gc", "--older-than", "0s", "--store", str(a.store), *a.opts_for("gc"))
    assert dry.returncode == 0, dry.stderr
    assert f"{exp_id}/{old}" in listed(dry.stdout, "remove") and "dry run" in dry.stdout
    assert f"{exp_id}/{registered}" in listed(dry.stdout, "keep")
    assert f"{exp_id}/{active}" not in listed(dry.stdout, "remove")
    assert (a.store / exp_id / old).is_dir()  # a dry run changes nothing

    done = guardctl("gc", "--older-than", "0s", "--yes", "--store", str(a.store),
                    *a.opts_for("gc"))
    assert done.returncode == 0, done.stderr
    removed = listed(done.stdout, "remove")
    assert f"{exp_id}/{old}" in removed and f"{exp_id}/{registered}" not in removed
    time.sleep(SETTLE * 3)
    wait_for(lambda: syncer.settled(), 60)
    for store in (a.store, b.store, store_c):
        assert not (store / exp_id / old).exists()
        assert (store / exp_id / registered / "meta.yaml").is_file()
        assert (store / exp_id / active / "meta.yaml").is_file()
    assert list((a.state_dir / "vault" / "trash").glob(f"*/{exp_id}/{old}/meta.yaml"))
    assert old not in journal(a) + journal(b)  # sanctioned: no vault put it back
    assert readable_everywhere((a, b), active, tmp_path)


def test_a_running_mlflow_gc_aimed_at_the_store_shows_in_status(lab):
    """A real process whose command line is `... mlflow gc --backend-store-uri file:///<store>`
    (it sleeps instead of deleting): status names it with pid and user and turns DEGRADED."""
    (a, _b), _, _syncer = lab
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "mlflow",
                             "gc", "--backend-store-uri", a.store.as_uri()])
    try:
        doc = wait_for(lambda: [p for p in a.status().get("gc_processes") or []
                                if p["pid"] == proc.pid], 30, what="status to list the gc")
        assert doc[0]["user"]
        res = a.ctl("status")
        assert res.returncode == 1 and "DEGRADED" in res.stdout
        assert f"MLFLOW GC running against this store: pid {proc.pid}" in res.stdout
    finally:
        proc.kill()
        proc.wait(10)
    wait_for(lambda: not a.status().get("gc_processes"), 30, what="the gc to leave status")
