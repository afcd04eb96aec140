"""One experiment per name across machines: two hosts, each with a real guard daemon, over a
simulated sync; real MLflow clients call `mlflow.set_experiment` at the same instant."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.helpers.clients import result_of
from tests.helpers.daemons import guarded_lab, wait_for

pytestmark = pytest.mark.integration  # two real daemons over a simulated sync

SET_EXPERIMENT = r'''
import json, sys, time
import mlflow

url, name, start_at, label = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
mlflow.set_tracking_uri(url)
time.sleep(max(0.0, start_at - time.time()))
exp = mlflow.set_experiment(name)
with mlflow.start_run() as run:
    mlflow.log_param("host", label)
print("RESULT " + json.dumps({"returned": exp.experiment_id, "run_id": run.info.run_id,
                              "run_experiment": run.info.experiment_id}))
'''


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    with guarded_lab(tmp_path_factory.mktemp("exp-names"), ["hostA", "hostB"], 2) as lab:
        guards, _stores, syncer = lab
        yield guards, syncer


def start_set_experiment(url: str, name: str, start_at: float, label: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SET_EXPERIMENT, url, name, str(start_at),
                             label], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ))


def named(url: str, name: str) -> list[str]:
    from mlflow import MlflowClient

    return sorted(e.experiment_id for e in MlflowClient(url).search_experiments()
                  if e.name == name)


def test_set_experiment_on_both_hosts_at_once_gives_one_experiment(hosts):
    """Without the lock each host creates its own "shared"; with the lock but MLflow's own
    RESOURCE_ALREADY_EXISTS answer, the second host's set_experiment returns the winner
    without activating it, and its run lands in the Default experiment."""
    (a, b), syncer = hosts
    start_at = time.time() + 4  # both clients are past their imports by then
    procs = [start_set_experiment(g.url, "shared", start_at, label)
             for g, label in ((a, "A"), (b, "B"))]
    made = [result_of(proc) for proc in procs]
    wait_for(lambda: syncer.settled() and all(len(named(g.url, "shared")) >= 1 for g in (a, b)),
             30, what="the experiment to sync")
    syncer.settle(30)
    (exp_id,) = named(a.url, "shared")
    assert named(b.url, "shared") == [exp_id]
    assert [m["returned"] for m in made] == [exp_id, exp_id], made
    assert [m["run_experiment"] for m in made] == [exp_id, exp_id], made
    from mlflow import MlflowClient

    for guard in (a, b):
        runs = MlflowClient(guard.url).search_runs([exp_id])
        assert sorted(r.data.params["host"] for r in runs) == ["A", "B"]


def test_creating_an_existing_experiment_is_still_refused(hosts):
    """An experiment made long before is MLflow's RESOURCE_ALREADY_EXISTS, as without the
    guard: only a create that lost a race is answered with the winner's id."""
    (a, _b), _syncer = hosts
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(a.url)
    client.create_experiment("older")
    time.sleep(2.0)  # longer than the lab's settle: no longer a race
    with pytest.raises(MlflowException, match="already exists"):
        client.create_experiment("older")


def test_the_server_journals_each_model_version_it_creates(hosts):
    """What lets a host say later which number its client was given (see reconcile's
    notice_renumbered): one line per version its server created."""
    (a, _b), _syncer = hosts
    from mlflow import MlflowClient

    from guard.core.journal import read_journal

    client = MlflowClient(a.url)
    client.create_registered_model("journalled")
    made = client.create_model_version("journalled", "s3://bucket/model")
    lines = [r for r in read_journal(a.state_dir / "journal" / "registrations.jsonl")
             if r["model"] == "journalled"]
    assert [(r["version"], r["creation_timestamp"], r["host"]) for r in lines] == [
        (1, made.creation_timestamp, "hostA")]


def test_two_experiments_made_while_the_sync_was_down_are_merged_for_every_host(hosts):
    """The lock cannot see across a sync that is down: each host creates "twice" and logs a
    run into it. Once synced, both guards report the name held twice and the command; the
    merge on one host moves the newer experiment's run into the older one, and neither
    host's vault brings the emptied experiment or the run's old place back."""
    (a, b), syncer = hosts
    from mlflow import MlflowClient

    syncer.settle(30)
    syncer.pause()
    made = {}
    for guard, label in ((a, "A"), (b, "B")):
        client = MlflowClient(guard.url)
        exp_id = client.create_experiment("twice")
        run = client.create_run(exp_id)
        client.log_param(run.info.run_id, "host", label)
        client.log_metric(run.info.run_id, "loss", 0.5, step=1)
        client.set_terminated(run.info.run_id)
        made[label] = (exp_id, run.info.run_id)
        time.sleep(0.05)  # A's experiment is the older one
    syncer.resume()
    wait_for(lambda: syncer.settled() and all(len(named(g.url, "twice")) == 2 for g in (a, b)),
             60, what="both experiments on both hosts")
    wait_for(lambda: "experiment name 'twice' is held by 2" in a.ctl("status").stdout, 30,
             what="the status line")
    assert "guardctl conflicts --merge-experiments twice" in \
        b.ctl("conflicts", "--store", str(b.store)).stdout

    out = a.ctl("conflicts", "--store", str(a.store), "--merge-experiments", "twice", "--yes")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "every moved run reads through MLflow" in out.stdout
    keep, gone = made["A"][0], made["B"][0]
    syncer.settle(30)
    time.sleep(6)  # several vault passes past locks.settle: nothing may come back
    syncer.settle(30)
    for guard in (a, b):
        assert named(guard.url, "twice") == [keep]
        runs = MlflowClient(guard.url).search_runs([keep])
        assert sorted(r.data.params["host"] for r in runs) == ["A", "B"]
        assert not (guard.store / gone).exists()
        assert MlflowClient(guard.url).get_metric_history(made["B"][1], "loss")[0].value == 0.5
    wait_for(lambda: "experiment name 'twice'" not in b.ctl("status").stdout, 30,
             what="the status line to go")


def test_a_renumbered_version_is_told_in_status_and_in_its_registering_hosts_journal(hosts):
    """Both hosts register version 1 of one model while the sync is down; hostB's, created
    later, becomes version 2. Both statuses say so, naming hostB; hostB's journal says its
    client was given version 1 and it is now version 2; hostA's says nothing of the kind."""
    (a, b), syncer = hosts
    from mlflow import MlflowClient

    from guard.sync.reconcile import read_records

    syncer.settle(30)
    syncer.pause()
    for guard in (a, b):
        client = MlflowClient(guard.url)
        client.create_registered_model("told")
        client.create_model_version("told", f"s3://bucket/{guard.store.parent.parent.name}")
        time.sleep(0.05)  # hostB's version is the later one
    syncer.resume()
    line = "renumbered model 'told': was version 1 on hostB, now 2"
    wait_for(lambda: syncer.settled() and all(line in g.ctl("status").stdout for g in (a, b)),
             90, what="both statuses to tell the renumbering")

    def told(guard) -> list[tuple]:
        return [(r["given"], r["now"]) for r in read_records(
            guard.state_dir / "journal" / "conflicts.jsonl")
            if r.get("action") == "renumbered" and r.get("model") == "told"]

    wait_for(lambda: told(b) == [(1, 2)], 30, what="hostB's journal")
    assert told(a) == []
    out = b.ctl("conflicts", "--store", str(b.store)).stdout
    assert "was given version 1; it is now version 2" in out and line[len("renumbered "):] in out
