"""Portable artifact paths with real MLflow clients, real stores and the real daemon."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
import yaml

from guard.core import metayaml
from guard.core.layout import classify_meta
from guard.portability.fixer import iter_meta_files
from tests.helpers.clients import read_through_server, run_direct_client
from tests.helpers.daemons import Guard, free_port, guardctl, wait_for

pytestmark = pytest.mark.integration  # real daemons (one module-wide on B), `guardctl fix`

CUSTOM = "file:///data/elsewhere/artifacts"


def locations(store: Path) -> dict[str, str]:
    """Every location value in the store's meta.yaml files, by 'file:key'."""
    out = {}
    for path in iter_meta_files(store):
        if not path.is_file():
            continue
        rel = path.relative_to(store).parts
        doc = yaml.safe_load(path.read_text())
        for key in classify_meta(rel).keys:
            if doc.get(key) is not None:
                out[f"{'/'.join(rel)}:{key}"] = doc[key]
    return out


def copy_run(store: Path, exp_id: str, run_id: str, artifact_uri: str) -> str:
    """A copy of a run under a new id whose artifact_uri another machine wrote."""
    new_id = uuid.uuid4().hex
    shutil.copytree(store / exp_id / run_id, store / exp_id / new_id)
    meta = store / exp_id / new_id / "meta.yaml"
    doc = metayaml.parse(meta.read_bytes())
    doc.update(run_id=new_id, artifact_uri=artifact_uri.format(exp=exp_id, run=new_id))
    meta.write_bytes(metayaml.dump(doc))
    return new_id


def set_key(path: Path, key: str, value: str) -> None:
    doc = metayaml.parse(path.read_bytes())
    doc[key] = value
    path.write_bytes(metayaml.dump(doc))


@pytest.fixture(scope="module")
def machine_b(tmp_path_factory):
    """Runs and models logged directly under root A, Windows-style copies, the store copied
    to root B, and a guard on B."""
    root = tmp_path_factory.mktemp("portable")
    store_a = root / "machineA" / "home" / "alice" / "mlruns"
    made = run_direct_client(store_a, "alpha", 2, "adder", root / "workA")
    exp = made["experiment_id"]
    first = made["runs"][0]
    windows = {
        copy_run(store_a, exp, first["run_id"], form): first["artifact"]
        for form in ("file:///C:/Users/alice/SynologyDrive/lab/mlruns/{exp}/{run}/artifacts",
                     "C:\\Users\\bob\\Sync Drive\\mlruns\\{exp}\\{run}\\artifacts",
                     "\\\\nas\\share\\mlruns\\{exp}\\{run}\\artifacts",
                     "file:///mnt/c/Users/carol/mlruns/{exp}/{run}/artifacts/")
    }
    custom_run = copy_run(store_a, exp, first["run_id"], CUSTOM)
    second = made["runs"][1]
    set_key(store_a / "models" / "adder" / "version-2" / "meta.yaml", "storage_location",
            f"file:///C:/Users/alice/SynologyDrive/lab/mlruns/{exp}/models/"
            f"{second['model_id']}/artifacts")
    store_b = root / "machineB" / "data" / "sync" / "mlruns"
    shutil.copytree(store_a, store_b)
    config = root / "b.yaml"
    config.write_text("server:\n  health_interval: 1\n"
                      "rewrite:\n  foreign_delay: 1\n  experiment_quiet: 3\n")
    guard = Guard(store_b, root / "stateB", free_port(), config=config).start()
    try:
        guard.wait_healthy()
        guard.made = made
        guard.windows_runs = windows
        guard.custom_run = custom_run
        yield guard
    finally:
        guard.teardown()


def portability(guard) -> dict:
    return guard.status().get("portability") or {}


def test_guard_on_b_fixes_paths_and_serves_every_artifact_and_model(machine_b):
    store = machine_b.store
    wait_for(lambda: portability(machine_b).get("last_full_pass")
             and portability(machine_b)["pending_foreign"] == 0
             and portability(machine_b)["deferred_in_flight"] == 0
             and portability(machine_b)["rewrites_total"] >= 11, 60, what="rewrites on B")
    values = locations(store)
    custom_key = f"{machine_b.made['experiment_id']}/{machine_b.custom_run}/meta.yaml:artifact_uri"
    assert values.pop(custom_key) == CUSTOM  # a custom location outside the store: left alone
    not_portable = {k: v for k, v in values.items() if not v.startswith("mlflow-artifacts:/")
                    and not v.startswith("models:/")}
    assert not_portable == {}
    exp = machine_b.made["experiment_id"]
    for run_id in machine_b.windows_runs:
        assert values[f"{exp}/{run_id}/meta.yaml:artifact_uri"] == \
            f"mlflow-artifacts:/{exp}/{run_id}/artifacts"

    artifacts = {r["run_id"]: r["artifact"] for r in machine_b.made["runs"]}
    artifacts.update(machine_b.windows_runs)
    report = read_through_server(machine_b.url, artifacts, [("adder", "1"), ("adder", "2")])
    for run_id, name in artifacts.items():
        assert name in report["artifacts"][run_id]["listed"]
        assert report["artifacts"][run_id]["content"].startswith("run ")
    assert report["predictions"] == {"adder/1": [11], "adder/2": [12]}


