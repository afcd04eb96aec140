"""Benchmark: how long `guard.migration` takes to move a file store into a database.

One generated MLflow file store (bench_rewrite.StoreGenerator: --runs runs over 10 experiments,
each with params, tags and metrics, every 100th with a logged model and a model version;
portable `mlflow-artifacts:/` locations), in a temp folder, warm page cache. In the same run:

1. Baseline: MLflow's own `mlflow migrate-filestore --source <store> --target sqlite:///...`
   (SQLite only), as a subprocess, timed from start to exit.
2. `guard.migration.copy.copy_store` into a fresh SQLite file, in this process.
3. The same into a fresh PostgreSQL database (a throwaway server from tests/helpers/postgres.py
   on a loopback port; skipped, with the reason, when PostgreSQL's binaries are missing).
4. `guard.migration.verify.verify_copy` of each copy against the file store (every entity read
   back through MLflow's own store APIs on both sides).
Prints seconds, runs per second and the ratios to the baseline. Figures only, no pass/fail.

    .venv/bin/python bench/bench_migration.py [--runs 10000] [--no-verify]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))  # bench_rewrite
sys.path.insert(0, str(BENCH.parent))  # tests.helpers.postgres
if importlib.util.find_spec("guard") is None:  # a checkout without the editable install
    sys.path.insert(0, str(BENCH.parent))

import bench_rewrite  # noqa: E402
from bench_rewrite import StoreGenerator  # noqa: E402

from guard.core.store import ALLOW_FILE_STORE_ENV  # noqa: E402
from guard.migration.copy import copy_store  # noqa: E402
from guard.migration.verify import verify_copy  # noqa: E402

PORTABLE_ROOT = "mlflow-artifacts:"


def timed(label: str, fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - t0
    print(f"  {label}: {seconds:.2f} s", flush=True)
    return seconds, result


def mlflow_baseline(store: Path, db: Path) -> float:
    env = dict(os.environ, **{ALLOW_FILE_STORE_ENV: "true"})
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "mlflow", "migrate-filestore", "--source",
                           str(store), "--target", f"sqlite:///{db}", "--no-progress"],
                          env=env, capture_output=True, text=True, timeout=7200)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"mlflow migrate-filestore failed: {done.stderr[-2000:]}")
    return seconds


def verify_seconds(store: Path, url: str) -> float:
    seconds, result = timed(f"verify {url.split(':')[0]}", lambda: verify_copy(store, url))
    if not result.ok:  # type: ignore[attr-defined]
        print(result.table(), flush=True)  # type: ignore[attr-defined]
        raise SystemExit("the copy differs from the file store")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--tmp", default=None, help="where the store goes (default: system temp)")
    parser.add_argument("--no-verify", action="store_true",
                        help="time the copies only (verifying 10,000 runs takes minutes)")
    args = parser.parse_args(argv)
    os.environ[ALLOW_FILE_STORE_ENV] = "true"
    with tempfile.TemporaryDirectory(prefix="bench-migration-", dir=args.tmp) as tmp:
        root = Path(tmp)
        store = root / "mlruns"
        bench_rewrite.FOREIGN_ROOT = PORTABLE_ROOT
        t0 = time.perf_counter()
        gen = StoreGenerator(store)
        gen.generate(args.runs)
        os.sync()
        print(f"{args.runs} runs ({gen.files} files) generated in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
        base = mlflow_baseline(store, root / "baseline.db")
        print(f"  baseline, mlflow migrate-filestore to SQLite: {base:.2f} s "
              f"({args.runs / base:.0f} runs/s)", flush=True)
        rows: list[tuple[str, float]] = []
        sqlite_url = f"sqlite:///{root / 'guard.db'}"
        seconds, _ = timed("guard copy_store to SQLite", lambda: copy_store(store, sqlite_url))
        rows.append(("copy to SQLite", seconds))
        if not args.no_verify:
            rows.append(("verify SQLite", verify_seconds(store, sqlite_url)))
        try:
            from tests.helpers.postgres import PostgresServer
        except ImportError as exc:
            print(f"  PostgreSQL: skipped ({exc})")
            PostgresServer = None  # type: ignore[assignment,misc]  # noqa: N806
        if PostgresServer is not None:
            server = PostgresServer().start()
            try:
                server.create_database("bench")
                url = server.url("bench")
                seconds, _ = timed("guard copy_store to PostgreSQL", lambda: copy_store(store, url))
                rows.append(("copy to PostgreSQL", seconds))
                if not args.no_verify:
                    rows.append(("verify PostgreSQL", verify_seconds(store, url)))
            finally:
                server.stop()
        print(f"\n{'step':<22} {'seconds':>9} {'runs/s':>8} {'x baseline':>11}")
        print(f"{'mlflow (baseline)':<22} {base:>9.2f} {args.runs / base:>8.0f} {1.0:>11.2f}")
        for label, seconds in rows:
            print(f"{label:<22} {seconds:>9.2f} {args.runs / seconds:>8.0f} "
                  f"{seconds / base:>11.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
