"""Benchmark: how long until MLflow answers, with and without mlflow-sync-guard.

Measures, in one run and on one fresh store (created with `guardctl init` in a temp folder,
with the guard's state folders in a separate temp folder):

1. Cold start: time from launching `guardctl run` until `GET /health` answers `OK`, versus
   launching a bare `mlflow server` with the same arguments on the same store until `OK`.
   Runs are interleaved (guard, bare, guard, bare, ...); each launch gets a fresh free port.
   Prints the median of each and the ratio guard/bare.
2. Restart after a crash: inside each guard run, once the guard reports "running", the server
   parent (status.json "server"."pid") is killed with SIGKILL, and the time until the NEW
   server answers `OK` through the guard is measured (first waiting until the old server stops
   answering or the status pid changes). This includes the guard's restart backoff
   (restart.backoff_initial, default 1 s). Prints the median and its ratio to the bare
   cold-start median.

/health is polled every 50 ms. The guard runs with an empty config file (built-in defaults),
so a user or system config does not change the figures. Figures only: no pass/fail.

Run (from the repository root, with the project's venv):

    python bench/bench_startup.py [--runs 5] [--timeout 120] [--keep]

Exits non-zero with a message if a server never becomes healthy within the timeout.
Only processes this script started are ended (by pid); the daemon is always stopped with
`guardctl stop`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from benchlib import (
    HOST,
    BenchError,
    bare_server_seconds,
    descendants,
    find_guardctl,
    fmt,
    free_port,
    read_status,
    stop_daemon,
    wait_until,
)

POLL = 0.05  # seconds between /health polls


# ---- helpers ---------------------------------------------------------------------------------
def health_ok(port: int) -> bool:
    """True when GET /health answers HTTP 200 with body OK (direct, no proxies)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=1.0)
    try:
        conn.request("GET", "/health")
        resp = conn.getresponse()
        return resp.status == 200 and resp.read(64).decode("utf-8", "replace").strip() == "OK"
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def status_server_pid(state_dir: Path) -> int | None:
    pid = (read_status(state_dir).get("server") or {}).get("pid")
    return pid if isinstance(pid, int) else None


