"""The migration tests' fixtures: one source file store per module (written once by a real
MLflow client, only read by the tests) and a target database URL, SQLite or PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.migration import build_store


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return build_store(tmp_path_factory.mktemp("source") / "mlruns")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def db_url(request, tmp_path) -> str:
    """A fresh empty database: a SQLite file, or a database on the test PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'mlflow.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def row_counts(url: str) -> dict[str, int]:
    """Rows per MLflow data table (fs2db's own count queries)."""
    from mlflow.store.fs2db import _query_row_counts
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        return _query_row_counts(engine)
    finally:
        engine.dispose()


def execute(url: str, sql: str, **params: object) -> int:
    """Run one statement on the database (tampering); how many rows it touched."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            return conn.execute(text(sql), params).rowcount
    finally:
        engine.dispose()
