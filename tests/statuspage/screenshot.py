"""The README's screenshot of the status page: `python -m tests.statuspage.screenshot`.

Starts a real guard over a temporary store with a little data (an experiment, a run, a
registered model and its version), another machine's heartbeat and a lock it holds (written
as the sync client would bring them), and one refused request (MLflow's client deleting
traces), then saves docs/status-page.png from headless Chromium.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from guard.core.store import init_store
from guard.sync.locks import LeaseLock
from guard.sync.peers import Heartbeat, publish
from tests.helpers.daemons import Guard, free_port
from tests.statuspage.browser import chromium

OUT = Path(__file__).resolve().parents[2] / "docs" / "status-page.png"


def beat(store: Path, stop: threading.Event) -> None:
    """office-pc's heartbeat, fresh every second, as its guard would publish it."""
    started = time.time()
    while not stop.is_set():
        now = time.time()
        publish(store, Heartbeat("office-pc", 2210, "0.1.0", "3.17.2", "Linux-6.1-x86_64",
                                 "/home/lab/Sync/mlruns", started, now - 0.8, 1.0, "running",
                                 started))
        stop.wait(1.0)


def main() -> int:
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory(prefix="guard-shot-") as tmp:
        root = Path(tmp)
        store = root / "Sync" / "mlruns"
        store.parent.mkdir()
        init_store(store)
        config = root / "guard.yaml"
        config.write_text("host_id: lab-pc\nserver:\n  health_interval: 1\npeers:\n"
                          "  heartbeat_interval: 1\n  stale_after: 10\nlocks:\n  settle: 1\n")
        stop = threading.Event()
        threading.Thread(target=beat, args=(store, stop), daemon=True).start()
        guard = Guard(store, root / "state", free_port(), config=config).start()
        lock = None
        try:
            guard.wait_healthy()
            client = MlflowClient(guard.url)
            exp = client.create_experiment("resnet-sweep")
            run = client.create_run(exp)
            client.log_metric(run.info.run_id, "accuracy", 0.93)
            client.set_terminated(run.info.run_id)
            client.create_registered_model("resnet50")
            client.create_model_version("resnet50", f"runs:/{run.info.run_id}/model",
                                        run.info.run_id)  # a line in the registration journal
            try:
                client.delete_traces(exp, max_timestamp_millis=int(time.time() * 1000))
            except MlflowException as exc:
                print("refused as expected:", str(exc)[:100])
            lock = LeaseLock(store, "office-pc", "model-resnet50", settle=1.0, ttl=30.0,
                             renew_every=1.0)
            lock.acquire(timeout=30)
            time.sleep(3)  # the vault's and the conflicts' first passes
            OUT.parent.mkdir(exist_ok=True)
            with chromium(width=1280, height=1000) as (page, errors):
                page.goto(guard.url + "/guard/")
                from playwright.sync_api import expect

                expect(page.locator("#verdict")).to_have_text("OK", timeout=15_000)
                expect(page.locator("#peers")).to_contain_text("office-pc", timeout=15_000)
                expect(page.locator("#locks")).to_contain_text("model-resnet50", timeout=15_000)
                page.screenshot(path=str(OUT), full_page=True)
                if errors:
                    print("page errors:", errors)
                    return 1
            print(f"saved {OUT}")
            return 0
        finally:
            if lock is not None:
                lock.release()
            stop.set()
            guard.teardown()


if __name__ == "__main__":
    sys.exit(main())