# ---- the benchmark ---------------------------------------------------------------------------
class Bench:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.python = sys.executable
        self.guardctl = find_guardctl()
        self.root = Path(tempfile.mkdtemp(prefix="guard-bench-"))  # state, logs, config
        self.store = Path(tempfile.mkdtemp(prefix="guard-bench-store-"))  # fresh, empty
        self.config = self.root / "empty-config.yaml"
        self.config.write_text("# empty: built-in defaults\n", encoding="utf-8")
        self.env = {k: v for k, v in os.environ.items() if k != "MLFLOW_GUARD_CONFIG"}
        self.env["MLFLOW_ALLOW_FILE_STORE"] = "true"
        self.env.setdefault("PYTHONUNBUFFERED", "1")  # as the guard sets it for its server

    def guardctl_cmd(self, *args: str) -> list[str]:
        return [self.guardctl, *args]

    def init_store(self) -> None:
        out = subprocess.run(self.guardctl_cmd("init", "--store", str(self.store)), env=self.env,
                             capture_output=True, text=True, timeout=self.timeout)
        if out.returncode != 0:
            raise BenchError(f"guardctl init failed ({out.returncode}): {out.stderr.strip()}")

    def guard_settings(self) -> str:
        out = subprocess.run(
            self.guardctl_cmd("config", "--config", str(self.config), "--store", str(self.store),
                              "--state-dir", str(self.root / "probe-state"), "--json"),
            env=self.env, capture_output=True, text=True, timeout=self.timeout)
        try:
            values = json.loads(out.stdout)["values"]
        except (ValueError, KeyError, TypeError):
            return "(could not read `guardctl config --json`)"
        keys = ("restart.backoff_initial", "server.health_interval", "server.workers")
        return ", ".join(f"{k}={values[k]['value']}" for k in keys if k in values)

    # -- one bare mlflow server: launch -> health OK -----------------------------------------
    def bare_run(self, i: int) -> float:
        return bare_server_seconds(self.python, Path(self.store), self.env, self.root,
                                   f"bare-{i}.log", self.timeout)

    # -- one guard run: launch -> health OK, then kill -9 server -> health OK again ---------
    def guard_run(self, i: int) -> tuple[float, float, int]:
        port = free_port()
        state = self.root / f"state-{i}"
        log = self.root / f"guard-{i}.out"
        common = ["--config", str(self.config), "--state-dir", str(state)]
        cmd = self.guardctl_cmd("run", *common, "--store", str(self.store), "--port", str(port))
        proc = None
        tree: dict[int, psutil.Process] = {}
        with open(log, "wb") as out:
            try:
                t0 = time.perf_counter()
                proc = subprocess.Popen(cmd, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=subprocess.STDOUT, start_new_session=True)
                guard_log = state / "logs" / "guard.log"
                wait_until(lambda: health_ok(port), self.timeout,
                           f"guard run {i} (port {port}) health OK", proc, guard_log)
                cold = time.perf_counter() - t0
                tree.update((p.pid, p) for p in descendants(proc.pid))

                # The guard must itself see the server healthy before the crash.
                wait_until(lambda: read_status(state).get("phase") == "running"
                           and status_server_pid(state) is not None, self.timeout,
                           f"guard run {i} status phase 'running'", proc, guard_log)
                old_pid = status_server_pid(state)
                try:
                    victim = psutil.Process(old_pid)
                    if victim.ppid() != proc.pid:
                        raise BenchError(f"status server pid {old_pid} is not a child of the "
                                         f"daemon pid {proc.pid}; not killing it")
                except psutil.NoSuchProcess:
                    raise BenchError(f"status server pid {old_pid} is not running") from None
                tree.update((p.pid, p) for p in descendants(proc.pid))

                t_kill = time.perf_counter()
                os.kill(old_pid, signal.SIGKILL)
                # First: the old server is gone (port stops answering) or a new one was started.
                wait_until(lambda: not health_ok(port)
                           or status_server_pid(state) not in (None, old_pid), self.timeout,
                           f"guard run {i}: old server gone after kill -9", proc, guard_log)
                # Then: OK again, from a server whose pid is not the killed one.
                wait_until(lambda: health_ok(port)
                           and status_server_pid(state) not in (None, old_pid), self.timeout,
                           f"guard run {i}: new server health OK after kill -9", proc, guard_log)
                restart = time.perf_counter() - t_kill
                tree.update((p.pid, p) for p in descendants(proc.pid))
                restarts = read_status(state).get("restarts")
                return cold, restart, restarts if isinstance(restarts, int) else -1
            finally:
                if proc is not None:
                    stop_daemon(self.guardctl_cmd("stop", *common), self.env, proc, tree,
                                self.timeout)

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.store, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each kind (default 5)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="bound on every wait, seconds (default 120)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temp store and state/log folders")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    try:
        bench = Bench(args.timeout)
    except BenchError as exc:
        print(f"bench_startup: {exc}", file=sys.stderr)
        return 1
    failed = False
    guard_cold: list[float] = []
    guard_restart: list[float] = []
    bare_cold: list[float] = []
    try:
        bench.init_store()
        print(f"store: {bench.store}  (state/logs: {bench.root})")
        print(f"python: {bench.python}  mlflow server --workers 1, host {HOST}; "
              f"guard defaults: {bench.guard_settings()}")
        print(f"runs: {args.runs} each, interleaved guard/bare; /health polled every "
              f"{POLL * 1000:.0f} ms")
        for i in range(1, args.runs + 1):
            cold, restart, restarts = bench.guard_run(i)
            guard_cold.append(cold)
            guard_restart.append(restart)
            print(f"  run {i}: guard cold start {cold:6.2f} s | kill -9 -> healthy again "
                  f"{restart:6.2f} s (restarts={restarts})", flush=True)
            bare = bench.bare_run(i)
            bare_cold.append(bare)
            print(f"  run {i}: bare  cold start {bare:6.2f} s", flush=True)
    except BenchError as exc:
        failed = True
        print(f"bench_startup: {exc}", file=sys.stderr)
        print(f"bench_startup: logs kept in {bench.root}", file=sys.stderr)
    except KeyboardInterrupt:
        failed = True
        print("bench_startup: interrupted", file=sys.stderr)
    finally:
        if not failed and not args.keep:
            bench.cleanup()
    if failed:
        return 1

    g, b, r = (statistics.median(x) for x in (guard_cold, bare_cold, guard_restart))
    print()
    print(f"cold start, launch -> /health OK (median of {args.runs}):")
    print(f"  guard (guardctl run)  {g:6.2f} s   [{fmt(guard_cold)}]")
    print(f"  bare  (mlflow server) {b:6.2f} s   [{fmt(bare_cold)}]")
    print(f"  ratio guard/bare      {g / b:6.2f}")
    print("restart through the guard, kill -9 server parent -> /health OK "
          f"(median of {args.runs}):")
    print(f"  guard restart         {r:6.2f} s   [{fmt(guard_restart)}]")
    print(f"  ratio restart/bare cold start {r / b:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
