"""Credentials masked in command lines and log text (guard.core.redact, pure)."""

from __future__ import annotations

import pytest

from guard.core.redact import MASK, redact, redact_argv, secret_name


@pytest.mark.parametrize("text, expected", [
    # user:password@ in URLs; the user stays
    ("http://user:secret@127.0.0.1:5000", f"http://user:{MASK}@127.0.0.1:5000"),
    ("https://alice:p@ss@host/api", f"https://alice:{MASK}@host/api"),
    ("postgresql://db:hunter2@db.lab:5432/mlflow", f"postgresql://db:{MASK}@db.lab:5432/mlflow"),
    ("--tracking-uri=http://u:pw@h:1", f"--tracking-uri=http://u:{MASK}@h:1"),
    # tokens, passwords and keys in query strings
    ("http://h/x?token=abc123&run=7", f"http://h/x?token={MASK}&run=7"),
    ("s3://b/k?X-Amz-Signature=deadbeef&X-Amz-Credential=AKIA/x",
     f"s3://b/k?X-Amz-Signature={MASK}&X-Amz-Credential={MASK}"),
    ("https://acct.blob/c?sv=2020&sig=zzz", f"https://acct.blob/c?sv=2020&sig={MASK}"),
    ("http://h/?access_token=t0k&password=pw", f"http://h/?access_token={MASK}&password={MASK}"),
    # secret-looking KEY=value
    ("MLFLOW_TRACKING_PASSWORD=hunter2 mlflow gc", f"MLFLOW_TRACKING_PASSWORD={MASK} mlflow gc"),
    ("AWS_SECRET_ACCESS_KEY=wJalr/K7 x", f"AWS_SECRET_ACCESS_KEY={MASK} x"),
    ("GITHUB_TOKEN=ghp_123", f"GITHUB_TOKEN={MASK}"),
    ("APP_SECRET=s", f"APP_SECRET={MASK}"),
    ("PGPASSWORD=pw", f"PGPASSWORD={MASK}"),
    ("env 'DB_PASSWORD=pw'", f"env 'DB_PASSWORD={MASK}'"),
    # --password x / --token=x
    ("mlflow gc --password hunter2 --older-than 1d",
     f"mlflow gc --password {MASK} --older-than 1d"),
    ("tool --token=abc --api-key=k", f"tool --token={MASK} --api-key={MASK}"),
    ("Authorization: Bearer eyJhbGciOiJIUzI1", f"Authorization: Bearer {MASK}"),
    # nothing secret: unchanged
    ("mlflow gc --backend-store-uri /srv/mlruns --older-than 30d",
     "mlflow gc --backend-store-uri /srv/mlruns --older-than 30d"),
    ("http://127.0.0.1:5000/api/2.0/mlflow/runs/get?run_id=abc",
     "http://127.0.0.1:5000/api/2.0/mlflow/runs/get?run_id=abc"),
    ("user@host:/path and a@b.c", "user@host:/path and a@b.c"),
    ("MLFLOW_TRACKING_URI=http://h:5000 --workers 4",
     "MLFLOW_TRACKING_URI=http://h:5000 --workers 4"),
    ("", ""),
])
def test_redact(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize("argv, expected", [
    (("mlflow", "gc", "--password", "pw", "--older-than", "1d"),
     ("mlflow", "gc", "--password", MASK, "--older-than", "1d")),
    (("mlflow", "server", "--backend-store-uri", "postgresql://u:pw@h/db"),
     ("mlflow", "server", "--backend-store-uri", f"postgresql://u:{MASK}@h/db")),
    (("python", "-m", "mlflow", "gc", "--tracking-uri", "http://u:s@127.0.0.1:1"),
     ("python", "-m", "mlflow", "gc", "--tracking-uri", f"http://u:{MASK}@127.0.0.1:1")),
    (("tool", "--token"), ("tool", "--token")),  # a flag at the end: nothing to mask
    (("tool", "--token", "--verbose"), ("tool", "--token", "--verbose")),
    (("sh", "-c", "AWS_SECRET_ACCESS_KEY=k mlflow gc"),
     ("sh", "-c", f"AWS_SECRET_ACCESS_KEY={MASK} mlflow gc")),
    (("mlflow", "gc", "--backend-store-uri", "/srv/mlruns"),
     ("mlflow", "gc", "--backend-store-uri", "/srv/mlruns")),
])
def test_redact_argv(argv, expected):
    assert redact_argv(argv) == expected


@pytest.mark.parametrize("name, secret", [
    ("MLFLOW_TRACKING_PASSWORD", True), ("AWS_SECRET_ACCESS_KEY", True), ("--api-key", True),
    ("X-Amz-Signature", True), ("sig", True), ("MLFLOW_TRACKING_TOKEN", True),
    ("MLFLOW_TRACKING_URI", False), ("--backend-store-uri", False), ("run_id", False),
    ("--workers", False), ("--host", False), ("PATH", False),
])
def test_secret_name(name, secret):
    assert secret_name(name) is secret
