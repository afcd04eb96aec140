"""Fixtures for every test folder; their machinery is in tests/helpers/.

The fixtures run the real daemon and real MLflow servers on free loopback ports.

Every process a test starts is tracked by pid and ended by pid at teardown, together with the
server tree the daemon recorded; nothing is ever ended by name (the machine is shared).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from guard.core.store import init_store
from tests.helpers.daemons import Guard, free_port


@pytest.fixture
def new_store(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    store = tmp_path / "mlruns"
    init_store(store)
    return store


@pytest.fixture
def make_guard(tmp_path):
    """Factory for daemons; each one is stopped and its tree ended at teardown."""
    made: list[Guard] = []

    def make(store: Path, state_dir: Path | None = None, port: int | None = None, **kw) -> Guard:
        guard = Guard(store, state_dir or tmp_path / f"state{len(made)}", port or free_port(), **kw)
        made.append(guard)
        return guard

    yield make
    for guard in made:
        guard.teardown()


@pytest.fixture(scope="module")
def shared_guard(tmp_path_factory):
    """One healthy daemon shared by a module's tests (a server takes seconds to start)."""
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    root = tmp_path_factory.mktemp("shared")
    store = root / "mlruns"
    init_store(store)
    config = root / "guard.yaml"
    config.write_text(
        "server:\n  health_interval: 1\n  health_failures: 2\n  stop_grace: 5\n"
        "restart:\n  crash_loop_count: 3\n  crash_loop_window: 600\n  backoff_initial: 0.5\n")
    guard = Guard(store, root / "state", free_port(), config=config).start()
    try:
        guard.wait_healthy()
        yield guard
    finally:
        guard.teardown()


@pytest.fixture
def synced(tmp_path):
    """Factory: N host folders at different paths kept in sync by a simulated sync client
    (tests/helpers/syncsim.py) with a delay; the Syncers are stopped at teardown."""
    from tests.helpers.syncsim import Syncer

    started: list = []

    def make(hosts: int = 2, delay: float = 0.5, **kw):
        folders = [tmp_path / f"host{chr(65 + i)}" / "sync" / "mlruns" for i in range(hosts)]
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
        syncer = Syncer(folders, delay=delay, host_names=[f"host{chr(65 + i)}"
                                                          for i in range(hosts)], **kw).start()
        started.append(syncer)
        return folders, syncer

    yield make
    for syncer in started:
        syncer.stop()


@pytest.fixture
def syncthing_pair(tmp_path):
    """Two real Syncthing instances (tests/helpers/syncthing.py) sharing one folder, mounted at
    `lab.folders[0]` (hostA) and `lab.folders[1]` (hostB), connected and in sync; both are
    ended by pid at teardown. Skips when syncthing is not installed (fails in CI)."""
    from tests.helpers.syncthing import SyncthingLab, require

    require()
    with SyncthingLab(tmp_path / "st") as lab:
        yield lab


@pytest.fixture(scope="session")
def postgres_server():
    """One throwaway PostgreSQL server for the session (tests/helpers/postgres.py): on
    127.0.0.1 on a free port, trust auth, fsync off; ended by pid at the end. Skips when
    Debian's postgresql is not installed (fails in CI)."""
    from tests.helpers.postgres import PostgresServer, require

    server = PostgresServer(require()).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server) -> Iterator[str]:
    """A new empty database on `postgres_server` for this test, as a SQLAlchemy URL
    (postgresql://postgres@127.0.0.1:<port>/<db>); dropped afterwards."""
    name = postgres_server.create_database()
    yield postgres_server.url(name)
    postgres_server.drop_database(name)


# ---- the inner loop: `pytest -m "not integration"` runs in seconds ---------------------------
# An integration test starts real processes (a daemon, an MLflow server, `guardctl`, any
# subprocess) or a simulated sync client. Tests using these fixtures are marked here; a module
# whose tests all are says `pytestmark = pytest.mark.integration`, a single test
# `@pytest.mark.integration`.
INTEGRATION_FIXTURES = frozenset({"make_guard", "shared_guard", "synced",
                                  "syncthing_pair", "postgres_server", "postgres_url"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    """Text naming a file that is not UTF-8 (surrogate escapes), in a failure or in captured
    output, cannot travel from an xdist worker and would crash the whole run, hiding which test
    it was: escape it here."""
    outcome = yield
    report = outcome.get_result()
    if report.longrepr is not None and not _utf8(str(report.longrepr)):
        report.longrepr = _escaped(str(report.longrepr))
    report.sections = [(title, text if _utf8(text) else _escaped(text))
                       for title, text in report.sections]


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _escaped(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@pytest.fixture(autouse=True)
def _no_tracking_uri_left_behind():
    """A test that sets MLflow's global tracking URI in this process must not send a later
    test's MLflow lookups to a server that is gone (MLflow retries them for minutes)."""
    yield
    import sys

    if "mlflow" in sys.modules:
        import mlflow

        mlflow.set_tracking_uri(None)
