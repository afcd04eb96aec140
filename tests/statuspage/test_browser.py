"""The status page in a real headless Chromium against a real guard daemon and its MLflow
server: it renders, refreshes by itself into DEGRADED when a part fails, lists a request the
guard refused, shows hostile names from the store as text, and logs no error."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from guard.sync.peers import Heartbeat, publish
from tests.helpers.daemons import healthy_guard
from tests.statuspage.browser import chromium, require_browser

pytestmark = pytest.mark.integration

HOSTILE_HOST = "evil<img src=x onerror=window.__pwned=1>\nMALLORY"
HOSTILE_PLATFORM = "<script>window.__pwned=2</script>"


def hostile_peer(store) -> None:
    """Another machine's heartbeat, as sync brings it, with markup and a newline in it."""
    now = time.time()
    publish(store, Heartbeat(HOSTILE_HOST, 4321, "0.1.0", "3.17.2", HOSTILE_PLATFORM,
                             "/elsewhere/mlruns", now, now, 1.0, "running", now))


def text(page, selector: str) -> str:
    return page.locator(selector).inner_text()


def wait_text(page, selector: str, wanted: str, timeout_s: float) -> float:
    """Seconds until `wanted` is in the element's text, without reloading the page (the
    page's CSP forbids eval, so no wait_for_function with a string)."""
    from playwright.sync_api import expect

    start = time.monotonic()
    expect(page.locator(selector)).to_contain_text(wanted, timeout=timeout_s * 1000)
    return time.monotonic() - start


def stand_in_gc(store) -> subprocess.Popen:
    """A process whose command line is `mlflow gc` aimed at the store (what the guard's gc
    watch looks for); it sleeps instead of deleting."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "mlflow",
                             "gc", "--backend-store-uri", store.as_uri()])


def test_the_status_page_in_a_real_browser(new_store, make_guard, tmp_path):
    require_browser()
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    hostile_peer(new_store)
    guard = healthy_guard(new_store, make_guard, tmp_path)
    url = guard.url + "/guard/"
    gc = None
    with chromium() as (page, errors):
        start = time.monotonic()
        page.goto(url)
        wait_text(page, "#verdict", "OK", 10)
        loaded = time.monotonic() - start
        print(f"\nstatus page: navigation to rendered verdict {loaded * 1000:.0f} ms")
        assert loaded < 5.0  # under a second on an idle machine; CI shares its cores
        assert text(page, "#reason") == "serving"
        overview = text(page, "#overview")
        assert str(new_store) in overview and "running; pid" in overview
        assert "answering" in overview

        # names from the store are text: no markup made, no script run, newline escaped
        peers = text(page, "#peers")
        assert HOSTILE_PLATFORM in peers
        assert "evil<img src=x onerror=window.__pwned=1>\\nMALLORY" in peers
        assert page.evaluate("window.__pwned") is None
        assert page.evaluate("document.querySelectorAll('img, script:not([src])').length") == 0

        # a request the guard refuses, sent by MLflow's own client, is listed with its reason
        client = MlflowClient(guard.url)
        with pytest.raises(MlflowException) as refused:
            client.delete_traces("0", max_timestamp_millis=int(time.time() * 1000))
        assert "Deleting traces is blocked by mlflow-sync-guard" in str(refused.value)
        assert "/guard/" in str(refused.value)
        wait_text(page, "#refusals", "delete traces", 10)
        row = text(page, "#refusals tbody tr:first-child")
        assert "/mlflow/traces/delete-traces" in row
        assert "Deleting traces is blocked" in row and "To hide traces" in row

        # a part fails: the page turns DEGRADED by itself, with the reason
        gc = stand_in_gc(new_store)
        took = wait_text(page, "#verdict", "DEGRADED", 30)
        print(f"status page: DEGRADED shown {took:.1f} s after `mlflow gc` started")
        assert "`mlflow gc` is running against the store" in text(page, "#reason")
        assert f"pid {gc.pid}" in text(page, "#todo")
        gc.kill()
        gc.wait(10)
        gc = None
        wait_text(page, "#verdict", "OK", 30)
        assert errors == []
    if gc is not None:
        gc.kill()
        gc.wait(10)
    assert not os.path.exists(tmp_path / "pwned")
