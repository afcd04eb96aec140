"""The throwaway PostgreSQL of tests/helpers/postgres.py (the `postgres_server` and
`postgres_url` fixtures) that `guardctl migrate --to postgresql://...` is tested against."""

from __future__ import annotations

import psutil
import pytest

from tests.helpers.postgres import PostgresServer, require

pytestmark = pytest.mark.integration

sqlalchemy = pytest.importorskip("sqlalchemy")

SEEN: dict[str, str] = {}  # what test_a saw, for test_b


def tables(url: str) -> list[str]:
    engine = sqlalchemy.create_engine(url)
    try:
        return sqlalchemy.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_a_fresh_database_takes_a_table(postgres_url):
    assert postgres_url.startswith("postgresql://postgres@127.0.0.1:")
    assert tables(postgres_url) == []
    engine = sqlalchemy.create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text("CREATE TABLE runs (id text PRIMARY KEY, n int)"))
            conn.execute(sqlalchemy.text("INSERT INTO runs VALUES ('r1', 1), ('r2', 2)"))
        with engine.connect() as conn:
            assert conn.execute(sqlalchemy.text("SELECT sum(n) FROM runs")).scalar() == 3
            # the server listens on loopback only, with its socket in its own folder
            assert conn.execute(sqlalchemy.text("SHOW listen_addresses")).scalar() == "127.0.0.1"
            assert conn.execute(sqlalchemy.text("SHOW fsync")).scalar() == "off"
    finally:
        engine.dispose()
    SEEN["a"] = postgres_url
    assert tables(postgres_url) == ["runs"]


def test_b_another_test_gets_another_empty_database(postgres_url, postgres_server):
    if "a" in SEEN:
        assert postgres_url != SEEN["a"]
        # test_a's database was dropped at its teardown
        old = SEEN["a"].rsplit("/", 1)[1]
        engine = sqlalchemy.create_engine(postgres_server.url())
        try:
            with engine.connect() as conn:
                names = conn.execute(sqlalchemy.text("SELECT datname FROM pg_database")).scalars()
                assert old not in set(names)
        finally:
            engine.dispose()
    assert tables(postgres_url) == []


def test_stop_ends_the_server_it_started_and_removes_its_folder():
    server = PostgresServer(require()).start()
    try:
        engine = sqlalchemy.create_engine(server.url(server.create_database("mine")))
        # an open session must not hold the shutdown up (fast shutdown ends it)
        conn = engine.connect()
        assert conn.execute(sqlalchemy.text("SELECT 1")).scalar() == 1
        assert server.proc is not None
        pids = {server.proc.pid} | {c.pid for c in psutil.Process(server.proc.pid).children()}
        assert len(pids) > 2  # the postmaster, its workers and our session's backend
        root = server.root
        server.stop()
        conn.invalidate()
        engine.dispose()
    finally:
        server.stop()  # a second stop() does nothing
    assert [pid for pid in pids if psutil.pid_exists(pid)] == []
    assert not root.exists()
