"""Benchmark (soak): random `kill -9` of the daemon, the server parent or the uvicorn child
while the guard rewrites a store, then what is left behind.

One generated store (bench_rewrite.StoreGenerator: --runs direct-client runs over 10
experiments, every location foreign) is copied aside as the pristine original; one
`guardctl run` serves the working copy (config: rewrite.foreign_delay 0, experiment_quiet 0,
fast restarts and no crash-loop stop, since the kills are deliberate). Each of --cycles cycles:

1. feed: --feed random runs' meta.yaml get their pristine (foreign) bytes back, written as a
   sync client delivers a file (temp file outside the store, renamed into place), so the guard
   has rewriting to do in every cycle (the first cycle also has the daemon's first full pass);
2. after a random 0-1.5 s, SIGKILL one of: the daemon, the server parent, the uvicorn child
   (chosen at random among those alive; pids from status.json, each checked by create time);
3. a killed daemon is started again (its server, orphaned, must be ended by the new daemon);
   then wait until healthy: status.json names the daemon we run, phase "running", a server pid
   other than a killed one, and GET /health answers OK. The time from the kill is recorded;
4. orphans: every process of ours ever seen (daemons, server trees), alive but not the
   current daemon nor in its current server tree.

At the end: `guardctl stop`, processes of ours still alive (orphans after the stop), meta.yaml
files that do not parse (partial), leftover `.guard-tmp-*` files (store and state folder, and
how many are older than a minute), then `guardctl fix --undo` of the journal and a byte-exact
comparison of every meta.yaml with the pristine copy (undo mismatches), and the time to
healthy (median, max; by what was killed). Figures only: no pass/fail.

Run (from the repository root, with the project's venv):

    python bench/bench_soak.py [--cycles 50] [--runs 3000] [--feed 200] [--seed 1]
                               [--timeout 120] [--keep]

Only processes this script started (and their recorded trees) are ended, by pid.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import yaml
from benchlib import (
    BenchError,
    find_guardctl,
    free_port,
    health_ok,
    read_status,
    stop_daemon,
    tail,
)

try:
    from bench_rewrite import StoreGenerator

    from guard.core.layout import TEMP_PREFIX
    from guard.core.metayaml import MetaError, parse
except ImportError:  # run from a checkout without the editable install
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench_rewrite import StoreGenerator

    from guard.core.layout import TEMP_PREFIX
    from guard.core.metayaml import MetaError, parse

TARGETS = ("daemon", "server parent", "uvicorn child")
POLL = 0.1


def proc_of(pid: Any, create_time: Any = None) -> psutil.Process | None:
    """The live process with this pid (and create time, when given), else None."""
    try:
        proc = psutil.Process(int(pid))
        if create_time is not None and abs(proc.create_time() - float(create_time)) > 0.01:
            return None
        return None if proc.status() == psutil.STATUS_ZOMBIE else proc
    except (psutil.Error, TypeError, ValueError):
        return None


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def meta_files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in root.rglob("meta.yaml") if p.is_file()}


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.guardctl = find_guardctl()
        self.root = Path(tempfile.mkdtemp(prefix="guard-bench-soak-"))
        self.pristine = self.root / "pristine" / "mlruns"
        self.store = self.root / "store" / "mlruns"
        self.state = self.root / "state"
        self.incoming = self.root / "store" / "incoming"  # same file system as the store
        self.config = self.root / "guard.yaml"
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if k != "MLFLOW_GUARD_CONFIG"}
        self.env["MLFLOW_ALLOW_FILE_STORE"] = "true"
        self.proc: subprocess.Popen | None = None
        self.out = self.root / "guard.out"
        self.seen: dict[tuple[int, float], psutil.Process] = {}  # every process of ours
        self.runs: list[str] = []  # store-relative run meta.yaml paths
        self.healthy: list[tuple[str, float]] = []
        self.orphans_seen: set[tuple[int, float]] = set()
        self.kills: dict[str, int] = dict.fromkeys(TARGETS, 0)

    # ---- the daemon ----------------------------------------------------------------------
    def common(self) -> list[str]:
        return ["--config", str(self.config), "--state-dir", str(self.state)]

    def start(self) -> None:
        with open(self.out, "ab") as log:
            self.proc = subprocess.Popen(
                [self.guardctl, "run", *self.common(), "--store", str(self.store), "--port",
                 str(self.port)], env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)
        self.note(psutil.Process(self.proc.pid))

    def note(self, proc: psutil.Process | None) -> None:
        if proc is not None:
            try:
                self.seen.setdefault((proc.pid, proc.create_time()), proc)
            except psutil.Error:
                pass

    def tree(self) -> list[psutil.Process]:
        """The server tree status.json names (parent first), each checked by create time."""
        server = read_status(self.state).get("server") or {}
        procs = [proc_of(r.get("pid"), r.get("create_time")) for r in server.get("tree") or []]
        found = [p for p in procs if p is not None]
        found.sort(key=lambda p: p.pid != server.get("pid"))
        for p in found:
            self.note(p)
        return found

    def wait_healthy(self, killed: set[int]) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.args.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"the daemon exited with code {self.proc.returncode}; last "
                                 f"output:\n{tail(self.out)}")
            doc = read_status(self.state)
            server_pid = (doc.get("server") or {}).get("pid")
            if ((doc.get("daemon") or {}).get("pid") == self.proc.pid
                    and doc.get("phase") == "running" and server_pid
                    and server_pid not in killed and proc_of(server_pid)
                    and health_ok(self.port)):
                self.tree()
                return
            time.sleep(POLL)
        raise BenchError(f"not healthy within {self.args.timeout:g} s; last output:\n"
                         f"{tail(self.out)}")

    def current(self) -> set[tuple[int, float]]:
        procs = [psutil.Process(self.proc.pid)] if self.proc and self.proc.poll() is None else []
        procs += self.tree()
        keys = set()
        for p in procs:
            try:
                keys.add((p.pid, p.create_time()))
            except psutil.Error:
                pass
        return keys

    def orphans(self) -> list[psutil.Process]:
        now = self.current()
        return [p for key, p in self.seen.items() if key not in now and alive(p)]

    # ---- the store -----------------------------------------------------------------------
    def prepare(self) -> float:
        t0 = time.perf_counter()
        StoreGenerator(self.pristine).generate(self.args.runs)
        gen_s = time.perf_counter() - t0
        shutil.copytree(self.pristine, self.store, symlinks=True)
        self.incoming.mkdir()
        self.runs = sorted(k for k in meta_files(self.pristine) if k.count("/") == 2
                           and not k.startswith(("models/", ".trash/")))
        self.config.write_text(yaml.safe_dump({
            "server": {"health_interval": 1},
            "restart": {"backoff_initial": 0.5, "backoff_max": 5, "crash_loop_count": 100000,
                        "stable_after": 5},
            "rewrite": {"foreign_delay": 0, "experiment_quiet": 0}}, sort_keys=False))
        return gen_s

    def feed(self) -> None:
        """Runs arriving again with their foreign location, as a sync client delivers them."""
        for rel in self.rng.sample(self.runs, min(self.args.feed, len(self.runs))):
            tmp = self.incoming / f"feed-{self.rng.getrandbits(32):08x}"
            tmp.write_bytes((self.pristine / rel).read_bytes())
            os.replace(tmp, self.store / rel)

    # ---- one cycle -----------------------------------------------------------------------
    def cycle(self, n: int) -> str:
        self.feed()
        time.sleep(self.rng.uniform(0.0, 1.5))
        tree = self.tree()
        choices = {"daemon": psutil.Process(self.proc.pid)} if self.proc else {}
        if tree:
            choices["server parent"] = tree[0]
        if len(tree) > 1:
            choices["uvicorn child"] = self.rng.choice(tree[1:])
        target = self.rng.choice(sorted(choices))
        victim = choices[target]
        killed = {victim.pid}
        t0 = time.monotonic()
        try:
            victim.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
        self.kills[target] += 1
        if target == "daemon":
            assert self.proc is not None
            self.proc.wait(timeout=30)
            self.start()
        elif tree:
            killed.add(tree[0].pid)  # a new server is wanted, whichever of its tree died
        self.wait_healthy(killed)
        took = time.monotonic() - t0
        self.healthy.append((target, took))
        orphans = self.orphans()
        self.orphans_seen |= {(p.pid, p.create_time()) for p in orphans if alive(p)}
        print(f"  cycle {n:3d}: killed {target:<13} pid {victim.pid:<7} healthy after "
              f"{took:5.1f} s; orphans now {len(orphans)}", flush=True)
        return target

    # ---- the end -------------------------------------------------------------------------
    def stop(self) -> None:
        if self.proc is None:
            return
        tree = {p.pid: p for p in self.tree()}
        stop_daemon([self.guardctl, "stop", *self.common()], self.env, self.proc, tree,
                    self.args.timeout)
        self.proc = None

    def partial(self) -> list[str]:
        bad = []
        for rel, path in meta_files(self.store).items():
            try:
                parse(path.read_bytes())
            except (MetaError, OSError):
                bad.append(rel)
        return bad

    def temps(self) -> tuple[int, int]:
        now = time.time()
        found = [p for root in (self.store, self.state) for p in root.rglob(f"{TEMP_PREFIX}*")
                 if p.is_file() and not p.is_symlink()]
        return len(found), sum(1 for p in found if now - p.stat().st_mtime >= 60)

    def undo(self) -> tuple[str, int, int, int]:
        journal = self.state / "journal" / "rewrites.jsonl"
        res = subprocess.run([self.guardctl, "fix", "--undo", str(journal), "--store",
                              str(self.store), *self.common()], env=self.env,
                             capture_output=True, text=True, timeout=self.args.timeout * 5)
        said = (res.stdout or res.stderr).strip().splitlines()
        before, after = meta_files(self.pristine), meta_files(self.store)
        differ = sum(1 for k in before if k in after
                     and before[k].read_bytes() != after[k].read_bytes())
        return (said[-1] if said else f"exit {res.returncode}", differ,
                len(set(before) - set(after)), len(set(after) - set(before)))

    def end_ours(self) -> None:
        for p in self.seen.values():
            if alive(p):
                try:
                    p.kill()
                except psutil.Error:
                    pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=50, help="kill cycles (default 50)")
    parser.add_argument("--runs", type=int, default=3000,
                        help="runs in the generated store (default 3000)")
    parser.add_argument("--feed", type=int, default=200,
                        help="runs delivered again with foreign paths per cycle (default 200)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="bound on each wait, seconds (default 120)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folders")
    args = parser.parse_args(argv)
    if args.cycles < 1 or args.runs < 10 or args.feed < 0:
        parser.error("--cycles at least 1, --runs at least 10, --feed at least 0")
    try:
        soak = Soak(args)
    except BenchError as exc:
        print(f"bench_soak: {exc}", file=sys.stderr)
        return 1
    failed = False
    try:
        print(f"folder: {soak.root}; python {sys.executable}; {os.cpu_count()} CPUs, load "
              f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
        gen_s = soak.prepare()
        print(f"generated {args.runs} runs ({len(meta_files(soak.pristine))} meta.yaml) in "
              f"{gen_s:.1f} s; {args.cycles} cycles, {args.feed} runs fed per cycle",
              flush=True)
        soak.start()
        soak.wait_healthy(set())
        for n in range(1, args.cycles + 1):
            soak.cycle(n)
        orphans_before_stop = len(soak.orphans())
        soak.stop()
        after_stop = [p for p in soak.seen.values() if alive(p)]
        partial = soak.partial()
        temps, old_temps = soak.temps()
        said, differ, missing, extra = soak.undo()
    except BenchError as exc:
        failed = True
        print(f"bench_soak: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        failed = True
        print("bench_soak: interrupted", file=sys.stderr)
    finally:
        try:
            soak.stop()
        except BenchError:
            pass
        soak.end_ours()
        if not args.keep and not failed:
            shutil.rmtree(soak.root, ignore_errors=True)
        elif failed:
            print(f"bench_soak: folders kept in {soak.root}", file=sys.stderr)
    if failed:
        return 1
    times = [t for _, t in soak.healthy]
    print()
    print(f"soak: {len(times)} kill -9 cycles over {args.runs} runs "
          f"({', '.join(f'{k} {v}' for k, v in soak.kills.items())})")
    print(f"  orphans: {len(soak.orphans_seen)} distinct processes of ours seen alive outside "
          f"the current tree after a cycle; {orphans_before_stop} just before the stop; "
          f"{len(after_stop)} alive after `guardctl stop`")
    print(f"  partial meta.yaml (unparseable): {len(partial)}"
          + (f"  {partial[:5]}" if partial else ""))
    print(f"  leftover temp files (store + state folder): {temps}, of which older than 60 s: "
          f"{old_temps}")
    print(f"  undo: {said}")
    print(f"  undo mismatches (meta.yaml differing from the original store byte for byte): "
          f"{differ}; missing {missing}; extra {extra}")
    print(f"  time to healthy after a kill: median {statistics.median(times):.1f} s, max "
          f"{max(times):.1f} s")
    for target in TARGETS:
        mine = [t for k, t in soak.healthy if k == target]
        if mine:
            print(f"    {target:<13} {len(mine):3d} kills: median {statistics.median(mine):.1f} "
                  f"s, max {max(mine):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
