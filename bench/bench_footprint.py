"""Benchmark: the daemon's memory and the vault's passes as the store grows (issue 16, item 7).

For each store size in --runs (default 10000,50000), one generated MLflow file store
(bench_rewrite.StoreGenerator: runs over 10 experiments, every 100th with a logged model and a
model version; portable `mlflow-artifacts:/` locations, checked by one Fixer full pass, so the
daemons have nothing to rewrite) in a temp folder on the --tmp volume, and:

(b) In this process, --rounds rounds (default 1): the baseline, a bare `os.walk` + `os.stat` of
    every file of the store; the vault build into a fresh vault folder on the store's volume
    (`Vault.open()`, `sync(())`, `save(force=True)`); the steady pass on the built vault
    (`sync(())` + `save()`, nothing changed), and `collect()`. Prints the times and the ratios
    build/walk and steady/walk, and the index's size on disk.
(a) Two real daemons (`guardctl run`), one after the other on the same store (so no copy of
    it is needed), each with its own state folder beside the store (the vault in it, so on the
    store's volume: hard links), free port on 127.0.0.1 and config (`vault: {enabled: false}`,
    the baseline, first; then `vault: {enabled: true}`). Once status.json says phase "running",
    the first rewrite pass is done and (vault on) vault.ready is true, and after SETTLE seconds
    of quiet, the RSS of the daemon process alone (not the MLflow server it runs) is sampled
    every second for --idle seconds (default 20). Then the vault-on daemon once more, on the
    index its first start built (the usual start: a steady pass, not a build). Prints max and
    last RSS of each, the difference, and the goal (under 80 MB with the vault on).
(c) Startup to healthy on the same store: for each daemon above, from launching `guardctl run`
    until `/health` answers OK and then `guardctl status` exits 0 (polled every 0.5 s once
    /health answers); and a bare `mlflow server` over the same store (the arguments the guard
    gives it, --workers 1) from launch to `/health` OK. Prints each and the ratios guard/bare.

Page cache: WARM for every figure (the store was just generated; caches are never dropped).
Other processes on the machine are not controlled: the load average is printed at start and
end. Figures only, with the goals stated: no pass/fail.

Run (from the repository root, with the project's venv):

    .venv/bin/python bench/bench_footprint.py [--runs 10000,50000] [--idle 20] [--rounds 1]
                                              [--tmp DIR] [--timeout 900] [--keep]

Only processes this script started are ended (by pid); the daemons are stopped with
`guardctl stop`. Temp folders are removed unless --keep (a failed run keeps the logs).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))  # benchlib, bench_rewrite

import psutil  # noqa: E402
import yaml  # noqa: E402

if importlib.util.find_spec("guard") is None:  # a checkout without the editable install
    sys.path.insert(0, str(BENCH.parent))

import bench_rewrite  # noqa: E402
from bench_rewrite import EXPERIMENTS, StoreGenerator  # noqa: E402
from benchlib import (  # noqa: E402
    BenchError,
    bare_server_seconds,
    descendants,
    end_started,
    find_guardctl,
    free_port,
    health_ok,
    read_status,
    stop_daemon,
    tail,
    wait_until,
)

from guard.portability.fixer import Fixer  # noqa: E402
from guard.protection.vault import INDEX_NAME, Vault  # noqa: E402

PORTABLE_ROOT = "mlflow-artifacts:"
COPY_MAX_BYTES = 100 * 1024 * 1024  # vault.copy_max_bytes default
GOAL_MB = 80.0
SETTLE = 5.0  # seconds of quiet after ready, before sampling
POLL = 0.05  # seconds between /health polls
STATUS_POLL = 0.5  # seconds between status checks


# ---- measuring in this process -------------------------------------------------------------
def bare_walk(store: Path) -> tuple[float, int]:
    """os.walk + os.stat of every file; (seconds, files)."""
    files = 0
    t0 = time.perf_counter()
    for dirpath, _dirs, names in os.walk(store):
        for name in names:
            os.stat(os.path.join(dirpath, name))
            files += 1
    return time.perf_counter() - t0, files


def index_bytes(root: Path) -> int:
    """Allocated bytes of the index (the database and SQLite's side files)."""
    return sum(p.stat().st_blocks * 512 for p in root.glob(INDEX_NAME + "*") if p.is_file())


def passes(store: Path, where: Path, rounds: int) -> dict:
    """(b): bare walk, vault build, steady pass and collect, `rounds` times."""
    out: dict[str, list[float]] = {"walk": [], "build": [], "steady": [], "collect": []}
    files = kept = disk = 0
    for i in range(rounds):
        root = where / f"vault-{i}"
        walk, files = bare_walk(store)
        t0 = time.perf_counter()
        vault = Vault(root, store, COPY_MAX_BYTES)
        vault.open()
        try:
            missing = vault.sync(())
            vault.save(force=True)
            t1 = time.perf_counter()
            again = vault.sync(())
            changed = vault.dirty
            vault.save()
            t2 = time.perf_counter()
            vault.collect()
            t3 = time.perf_counter()
            kept = vault.stats()["files"]
        finally:
            vault.close()
        if missing or again or changed:
            raise BenchError(f"round {i}: {len(missing)} then {len(again)} missing, "
                             f"dirty={changed} after a pass that changed nothing")
        disk = index_bytes(root)
        for name, value in (("walk", walk), ("build", t1 - t0), ("steady", t2 - t1),
                            ("collect", t3 - t2)):
            out[name].append(value)
        print(f"    round {i + 1}: walk {walk:.2f} s, build {t1 - t0:.2f} s, steady "
              f"{t2 - t1:.2f} s, collect {t3 - t2:.2f} s", flush=True)
        shutil.rmtree(root)
    return {"files": files, "kept": kept, "index_bytes": disk,
            **{k: statistics.median(v) for k, v in out.items()}}


# ---- the daemons ---------------------------------------------------------------------------
class Daemon:
    """One `guardctl run` this benchmark started, with its own state folder, port, config."""

    def __init__(self, bench: Bench, name: str, store: Path, vault_on: bool,
                 state: str) -> None:
        self.bench, self.name, self.store, self.vault_on = bench, name, store, vault_on
        self.state = store.parent / f"state-{state}"
        self.config = bench.root / f"config-{name}.yaml"
        self.config.write_text(yaml.safe_dump({"host_id": f"bench-{name}",
                                               "vault": {"enabled": vault_on}}),
                               encoding="utf-8")
        self.port = free_port()
        self.out = bench.root / f"guard-{name}.out"
        self.proc: subprocess.Popen | None = None
        self.tree: dict[int, psutil.Process] = {}

    def common(self) -> list[str]:
        return ["--config", str(self.config), "--state-dir", str(self.state)]

    def status_ok(self) -> bool:
        res = subprocess.run([self.bench.guardctl, "status", *self.common()],
                             env=self.bench.env, capture_output=True, timeout=60)
        return res.returncode == 0

    def start(self) -> dict:
        """Launch; returns the seconds to /health OK and to `guardctl status` exit 0."""
        cmd = [self.bench.guardctl, "run", *self.common(), "--store", str(self.store),
               "--port", str(self.port)]
        with open(self.out, "wb") as out:
            t0 = time.perf_counter()
            self.proc = subprocess.Popen(cmd, env=self.bench.env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        log = self.state / "logs" / "guard.log"
        wait_until(lambda: health_ok(self.port), self.bench.timeout,
                   f"{self.name}: /health OK", self.proc, log, POLL)
        health = time.perf_counter() - t0
        wait_until(self.status_ok, self.bench.timeout, f"{self.name}: guardctl status 0",
                   self.proc, log, STATUS_POLL)
        healthy = time.perf_counter() - t0
        self.tree.update((p.pid, p) for p in descendants(self.proc.pid))
        return {"health": health, "healthy": healthy}

    def ready(self) -> bool:
        doc = read_status(self.state)
        if doc.get("phase") != "running":
            return False
        if not (doc.get("portability") or {}).get("last_full_pass"):
            return False
        vault = doc.get("vault") or {}
        if self.vault_on and vault.get("error"):
            raise BenchError(f"{self.name}: vault error: {vault['error']}")
        return not self.vault_on or vault.get("ready") is True

    def idle_rss(self, seconds: float) -> dict:
        """RSS of the daemon process alone, every second for `seconds`."""
        assert self.proc is not None
        pid = (read_status(self.state).get("daemon") or {}).get("pid")
        if pid != self.proc.pid:
            raise BenchError(f"{self.name}: status.json names pid {pid}, we started "
                             f"{self.proc.pid}")
        proc = psutil.Process(pid)
        samples = []
        end = time.monotonic() + seconds
        while True:
            samples.append(proc.memory_info().rss)
            if time.monotonic() >= end:
                break
            time.sleep(1.0)
        return {"max": max(samples), "last": samples[-1], "threads": proc.num_threads()}

    def stop(self) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        self.tree.update((p.pid, p) for p in descendants(proc.pid))
        stop_daemon([self.bench.guardctl, "stop", *self.common()], self.bench.env, proc,
                    self.tree, self.bench.timeout, self.name)
        if proc.poll() is None:
            end_started(proc)


class Bench:
    def __init__(self, timeout: float, tmp: str | None) -> None:
        self.timeout = timeout
        self.guardctl = find_guardctl()
        self.root = Path(tempfile.mkdtemp(prefix="guard-bench-footprint-", dir=tmp))
        self.data = Path(tempfile.mkdtemp(prefix="guard-bench-footprint-store-", dir=tmp))
        self.env = {k: v for k, v in os.environ.items() if k != "MLFLOW_GUARD_CONFIG"}
        self.env["MLFLOW_ALLOW_FILE_STORE"] = "true"
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.running: list[Daemon] = []

    def bare_server(self, store: Path) -> float:
        """Launch -> /health OK of a bare `mlflow server` over `store`, as the guard runs it."""
        return bare_server_seconds(sys.executable, store, self.env, self.root,
                                   f"bare-{free_port()}.log", self.timeout, POLL)

    def daemon(self, store: Path, vault_on: bool, idle: float, again: bool = False) -> dict:
        """Start, wait for its first passes, sample its idle RSS, stop. `again`: the vault-on
        daemon's second start, with the index its first one built."""
        state = "vault-on" if vault_on else "vault-off"
        d = Daemon(self, state + ("-again" if again else ""), store, vault_on, state)
        self.running.append(d)
        try:
            times = d.start()
            assert d.proc is not None
            wait_until(d.ready, self.timeout, f"{d.name}: running, first passes done",
                       d.proc, d.out, STATUS_POLL)
            ready = time.perf_counter()
            time.sleep(SETTLE)
            rss = d.idle_rss(idle)
            vault = read_status(d.state).get("vault") or {}
            print(f"    {d.name}: /health OK {times['health']:.2f} s, status 0 after "
                  f"{times['healthy']:.2f} s; RSS max {rss['max'] / 1e6:.1f} MB, last "
                  f"{rss['last'] / 1e6:.1f} MB (vault mode {vault.get('mode')})", flush=True)
            return {**times, **rss, "mode": vault.get("mode"), "ready_at": ready}
        except BenchError:
            print(f"    {d.name} output:\n{tail(d.out)}", file=sys.stderr)
            raise
        finally:
            d.stop()
            self.running.remove(d)

    def stop_all(self) -> None:
        for d in list(self.running):
            try:
                d.stop()
            except Exception as exc:  # noqa: BLE001 - stop the others regardless
                print(f"warning: stopping {d.name}: {exc!r}", file=sys.stderr)

    def cleanup(self, keep_logs: bool) -> None:
        shutil.rmtree(self.data, ignore_errors=True)
        if not keep_logs:
            shutil.rmtree(self.root, ignore_errors=True)


def one_size(bench: Bench, runs: int, args: argparse.Namespace) -> dict:
    where = bench.data / f"runs-{runs}"
    store = where / "mlruns"
    bench_rewrite.FOREIGN_ROOT = PORTABLE_ROOT  # the generator's locations, already portable
    t0 = time.perf_counter()
    StoreGenerator(store).generate(runs)
    Fixer(store, None, "bench", foreign_delay=0).full_pass()
    os.sync()
    print(f"  {runs} runs generated in {time.perf_counter() - t0:.1f} s", flush=True)
    res: dict = {"runs": runs}
    res["pass"] = passes(store, where, args.rounds)
    os.sync()
    res["off"] = bench.daemon(store, False, args.idle)
    res["on"] = bench.daemon(store, True, args.idle)
    res["again"] = bench.daemon(store, True, args.idle, again=True)
    res["bare"] = bench.bare_server(store)
    print(f"    bare mlflow server: /health OK {res['bare']:.2f} s", flush=True)
    shutil.rmtree(where, ignore_errors=True)
    return res


def report(results: list[dict]) -> None:
    print()
    print("vault passes vs a bare os.walk + os.stat (this process, warm page cache):")
    for r in results:
        p = r["pass"]
        print(f"  {r['runs']:>6} runs, {p['files']:>8} files: walk {p['walk']:6.2f} s | build "
              f"{p['build']:6.2f} s (ratio {p['build'] / p['walk']:5.2f}) | steady "
              f"{p['steady']:6.2f} s (ratio {p['steady'] / p['walk']:5.2f}) | collect "
              f"{p['collect']:5.2f} s | index {p['index_bytes'] / 2**20:.1f} MiB "
              f"({p['index_bytes'] / max(p['kept'], 1):.0f} B per file)")
    print(f"idle daemon RSS, daemon process only, after its first passes (goal with the vault "
          f"on: under {GOAL_MB:g} MB at every size; MB = 10^6 bytes):")
    for r in results:
        off = r["off"]
        for name, label in (("on", "vault on, index built at start"),
                            ("again", "vault on, restarted on its index")):
            on = r[name]
            print(f"  {r['runs']:>6} runs: vault off {off['max'] / 1e6:6.1f} MB | {label} "
                  f"{on['max'] / 1e6:6.1f} MB max, {on['last'] / 1e6:6.1f} MB last | on - off "
                  f"{(on['max'] - off['max']) / 1e6:+6.1f} MB | ratio "
                  f"{on['max'] / off['max']:.2f} | goal "
                  f"{'met' if on['max'] / 1e6 < GOAL_MB else 'NOT met'}")
    print("startup: launch -> /health OK -> `guardctl status` exit 0 (guard) vs launch -> "
          "/health OK (bare mlflow server):")
    for r in results:
        bare = r["bare"]
        for name in ("off", "on", "again"):
            d = r[name]
            print(f"  {r['runs']:>6} runs, vault {name:<5}: health {d['health']:6.2f} s, "
                  f"status 0 {d['healthy']:6.2f} s | bare {bare:6.2f} s | ratio "
                  f"{d['healthy'] / bare:5.2f}")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average at the end: {load} ({os.cpu_count()} CPUs; not controlled)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="10000,50000",
                        help="store sizes in runs, comma-separated (default 10000,50000)")
    parser.add_argument("--idle", type=float, default=20.0,
                        help="seconds of RSS sampling of each idle daemon (default 20)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds of walk / build / steady pass (default 1)")
    parser.add_argument("--tmp", metavar="DIR", default=None,
                        help="folder for the stores, state folders and logs")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="bound on every wait, seconds (default 900)")
    parser.add_argument("--keep", action="store_true", help="keep the logs and configs")
    args = parser.parse_args(argv)
    try:
        sizes = [int(x) for x in args.runs.split(",") if x.strip()]
    except ValueError:
        parser.error("--runs takes numbers separated by commas")
    if not sizes or min(sizes) < EXPERIMENTS or args.rounds < 1 or args.idle <= 0:
        parser.error(f"--runs at least {EXPERIMENTS}, --rounds at least 1, --idle above 0")

    bench = Bench(args.timeout, args.tmp)
    failed = False
    results: list[dict] = []
    try:
        print(f"stores: {bench.data}  (configs/logs: {bench.root})")
        print(f"python: {sys.executable}; {os.cpu_count()} CPUs, load average "
              f"{', '.join(f'{x:.2f}' for x in os.getloadavg())} at start", flush=True)
        for runs in sizes:
            results.append(one_size(bench, runs, args))
    except (BenchError, OSError) as exc:
        failed = True
        print(f"bench_footprint: {type(exc).__name__}: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        failed = True
        print("bench_footprint: interrupted", file=sys.stderr)
    finally:
        bench.stop_all()
        bench.cleanup(keep_logs=failed or args.keep)
        if failed or args.keep:
            print(f"bench_footprint: logs in {bench.root}", file=sys.stderr)
    if results:
        report(results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