def test_unportable_location_is_reported_in_status_and_fix(machine_b):
    wait_for(lambda: portability(machine_b).get("unportable_count") == 1, 60,
             what="unportable count")
    problems = portability(machine_b)["problems"]
    assert [p["value"] for p in problems if p["problem"] == "unportable"] == [CUSTOM]
    text = machine_b.ctl("status").stdout
    assert "UNPORTABLE 1 unportable" in text and "watching by events" in text
    res = guardctl("fix", "--dry-run", "--store", str(machine_b.store),
                   "--state-dir", str(machine_b.state_dir))
    assert res.returncode == 0 and "UNPORTABLE" in res.stdout and CUSTOM in res.stdout
    assert "would rewrite nothing" in res.stdout


def test_direct_client_on_b_finishes_then_its_paths_are_fixed(machine_b, tmp_path):
    # A training script that opens the store folder directly while the guard runs: its
    # locations are left alone while it works (else MLflow would refuse to log artifacts),
    # then made portable on the events of it finishing.
    made = run_direct_client(machine_b.store, "beta", 1, "bravo", tmp_path / "workB")
    exp, run = made["experiment_id"], made["runs"][0]
    targets = {
        f"{exp}/meta.yaml:artifact_location": f"mlflow-artifacts:/{exp}",
        f"{exp}/{run['run_id']}/meta.yaml:artifact_uri":
            f"mlflow-artifacts:/{exp}/{run['run_id']}/artifacts",
        f"{exp}/models/{run['model_id']}/meta.yaml:artifact_location":
            f"mlflow-artifacts:/{exp}/models/{run['model_id']}/artifacts",
        "models/bravo/version-1/meta.yaml:storage_location":
            f"mlflow-artifacts:/{exp}/models/{run['model_id']}/artifacts",
    }
    wait_for(lambda: all(locations(machine_b.store).get(k) == v for k, v in targets.items()),
             10, 0.05, what="fixes after the client finished")
    journal = machine_b.state_dir / "journal" / "rewrites.jsonl"
    lines = [json.loads(ln) for ln in journal.read_text().splitlines()]
    mine = [ln for ln in lines if ln["file"].startswith(f"{exp}/") or "bravo" in ln["file"]]
    # The version is registered from its logged model's location: already portable if the
    # guard fixed the model first (3 rewrites), else rewritten itself (4). Never twice.
    assert len(mine) in (3, 4) and len({(ln["file"], ln["key"]) for ln in mine}) == len(mine)
    assert all(ln["old"].startswith(machine_b.store.as_uri()) for ln in mine)
    files = len({ln["file"] for ln in lines})  # one rewrite per file, one line per key
    wait_for(lambda: portability(machine_b)["rewrites_last_hour"] == files, 5,
             what="status to count every rewrite")
    report = read_through_server(machine_b.url, {run["run_id"]: run["artifact"]},
                                 [("bravo", "1")])
    assert report["predictions"] == {"bravo/1": [11]}


def test_undo_is_refused_while_the_daemon_runs(machine_b):
    journal = machine_b.state_dir / "journal" / "rewrites.jsonl"
    res = guardctl("fix", "--undo", str(journal), "--store", str(machine_b.store),
                   "--state-dir", str(machine_b.state_dir))
    assert res.returncode == 1 and "guardctl stop" in res.stderr


def test_fix_dry_run_fix_and_undo_without_daemon(tmp_path):
    store_a = tmp_path / "A" / "mlruns"
    made = run_direct_client(store_a, "gamma", 1, None, tmp_path / "work")
    store = tmp_path / "B" / "mlruns"
    shutil.copytree(store_a, store)
    before = {p: p.read_bytes() for p in iter_meta_files(store) if p.is_file()}
    quiet = tmp_path / "quiet.yaml"
    quiet.write_text("rewrite:\n  experiment_quiet: 0\n")
    opts = ["--store", str(store), "--state-dir", str(tmp_path / "state")]
    res = guardctl("fix", "--dry-run", *opts)
    assert res.returncode == 0 and "would rewrite 1 run" in res.stdout
    assert "DEFERRED" in res.stdout and "quiet spell" in res.stdout  # just used: waits
    opts += ["--config", str(quiet)]

    res = guardctl("fix", "--dry-run", *opts)
    assert res.returncode == 0 and "would rewrite 2 experiments, 1 run" in res.stdout
    assert {p: p.read_bytes() for p in before} == before

    res = guardctl("fix", *opts)
    assert res.returncode == 0 and "rewrote 2 experiments, 1 run" in res.stdout
    run_meta = store / made["experiment_id"] / made["runs"][0]["run_id"] / "meta.yaml"
    assert yaml.safe_load(run_meta.read_text())["artifact_uri"].startswith("mlflow-artifacts:/")
    assert guardctl("fix", *opts).stdout.count("rewrote nothing") == 1

    journal = tmp_path / "state" / "journal" / "rewrites.jsonl"
    fixed = {p: p.read_bytes() for p in before}
    res = guardctl("fix", "--undo", str(journal), "--dry-run", *opts)
    assert res.returncode == 0 and "would undo: 3" in res.stdout
    assert {p: p.read_bytes() for p in before} == fixed  # a dry run writes nothing
    res = guardctl("fix", "--undo", str(journal), *opts)
    assert res.returncode == 0 and "undone: 3" in res.stdout
    assert {p: p.read_bytes() for p in before} == before


