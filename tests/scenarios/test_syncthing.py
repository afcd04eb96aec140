"""Two machines sharing one store through real Syncthing (tests/helpers/syncthing.py), each
with its own real guard daemon and real MLflow clients: what test_two_hosts.py checks on the
simulator, against the sync client itself (its lag, its conflict names, its deletions)."""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from guard.sync.reconcile import find_copies
from tests.helpers.clients import (
    read_through_server,
    result_of,
    start_training_client,
)
from tests.helpers.daemons import guardctl, wait_for
from tests.helpers.syncthing import LAB_SETTLE, guarded_syncthing_lab, require

pytestmark = pytest.mark.integration  # two real daemons over two real Syncthing instances


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """hostA and hostB: the shared folder at two paths, a guard each (locks.settle 3 s)."""
    require()
    with guarded_syncthing_lab(tmp_path_factory.mktemp("syncthing")) as (st, guards, stores):
        lag = max(st.latency(0, 1, 2) + st.latency(1, 0, 2))
        assert lag < LAB_SETTLE, f"Syncthing lag {lag:.2f}s is not below locks.settle"
        yield st, guards


def conflict_copies(st) -> list[str]:
    """Every Syncthing conflict copy anywhere in the shared folders (store or not)."""
    return [f"{host}:{rel}" for i, host in enumerate(st.hosts) for rel in st.tree(i)
            if ".sync-conflict-" in rel]


def clean(st, guards) -> bool:
    return st.in_sync() and not conflict_copies(st) and all(not find_copies(g.store)
                                                            for g in guards)


def test_training_and_registering_one_model_on_both_hosts(lab, tmp_path):
    """Two training scripts at once, one per host through its own guard, registering versions
    of one model name, plus a script on hostA that opens the store folder directly: afterwards
    both hosts' servers list every run with its params, metrics, tags and artifacts, every model
    version loads, and the version numbers are distinct."""
    st, (a, b) = lab
    procs = [start_training_client(g.url, f"train-{name}", 2, "team", tmp_path / name)
             for g, name in ((a, "A"), (b, "B"))]
    direct = start_training_client(a.store.as_uri(), "direct-A", 1, None, tmp_path / "direct")
    made = [result_of(proc, 600) for proc in procs]
    local = result_of(direct, 600)
    versions = [v["version"] for result in made for v in result["versions"]]
    assert sorted(versions, key=int) == ["1", "2", "3", "4"], made
    (direct_run,) = local["runs"]
    meta = a.store / local["experiment_id"] / direct_run["run_id"] / "meta.yaml"
    wait_for(lambda: "mlflow-artifacts:/" in meta.read_text(), 60,
             what="the direct run's artifact path to be made portable")
    wait_for(lambda: clean(st, (a, b)), 90, what="sync and no conflict copy")
    from mlflow import MlflowClient

    runs = [run for result in made for run in result["runs"]] + [direct_run]
    artifacts = {run["run_id"]: run["artifact"] for run in runs}
    with ThreadPoolExecutor(2) as pool:  # one reading client per host, at once
        reports = list(pool.map(lambda g: read_through_server(
            g.url, artifacts, [("team", v) for v in versions]), (a, b)))
    for guard, report in zip((a, b), reports):
        client = MlflowClient(guard.url)
        for result, name in zip(made + [local], ("train-A", "train-B", "direct-A")):
            for run in result["runs"]:
                got = client.get_run(run["run_id"])
                assert got.data.tags["origin"] == name
                assert got.data.params["i"] in ("0", "1")
                steps = {m.step for m in client.get_metric_history(run["run_id"], "loss")}
                assert steps == {0, 1, 2}
        listed = client.search_model_versions("name = 'team'")
        assert sorted(mv.version for mv in listed) == sorted(versions)
        for run in runs:
            assert report["artifacts"][run["run_id"]]["listed"] == [run["artifact"]]
            assert report["artifacts"][run["run_id"]]["content"].startswith("run ")
        adds = {v["version"]: v["add"] for result in made for v in result["versions"]}
        for version in versions:
            assert report["predictions"][f"team/{version}"] == [10 + adds[version]]


def test_host_offline_and_back_loses_nothing(lab):
    """hostA goes offline (Syncthing paused) while both hosts keep working: a new experiment
    with runs on each side and metric points on one shared run from both. Back online, every
    run and every point is on both hosts."""
    st, (a, b) = lab
    from mlflow import MlflowClient

    shared = MlflowClient(a.url).create_run("0").info.run_id
    wait_for(lambda: st.in_sync() and (b.store / "0" / shared / "meta.yaml").exists(), 60,
             what="the shared run to reach hostB")
    st.pause(0)
    made: dict[str, list[str]] = {}
    for guard, name, steps in ((a, "A", range(0, 3)), (b, "B", range(3, 6))):
        client = MlflowClient(guard.url)
        exp = client.create_experiment(f"offline-{name}")
        made[name] = []
        for i in range(2):
            run = client.create_run(exp).info.run_id
            client.log_param(run, "host", name)
            client.log_metric(run, "acc", 0.5 + i / 10, step=i)
            client.log_text(run, f"written on {name} while offline", "notes/offline.txt")
            client.set_terminated(run)
            made[name].append(run)
        for step in steps:
            client.log_metric(shared, "loss", 1.0 / (step + 1), step=step)
    time.sleep(2)  # both Syncthings have scanned their own side meanwhile
    st.resume(0)

    def everything_everywhere() -> bool:
        if not clean(st, (a, b)):
            return False
        for guard in (a, b):
            client = MlflowClient(guard.url)
            history = client.get_metric_history(shared, "loss")
            if sorted(m.step for m in history) != list(range(6)):
                return False
        return True

    wait_for(everything_everywhere, 90, what="both sides' offline work on both hosts")
    for guard in (a, b):
        client = MlflowClient(guard.url)
        for name, runs in made.items():
            exp = client.get_experiment_by_name(f"offline-{name}")
            assert exp is not None
            found = {r.info.run_id for r in client.search_runs([exp.experiment_id])}
            assert found == set(runs)
            for run in runs:
                got = client.get_run(run)
                assert got.data.params["host"] == name and got.info.status == "FINISHED"
                assert client.download_artifacts(run, "notes/offline.txt")


