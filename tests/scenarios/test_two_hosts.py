"""Two machines sharing one store through the simulated sync client, each with its own real
guard daemon and real MLflow clients: cross-machine safety end to end."""

from __future__ import annotations

import time

import pytest

from guard.sync.reconcile import RENUMBERED_TAG, find_copies
from tests.helpers.clients import (
    read_through_server,
    result_of,
    start_register_client,
    start_training_client,
)
from tests.helpers.daemons import guardctl, guarded_lab, wait_for

pytestmark = pytest.mark.integration  # two real daemons over a simulated sync



@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    """hostA and hostB: a store each at a different path, synced, each with a guard."""
    with guarded_lab(tmp_path_factory.mktemp("two-hosts"), ["hostA", "hostB"], 2) as lab:
        guards, _stores, syncer = lab
        yield guards, syncer


def versions_on(url: str, name: str) -> list[tuple[str, str, str]]:
    from mlflow import MlflowClient

    found = MlflowClient(url).search_model_versions(f"name = '{name}'")
    return sorted((mv.version, mv.tags.get("label", ""), mv.tags.get("i", "")) for mv in found)


def test_registering_one_model_on_both_hosts_at_once_gives_distinct_versions(hosts):
    (a, b), syncer = hosts
    start_at = time.time() + 3  # both clients are past their imports by then
    procs = [start_register_client(a.url, "shared", 3, start_at, "A"),
             start_register_client(b.url, "shared", 3, start_at, "B")]
    made = [result_of(proc) for proc in procs]
    numbers = [entry["version"] for result in made for entry in result]
    assert sorted(numbers, key=int) == [str(n) for n in range(1, 7)], made
    syncer.settle(30)
    expected = sorted([(entry["version"], label, str(entry["i"]))
                       for label, result in zip("AB", made) for entry in result])
    for guard in (a, b):
        assert versions_on(guard.url, "shared") == expected
    out = "".join(guardctl("locks", "--store", str(g.store), *g.opts_for("locks")).stdout
                  for g in (a, b))
    assert out.count("no locks held") == 2  # every lock was released


def no_copies_left(guards) -> bool:
    return all(not find_copies(g.store) for g in guards)


def test_same_version_number_on_both_hosts_while_sync_is_down_keeps_both(hosts):
    """With the sync paused the locks cannot see each other: both hosts write version-1 of
    the same model. Once the sync is back, the guards renumber one of them; none is lost."""
    (a, b), syncer = hosts
    syncer.settle(30)
    syncer.pause()
    start_at = time.time() + 2
    procs = [start_register_client(a.url, "offline", 1, start_at, "A"),
             start_register_client(b.url, "offline", 1, start_at, "B")]
    made = [result_of(proc) for proc in procs]
    assert [r[0]["version"] for r in made] == ["1", "1"]  # the collision the guard must fix
    syncer.resume()
    wait_for(lambda: syncer.settled() and no_copies_left((a, b))
             and all(len(versions_on(g.url, "offline")) == 2 for g in (a, b)), 90,
             what="the duplicate version to be renumbered on both hosts")
    syncer.settle(30)
    from mlflow import MlflowClient

    for guard in (a, b):
        found = MlflowClient(guard.url).search_model_versions("name = 'offline'")
        assert sorted(mv.version for mv in found) == ["1", "2"]
        assert sorted(mv.run_id for mv in found) == sorted(r[0]["run_id"] for r in made)
        (moved,) = [mv for mv in found if mv.version == "2"]
        assert moved.tags[RENUMBERED_TAG].startswith("version 1: registered on two machines")
    assert no_copies_left((a, b))
    out = "".join(guardctl("conflicts", "--store", str(g.store),
                           *g.opts_for("conflicts")).stdout for g in (a, b))
    assert "[renumber]" in out and "kept:" in out


def test_both_hosts_logging_to_one_run_while_sync_is_down_keep_every_point(hosts):
    (a, b), syncer = hosts
    from mlflow import MlflowClient

    run = MlflowClient(a.url).create_run("0")
    run_id = run.info.run_id
    wait_for(lambda: syncer.settled() and (b.store / "0" / run_id / "meta.yaml").exists(), 30)
    syncer.pause()
    for guard, steps in ((a, range(0, 3)), (b, range(3, 6))):
        client = MlflowClient(guard.url)
        for step in steps:
            client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
        client.log_param(run_id, "lr", "0.1")  # the same value on both: no real conflict
    syncer.resume()

    def every_point_everywhere() -> bool:
        return syncer.settled() and no_copies_left((a, b)) and all(
            sorted(m.step for m in MlflowClient(g.url).get_metric_history(run_id, "loss"))
            == list(range(6)) for g in (a, b))

    wait_for(every_point_everywhere, 90, what="the metric histories to be merged")
    for guard in (a, b):
        assert MlflowClient(guard.url).get_run(run_id).data.params["lr"] == "0.1"


def test_training_on_both_hosts_at_once_every_record_readable_everywhere(hosts, tmp_path):
    """Two training scripts, one per host, each through its own host's guard: runs, params,
    metric points, tags, artifacts and registered model versions of both are present and
    readable through both hosts' servers; no conflict copy is left."""
    (a, b), syncer = hosts
    procs = [start_training_client(g.url, f"train-{name}", 2, "team", tmp_path / name)
             for g, name in ((a, "A"), (b, "B"))]
    made = [result_of(proc, 600) for proc in procs]
    versions = [v["version"] for result in made for v in result["versions"]]
    assert sorted(versions, key=int) == ["1", "2", "3", "4"]  # distinct, by the model lock
    wait_for(lambda: syncer.settled() and no_copies_left((a, b)), 60, what="sync and cleanup")
    from mlflow import MlflowClient

    runs = [run for result in made for run in result["runs"]]
    artifacts = {run["run_id"]: run["artifact"] for run in runs}
    models = [("team", v) for v in versions]
    for guard in (a, b):
        client = MlflowClient(guard.url)
        for result, name in zip(made, "AB"):
            for run in result["runs"]:
                got = client.get_run(run["run_id"])
                assert got.data.params["i"] in ("0", "1")
                assert got.data.tags["origin"] == f"train-{name}"
                # MLflow 3 itself writes step 0 a second time when log_model links the run's
                # metrics to the logged model; the guard neither adds nor drops a point
                steps = [m.step for m in client.get_metric_history(run["run_id"], "loss")]
                assert sorted(set(steps)) == [0, 1, 2]
                assert steps == [m.step for m in MlflowClient(a.url).get_metric_history(
                    run["run_id"], "loss")]
        report = read_through_server(guard.url, artifacts, models)
        for run in runs:
            assert report["artifacts"][run["run_id"]]["content"].startswith("run ")
        adds = {v["version"]: v["add"] for result in made for v in result["versions"]}
        for version in versions:
            assert report["predictions"][f"team/{version}"] == [10 + adds[version]]
