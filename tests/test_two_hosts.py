"""Two machines sharing one store through the simulated sync client, each with its own real
guard daemon and real MLflow clients: cross-machine safety end to end."""

from __future__ import annotations

import os
import time

import pytest

from clients import result_of, start_register_client
from conftest import Guard, free_port, guardctl
from guard.store import init_store

SETTLE = 1.5  # locks.settle: above the simulated sync delay (0.3 s) plus a scan


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    """hostA and hostB: a store each at a different path, synced, each with a guard."""
    from syncsim import Syncer

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    root = tmp_path_factory.mktemp("two-hosts")
    stores = [root / name / "sync" / "mlruns" for name in ("hostA", "hostB")]
    for store in stores:
        store.mkdir(parents=True)
    syncer = Syncer(stores, delay=0.3, host_names=["hostA", "hostB"]).start()
    init_store(stores[0])
    syncer.settle(30)
    guards = []
    try:
        for name, store in zip(("hostA", "hostB"), stores):
            config = root / f"{name}.yaml"
            config.write_text(f"host_id: {name}\nserver:\n  health_interval: 1\n"
                              "peers:\n  heartbeat_interval: 0.5\n  stale_after: 5\n"
                              f"locks:\n  settle: {SETTLE}\n  ttl: 20\n  renew_every: 2\n"
                              "  timeout: 60\n")
            guards.append(Guard(store, root / f"state-{name}", free_port(), config=config))
        for guard in guards:
            guard.start()
        for guard in guards:
            guard.wait_healthy()
        yield guards, syncer
    finally:
        for guard in guards:
            guard.teardown()
        syncer.stop()


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
    out = guardctl("locks", "--all", *a.opts).stdout + guardctl("locks", *b.opts).stdout
    assert "held by" not in out  # every lock was released