def test_conflict_copies_named_by_syncthing_are_resolved(lab):
    """Both hosts rename one run and set one tag to different values while offline: Syncthing
    leaves `<name>.sync-conflict-<date>-<time>-<device>` copies of meta.yaml and the tag files;
    the guards resolve them, both hosts end with the same values and no copy in the store."""
    st, (a, b) = lab
    from mlflow import MlflowClient

    run = MlflowClient(a.url).create_run("0").info.run_id
    wait_for(lambda: st.in_sync() and (b.store / "0" / run / "meta.yaml").exists(), 60,
             what="the run to reach hostB")
    st.pause(0)
    for guard, name in ((a, "A"), (b, "B")):
        client = MlflowClient(guard.url)
        client.set_tag(run, "stage", f"set on {name}")
        client.update_run(run, name=f"renamed-on-{name}")
        time.sleep(1.1)  # B's edit is the newer one, by a whole second of mtime
    time.sleep(2)
    journal_before = {g.state_dir: _journal_lines(g) for g in (a, b)}
    st.resume(0)

    def resolved() -> bool:
        return clean(st, (a, b)) and sum(_journal_lines(g) - journal_before[g.state_dir]
                                         for g in (a, b)) > 0
    wait_for(resolved, 90, what="the conflict copies to be resolved on both hosts")
    seen = []
    for guard in (a, b):
        got = MlflowClient(guard.url).get_run(run)
        seen.append((got.data.tags["stage"], got.info.run_name))
    assert seen[0] == seen[1] == ("set on B", "renamed-on-B"), seen
    journal = "".join(_journal_text(g) for g in (a, b))
    assert ".sync-conflict-" in journal  # they were Syncthing's copies, and the guard saw them
    out = "".join(guardctl("conflicts", "--all", "--store", str(g.store),
                           *g.opts_for("conflicts")).stdout for g in (a, b))
    assert "sync-conflict" in out, out


def _journal_text(guard) -> str:
    path = guard.state_dir / "journal" / "conflicts.jsonl"
    return path.read_text() if path.exists() else ""


def _journal_lines(guard) -> int:
    return len(_journal_text(guard).splitlines())


def test_run_removed_on_one_host_comes_back_on_both(lab):
    """`rm -rf` of a run folder on hostA: Syncthing replays the deletion to hostB, and the
    vaults put the run back on both hosts, whole, with no conflict copy."""
    st, (a, b) = lab
    from mlflow import MlflowClient

    client = MlflowClient(a.url)
    run = client.create_run("0").info.run_id
    client.log_param(run, "p", "1")
    client.log_metric(run, "m", 2.0)
    client.log_text(run, "precious", "out/result.txt")
    client.set_terminated(run)
    folder = ("0", run)
    wait_for(lambda: st.in_sync() and (b.store.joinpath(*folder) / "artifacts" / "out"
                                       / "result.txt").exists(), 60,
             what="the run to reach hostB")
    before = {rel: digest for rel, digest in st.tree(0).items()
              if rel.startswith(f"mlruns/0/{run}")}
    shutil.rmtree(a.store.joinpath(*folder))
    # Syncthing holds removals back to pair them with creations (renames); a rescan makes it
    # send this one now, so hostB really deletes the run before hostA's vault (locks.settle
    # later) puts it back.
    st.rescan(0)
    wait_for(lambda: not b.store.joinpath(*folder).exists(), 10, interval=0.02,
             what="the deletion to reach hostB")

    def back_everywhere() -> bool:
        if not clean(st, (a, b)):
            return False
        return all({rel: d for rel, d in st.tree(i).items() if rel.startswith(f"mlruns/0/{run}")}
                   == before for i in (0, 1))

    # Twice, 3 s apart: two vaults restoring at once can look settled for an instant before
    # the Syncthings have exchanged what each wrote.
    wait_for(lambda: back_everywhere() and not time.sleep(3) and back_everywhere(), 90,
             interval=0.05, what="the run to be restored on both hosts")
    # A pull that failed half way leaves Syncthing's temp file behind (kept 24 h), and MLflow
    # reads one in params/ as a param named ".syncthing.p.tmp".
    leftovers = [f"{g.store}/{p.relative_to(g.store)}" for g in (a, b)
                 for p in g.store.joinpath(*folder).rglob(".syncthing.*")]
    assert not leftovers, leftovers
    for guard in (a, b):
        got = MlflowClient(guard.url)
        assert got.get_run(run).data.params == {"p": "1"}
        assert got.download_artifacts(run, "out/result.txt")
    # "restored" counts a restore once MLflow opened it (checked in a child process)
    wait_for(lambda: any((g.status().get("vault") or {}).get("restored") for g in (a, b)), 60,
             what="a vault to report the restore")
    print("vault restores (hostA, hostB):",
          [(g.status().get("vault") or {}).get("restored") for g in (a, b)])
    # in sync again (the status polls above may have raced a heartbeat), and no copy left
    wait_for(lambda: clean(st, (a, b)), 30, what="sync and no conflict copy")
