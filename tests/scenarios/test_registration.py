"""Model registration through a real guard: what the cross-machine lock costs it.

Alone (no other host's live heartbeat) a registration settles not at all; with a live peer
it settles once for the sync delay the heartbeats measure, a new model too: the lock taken for
registered-models/create lingers (locks.LINGER) and model-versions/create, which
register_model sends next, takes it over without a second claim (before: two settles)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from guard.sync import peers
from tests.helpers.clients import result_of
from tests.helpers.daemons import wait_for

pytestmark = pytest.mark.integration  # a real daemon, MLflow server and client

SETTLE = 3.0  # locks.settle, the ceiling
MEASURED = 1.0  # the settle the heartbeats measure with the ghost peer 0.2 s behind

# A child: one run with a pyfunc model (not timed), then `mlflow.register_model` timed for a
# new model name and again for the same name (the next version).
TIMED_REGISTER = r'''
import json, sys, time
import mlflow
from mlflow.pyfunc import PythonModel

url, name = sys.argv[1], sys.argv[2]
mlflow.set_tracking_uri(url)

class One(PythonModel):
    def predict(self, context, model_input):
        return model_input

mlflow.set_experiment("registration")
with mlflow.start_run() as run:
    mlflow.pyfunc.log_model(name="model", python_model=One())
out = {}
for key in ("new", "existing"):
    start = time.monotonic()
    mv = mlflow.register_model(f"runs:/{run.info.run_id}/model", name)
    out[key] = [time.monotonic() - start, mv.version]
print("RESULT " + json.dumps(out))
'''


def timed_register(url: str, name: str) -> dict:
    proc = subprocess.Popen([sys.executable, "-c", TIMED_REGISTER, url, name],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ))
    return result_of(proc, timeout=300)


def ghost_beat(now: float, lag: float, state: str = "running") -> peers.Heartbeat:
    """Another host's heartbeat, written `lag` seconds before it lands here."""
    return peers.Heartbeat("ghost", 1, "0", "3.17.2", "linux", "/elsewhere", now - 100,
                           now - lag, 0.5, state, beating_since=now - 100)


def test_registration_alone_settles_not_at_all_and_once_with_a_peer_for_a_new_model_too(
        new_store, make_guard, tmp_path):
    config = tmp_path / "guard.yaml"
    config.write_text("server:\n  health_interval: 1\n"
                      f"locks:\n  settle: {SETTLE:g}\n  skew: 0\n  timeout: 30\n"
                      "peers:\n  heartbeat_interval: 1\n  stale_after: 10\n")
    guard = make_guard(new_store, config=config).start()
    guard.wait_healthy()

    def announced() -> bool:  # our heartbeat series has reached every host (settle.py)
        mine = [b for b in peers.read_all(new_store) if b.host_id != "ghost"]
        return bool(mine) and mine[0].beating_since is not None \
            and time.time() > mine[0].beating_since + SETTLE
    wait_for(announced, 60, what="the guard's heartbeat series to be announced")

    alone = timed_register(guard.url, "alone")

    stop = threading.Event()

    def ghost() -> None:  # a live peer whose heartbeats arrive 0.2 s after they are written
        while not stop.wait(0.3):
            peers.publish(new_store, ghost_beat(time.time(), 0.2))
    thread = threading.Thread(target=ghost, daemon=True)
    peers.publish(new_store, ghost_beat(time.time(), 0.2))
    thread.start()
    try:
        with_peer = timed_register(guard.url, "with-peer")
    finally:
        stop.set()
        thread.join(5)
        peers.publish(new_store, ghost_beat(time.time(), 0.2, state="stopped"))

    # the settles alone: what a registration costs beyond the same one without a peer
    new = with_peer["new"][0] - alone["new"][0]
    existing = with_peer["existing"][0] - alone["existing"][0]
    print(f"\nregister_model alone: new model {alone['new'][0]:.2f} s, next version "
          f"{alone['existing'][0]:.2f} s; with a live peer 0.2 s behind (settle "
          f"{MEASURED:g} s): new model {with_peer['new'][0]:.2f} s, next version "
          f"{with_peer['existing'][0]:.2f} s; beyond alone: new model {new:.2f} s = "
          f"{new / MEASURED:.2f} x settle, next version {existing:.2f} s "
          f"(locks.settle {SETTLE:g} s)")
    assert [alone["new"][1], alone["existing"][1]] == ["1", "2"]
    assert [with_peer["new"][1], with_peer["existing"][1]] == ["1", "2"]
    # alone: no settle at all (before issue 14: 2 * locks.settle for a new model, 30 s by
    # default; here 6 s): a generous bound, the real figure is the benchmark's
    assert alone["new"][0] < SETTLE and alone["existing"][0] < SETTLE
    # with the peer: one settle, for a new model as for the next version (the lock of
    # registered-models/create lingers into model-versions/create; without it: 2 x)
    assert with_peer["new"][0] >= MEASURED and with_peer["existing"][0] >= MEASURED
    assert new < 1.6 * MEASURED, f"a new model settled {new / MEASURED:.2f} x, not once"
    assert with_peer["new"][0] < SETTLE + 5