def test_fix_refuses_a_missing_store(tmp_path):
    res = guardctl("fix", "--store", str(tmp_path / "gone"), "--state-dir", str(tmp_path / "s"))
    assert res.returncode == 2 and "does not exist" in res.stderr
    assert not (tmp_path / "gone").exists()


def test_polling_fallback_fixes_a_synced_in_run(new_store, make_guard, tmp_path):
    config = tmp_path / "poll.yaml"
    config.write_text("rewrite:\n  watch: polling\n  poll_interval: 1\n  foreign_delay: 0\n")
    guard = make_guard(new_store, config=config).start()
    guard.wait_healthy()
    wait_for(lambda: portability(guard).get("last_full_pass"), 30, what="first pass")
    assert portability(guard)["watch_mode"] == "polling"
    run_dir = new_store / "0" / uuid.uuid4().hex
    run_dir.mkdir()
    (run_dir / "meta.yaml").write_bytes(metayaml.dump({
        "artifact_uri": f"file:///C:/Users/alice/mlruns/0/{run_dir.name}/artifacts",
        "experiment_id": "0", "lifecycle_stage": "active", "run_id": run_dir.name,
        "run_name": "synced", "status": 3, "start_time": 1, "end_time": 2, "user_id": "alice",
        "source_type": 4, "source_name": "", "entry_point_name": "", "source_version": "",
        "tags": []}))
    wait_for(lambda: "mlflow-artifacts:/0/" in (run_dir / "meta.yaml").read_text(), 15,
             what="polling fix")
    assert "polling" in guard.ctl("status").stdout


def test_two_machines_over_a_synced_store_converge_with_one_rewrite_per_file(
        synced, make_guard, tmp_path):
    (store_a, store_b), syncer = synced(2, delay=0.5)
    assert guardctl("init", "--store", str(store_a)).returncode == 0
    syncer.settle(30)
    configs = {}
    for host in ("hostA", "hostB"):
        configs[host] = tmp_path / f"{host}.yaml"
        configs[host].write_text(f"host_id: {host}\nserver:\n  health_interval: 1\n"
                                 "rewrite:\n  foreign_delay: 5\n  experiment_quiet: 3\n")
    guard_a = make_guard(store_a, state_dir=tmp_path / "stateA", config=configs["hostA"]).start()
    guard_b = make_guard(store_b, state_dir=tmp_path / "stateB", config=configs["hostB"]).start()
    guard_a.wait_healthy()
    guard_b.wait_healthy()

    # Both machines train at once, each opening its own copy of the store directly.
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(2) as pool:
        fut_a = pool.submit(run_direct_client, store_a, "on-a", 2, "model-a", tmp_path / "wa")
        fut_b = pool.submit(run_direct_client, store_b, "on-b", 1, "model-b", tmp_path / "wb")
        made_a, made_b = fut_a.result(), fut_b.result()

    def converged():
        syncer.settle(30)
        pa, pb = portability(guard_a), portability(guard_b)
        if pa.get("pending_foreign") or pb.get("pending_foreign") \
                or pa.get("deferred_in_flight") or pb.get("deferred_in_flight"):
            return False
        va, vb = locations(store_a), locations(store_b)
        return va == vb and all(v.startswith(("mlflow-artifacts:/", "models:/"))
                                for v in va.values()) and va
    values = wait_for(converged, 90, 0.5, what="both machines portable and identical")
    assert len(values) >= 2 * 3 + 2 * 1 + 2  # experiments, runs, logged models, versions

    rewrites: dict = {}
    for state in ("stateA", "stateB"):
        journal = tmp_path / state / "journal" / "rewrites.jsonl"
        for line in journal.read_text().splitlines() if journal.exists() else []:
            rec = json.loads(line)
            rewrites.setdefault((rec["file"], rec["key"]), []).append(state)
    assert rewrites and all(len(hosts) == 1 for hosts in rewrites.values()), rewrites
    assert not list(store_a.rglob("*_Conflict_*")) and not list(store_a.rglob(".guard-tmp-*"))

    artifacts = {r["run_id"]: r["artifact"] for r in made_a["runs"] + made_b["runs"]}
    models = [("model-a", "1"), ("model-a", "2"), ("model-b", "1")]
    for guard in (guard_a, guard_b):
        report = read_through_server(guard.url, artifacts, models)
        assert all(report["artifacts"][r]["content"].startswith("run ") for r in artifacts)
        assert report["predictions"] == {"model-a/1": [11], "model-a/2": [12], "model-b/1": [11]}
