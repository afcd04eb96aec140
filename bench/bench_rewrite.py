"""Benchmark: what rewriting artifact paths to portable URIs costs, and how fast it reacts.

Measures, in one run, on one generated MLflow file store (in a temp folder, with the guard's
state folders, configs and journals in a second temp folder):

0. Generation: a store of --runs runs over 10 experiments laid out exactly like MLflow's file
   store writes it (meta.yaml written with yaml.dump(..., CSafeDumper) as MLflow's write_yaml
   does): `0/meta.yaml`, `.trash/`, `<exp>/meta.yaml`, `<exp>/<run>/meta.yaml` with every key
   MLflow writes and a foreign artifact_uri (`file:///C:/Users/alice/SynologyDrive/lab/mlruns/
   <exp>/<run>/artifacts`), `params/` (5 files), `metrics/` (5 files of `<ts> <value> <step>`
   lines), `tags/` (5 files), `artifacts/` (3-4 small files); for every 100th run a logged model
   `<exp>/models/<m-id>/` (meta.yaml, params, metrics, tags, artifacts), the run's
   `outputs/<m-id>/meta.yaml`, and a registered model version `models/<name>/version-N/` naming
   it. Prints the time, file count and size. The store is generated once and reused; rounds
   that need a pristine store get a shutil.copytree copy (followed by os.sync(), so no figure
   pays for writing back the copy).
1. Full pass vs bare walk, in this process, 3 rounds, each on a fresh copy:
   (b) `Fixer(copy, Journal(...), 'bench', foreign_delay=0).full_pass()` on the pristine copy
       (every location is rewritten: parse, dump, fsync'd temp file, rename, journal line);
   (a) the baseline: a bare os.walk over the whole (now canonical) copy that opens and parses
       (yaml CSafeLoader) every file named meta.yaml;
   (c) a second full_pass with the same Fixer on the same canonical copy (the steady state);
   (d) reconcile.find_copies, the daemon's conflict-copy scan, over the same copy.
   Prints the medians (3 each), meta.yaml files per second and the ratios (b)/(a), (c)/(a),
   (d)/(a), and (d)'s average share of a core at the default conflicts.scan_interval.
2. Event-to-fix latency through the real daemon: `guardctl run` over a canonical copy, config
   `rewrite: {foreign_delay: 0}`; once `guardctl status` exits 0 and status.json has
   portability.last_full_pass, --events times: a finished run arrives as a sync client delivers
   it (the run folder with metrics/, params/, artifacts/, tags/, then meta.yaml with a foreign
   artifact_uri written to a temp file outside the store and renamed into place), the clock
   starts right after the rename, and the file is read every 5 ms until it holds
   `mlflow-artifacts:/`. (A run created RUNNING, as FileStore.create_run writes it, is left
   alone by design until it ends: the guard defers work in flight.) An event starts no sooner
   than 50 ms after the previous one started, and never before it was fixed; --event-timeout
   bounds each, and a series stops after --max-misses consecutive misses. Prints p50/p95/max
   (nearest rank) and the watch mode. Then the same --poll-events times with a second daemon
   over another copy configured `rewrite: {watch: polling, poll_interval: 2,
   foreign_delay: 0}`. Each daemon's stdout+stderr is drained by a thread into a file (long
   lines cut) that also counts watchdog's "Inotify queue overflowed" messages.
3. Idle cost of the events daemon itself (after its latency events, before it is stopped):
   psutil on the daemon pid for --idle seconds: CPU (user+system of the daemon process only,
   all its threads) as % of one core, RSS max and last, inotify watches (`inotify wd:` lines in
   /proc/<pid>/fdinfo/*). The MLflow server tree (status.json "server"."tree") is not part of
   the figure; its summed RSS is printed separately.

Page cache: every figure runs with a WARM page cache (the store was just generated or copied
and fits in memory; caches are never dropped). Figures only, with the goals stated: no
pass/fail.

Run (from the repository root, with the project's venv):

    python bench/bench_rewrite.py [--runs 10000] [--events 200] [--poll-events 20]
                                  [--idle 60] [--event-timeout 30] [--max-misses 5]
                                  [--timeout 300] [--keep]

Exits non-zero with a message if a daemon never becomes ready within the timeout. Daemons are
always stopped with `guardctl stop`; only processes this script started are ended (by pid).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import psutil
import yaml
from benchlib import (
    BenchError,
    descendants,
    find_guardctl,
    fmt,
    free_port,
    read_status,
    stop_daemon,
    tail,
    wait_until,
)

try:
    from guard.core.journal import Journal
    from guard.portability.fixer import Fixer
    from guard.sync.reconcile import find_copies
except ImportError:  # run from a checkout without the editable install
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from guard.core.journal import Journal
    from guard.portability.fixer import Fixer
    from guard.sync.reconcile import find_copies

FOREIGN_ROOT = "file:///C:/Users/alice/SynologyDrive/lab/mlruns"
PORTABLE = b"mlflow-artifacts:/"
EXPERIMENTS = 10
MODEL_EVERY = 100  # every 100th run logs a model that a registered model version names
REGISTERED_NAMES = ("classifier", "regressor", "ranker", "embedder", "detector")
STATUS_POLL = 0.5  # seconds between readiness checks
EVENT_POLL = 0.005  # seconds between reads of an event's meta.yaml
EVENT_SPACING = 0.05  # seconds between event starts (at least)
IDLE_SAMPLE = 1.0  # seconds between RSS samples
SETTLE = 3.0  # seconds of quiet after the last event before idle sampling
ROUNDS = 3


# ---- helpers ---------------------------------------------------------------------------------
def nearest_rank(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def ms(value: float) -> str:
    return "never" if math.isinf(value) else f"{value * 1000:.0f} ms"


def write_yaml(path: Path, doc: dict) -> None:
    """As MLflow's write_yaml: a text file opened for writing, yaml.dump straight into it."""
    with open(path, "w", encoding="utf-8") as fh:
        yaml.dump(doc, fh, default_flow_style=False, allow_unicode=True, sort_keys=True,
                  Dumper=yaml.CSafeDumper)


def write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def tree_size(root: Path) -> tuple[int, int, int]:
    """(files, apparent bytes, allocated bytes) under root."""
    files = size = alloc = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            st = os.lstat(os.path.join(dirpath, name))
            files += 1
            size += st.st_size
            alloc += st.st_blocks * 512
    return files, size, alloc


# ---- the generated store ---------------------------------------------------------------------
ADJECTIVES = ("bald", "brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "kind",
              "lively", "nimble", "proud", "silly", "witty", "zealous")
ANIMALS = ("ant", "bat", "cat", "doe", "eel", "fox", "gnu", "hen", "owl", "ram", "yak", "wolf")


class StoreGenerator:
    def __init__(self, root: Path, seed: int = 42) -> None:
        self.root = root
        self.rng = random.Random(seed)
        self.t = 1_760_000_000_000  # ms since epoch, advancing
        self.files = 0
        self.meta = 0
        self.experiments: list[str] = []
        self.models = 0
        self.versions: dict[str, int] = {}

    def hex32(self) -> str:
        return f"{self.rng.getrandbits(128):032x}"

    def tick(self, most: int = 5000) -> int:
        self.t += self.rng.randint(1, most)
        return self.t

    def meta_file(self, folder: Path, doc: dict) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        write_yaml(folder / "meta.yaml", doc)
        self.files += 1
        self.meta += 1

    def text(self, path: Path, text: str) -> None:
        write_text(path, text)
        self.files += 1

    def experiment(self, exp_id: str, name: str) -> None:
        t = self.tick()
        self.meta_file(self.root / exp_id, {
            "artifact_location": f"{FOREIGN_ROOT}/{exp_id}", "creation_time": t,
            "effective_trace_archival_retention": None, "experiment_id": exp_id,
            "last_update_time": t, "lifecycle_stage": "active", "name": name,
            "trace_location": None, "workspace": "default"})

    def run(self, exp_id: str, index: int) -> None:
        rng = self.rng
        run_id = self.hex32()
        run_dir = self.root / exp_id / run_id
        start = self.tick(60_000)
        end = start + rng.randint(10_000, 3_600_000)
        run_name = f"{rng.choice(ADJECTIVES)}-{rng.choice(ANIMALS)}-{rng.randint(100, 999)}"
        self.meta_file(run_dir, {
            "artifact_uri": f"{FOREIGN_ROOT}/{exp_id}/{run_id}/artifacts", "end_time": end,
            "entry_point_name": "", "experiment_id": exp_id, "lifecycle_stage": "active",
            "run_id": run_id, "run_name": run_name, "source_name": "", "source_type": 4,
            "source_version": "", "start_time": start, "status": 3, "tags": [],
            "user_id": "alice"})
        for sub in ("params", "metrics", "tags", "artifacts", "artifacts/plots"):
            (run_dir / sub).mkdir()
        params = {"lr": f"{rng.choice((1e-4, 3e-4, 1e-3, 3e-3))}",
                  "batch_size": str(rng.choice((32, 64, 128, 256))),
                  "optimizer": rng.choice(("adam", "sgd", "adamw")),
                  "epochs": str(rng.randint(5, 50)), "seed": str(rng.randint(0, 9999))}
        for key, value in params.items():
            self.text(run_dir / "params" / key, value)
        for key in ("loss", "val_loss", "accuracy", "val_accuracy", "lr"):
            steps = rng.randint(3, 10)
            lines = [f"{start + 1000 * s} {rng.random():.6g} {s}" for s in range(steps)]
            self.text(run_dir / "metrics" / key, "\n".join(lines) + "\n")
        tags = {"mlflow.runName": run_name, "mlflow.user": "alice",
                "mlflow.source.name": "train.py", "mlflow.source.type": "LOCAL",
                "mlflow.source.git.commit": f"{rng.getrandbits(160):040x}"}
        for key, value in tags.items():
            self.text(run_dir / "tags" / key, value)
        self.text(run_dir / "artifacts" / "config.json",
                  json.dumps({"params": params, "run": run_name}, indent=2))
        self.text(run_dir / "artifacts" / "requirements.txt",
                  "torch==2.5.1\nnumpy==2.1.3\nmlflow==3.17.2\n")
        self.text(run_dir / "artifacts" / "plots" / "loss.csv",
                  "step,loss\n" + "".join(f"{s},{rng.random():.6f}\n"
                                          for s in range(rng.randint(20, 80))))
        if rng.random() < 0.5:
            self.text(run_dir / "artifacts" / "notes.md", f"# {run_name}\n\nlooks fine\n")
        if index % MODEL_EVERY == 0:
            self.logged_model(exp_id, run_id, run_dir, end)

    def logged_model(self, exp_id: str, run_id: str, run_dir: Path, t: int) -> None:
        rng = self.rng
        model_id = f"m-{self.hex32()}"
        mdir = self.root / exp_id / "models" / model_id
        name = REGISTERED_NAMES[self.models % len(REGISTERED_NAMES)]
        self.models += 1
        version = self.versions.get(name, 0) + 1
        self.versions[name] = version
        self.meta_file(mdir, {
            "artifact_location": f"{FOREIGN_ROOT}/{exp_id}/models/{model_id}/artifacts",
            "creation_timestamp": t - 5000, "experiment_id": exp_id,
            "last_updated_timestamp": t, "model_id": model_id, "model_type": None,
            "name": "model", "source_run_id": run_id, "status": 2, "status_message": None})
        for sub in ("params", "metrics", "tags", "artifacts"):
            (mdir / sub).mkdir()
        self.text(mdir / "params" / "lr", "0.001")
        self.text(mdir / "metrics" / "accuracy", f"{t} {rng.random():.6g} 0 {run_id}\n")
        for key, value in {"mlflow.source.type": "LOCAL", "mlflow.source.name": "train.py",
                           "mlflow.user": "alice",
                           "mlflow.modelVersions": json.dumps([{"name": name,
                                                                "version": version}])}.items():
            self.text(mdir / "tags" / key, value)
        self.text(mdir / "artifacts" / "MLmodel",
                  f"artifact_path: model\nmodel_id: {model_id}\nflavors:\n  python_function:\n"
                  "    loader_module: mlflow.pyfunc.model\n    python_version: 3.11.7\n")
        self.text(mdir / "artifacts" / "conda.yaml",
                  "channels:\n- conda-forge\ndependencies:\n- python=3.11.7\n- pip\n")
        self.text(mdir / "artifacts" / "python_env.yaml",
                  "python: 3.11.7\nbuild_dependencies:\n- pip\ndependencies:\n"
                  "- -r requirements.txt\n")
        self.text(mdir / "artifacts" / "requirements.txt", "mlflow==3.17.2\ncloudpickle\n")
        self.text(mdir / "artifacts" / "python_model.pkl",
                  "".join(chr(rng.randint(33, 126)) for _ in range(2048)))
        self.meta_file(run_dir / "outputs" / model_id, {
            "destination_id": model_id, "destination_type": "MODEL_OUTPUT",
            "source_id": model_id, "source_type": "RUN_OUTPUT", "step": 0, "tags": {}})
        reg = self.root / "models" / name
        if version == 1:
            self.meta_file(reg, {
                "aliases": {}, "creation_timestamp": t, "deployment_job_id": None,
                "deployment_job_state": None, "description": None,
                "last_updated_timestamp": t, "name": name, "workspace": "default"})
        self.meta_file(reg / f"version-{version}", {
            "creation_timestamp": t, "current_stage": "None", "deployment_job_state": None,
            "description": None, "last_updated_timestamp": t, "model_id": model_id,
            "name": name, "run_id": run_id, "run_link": None,
            "source": f"models:/{model_id}", "status": "READY", "status_message": None,
            "storage_location": f"{FOREIGN_ROOT}/{exp_id}/models/{model_id}/artifacts",
            "user_id": None, "version": version, "workspace": "default"})

    def generate(self, runs: int) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / ".trash").mkdir()
        (self.root / "models").mkdir()
        self.experiment("0", "Default")
        for i in range(EXPERIMENTS):
            exp_id = str(self.rng.randint(10 ** 17, 10 ** 18 - 1))
            self.experiments.append(exp_id)
            self.experiment(exp_id, f"project-{i}")
        for i in range(runs):
            self.run(self.experiments[i % EXPERIMENTS], i)


# ---- full pass vs bare walk ------------------------------------------------------------------
def bare_walk(store: Path) -> tuple[float, int]:
    """Open and parse every meta.yaml in the store; returns (seconds, files)."""
    count = 0
    t0 = time.perf_counter()
    for dirpath, _, names in os.walk(store):
        if "meta.yaml" in names:
            with open(os.path.join(dirpath, "meta.yaml"), "rb") as fh:
                yaml.load(fh.read(), Loader=yaml.CSafeLoader)
            count += 1
    return time.perf_counter() - t0, count


# ---- the daemon ------------------------------------------------------------------------------
class OutputSink(threading.Thread):
    """Drains a daemon's stdout+stderr into a file, cutting lines after LINE_LIMIT bytes (a
    warning may print the watcher's whole watch table), and counts watchdog's inotify queue
    overflow messages."""

    MARK = b"Inotify queue overflowed; filesystem events were lost"
    LINE_LIMIT = 2000

    def __init__(self, fd: int, path: Path) -> None:
        super().__init__(name=f"sink-{path.name}", daemon=True)
        self.fd = fd
        self.path = path
        self.overflows = 0
        self.total = 0  # bytes the daemon wrote

    def run(self) -> None:
        carry = b""
        col = 0
        with open(self.path, "wb") as out:
            while True:
                try:
                    chunk = os.read(self.fd, 1 << 16)
                except OSError:
                    break
                if not chunk:
                    break
                self.total += len(chunk)
                data = carry + chunk  # a mark split across reads is counted once
                self.overflows += data.count(self.MARK)
                carry = data[-(len(self.MARK) - 1):]
                pieces = chunk.split(b"\n")
                for n, piece in enumerate(pieces):
                    if col < self.LINE_LIMIT:
                        keep = piece[:self.LINE_LIMIT - col]
                        out.write(keep + (b" [...]" if len(keep) < len(piece) else b""))
                    col += len(piece)
                    if n < len(pieces) - 1:
                        out.write(b"\n")
                        col = 0
                out.flush()


class Daemon:
    """One `guardctl run` we started, with its own store, state folder, port and config."""

    def __init__(self, bench: Bench, name: str, store: Path, rewrite: dict) -> None:
        self.bench = bench
        self.name = name
        self.store = store
        self.state = bench.root / f"state-{name}"
        self.config = bench.root / f"config-{name}.yaml"
        self.config.write_text(yaml.safe_dump({"rewrite": rewrite}, sort_keys=False),
                               encoding="utf-8")
        self.port = free_port()
        self.out = bench.root / f"guard-{name}.out"
        self.guard_log = self.state / "logs" / "guard.log"
        self.proc: subprocess.Popen | None = None
        self.sink: OutputSink | None = None
        self.tree: dict[int, psutil.Process] = {}
        self.ready_s = 0.0

    def common(self) -> list[str]:
        return ["--config", str(self.config), "--state-dir", str(self.state)]

    def start(self, timeout: float) -> None:
        cmd = [self.bench.guardctl, "run", *self.common(), "--store", str(self.store),
               "--port", str(self.port)]
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, env=self.bench.env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.sink = OutputSink(self.proc.stdout.fileno(), self.out)
        self.sink.start()
        wait_until(self.ready, timeout,
                   f"{self.name} daemon: `guardctl status` exit 0 and a first full pass",
                   self.proc, self.out, interval=STATUS_POLL)
        self.ready_s = time.perf_counter() - t0
        self.tree.update((p.pid, p) for p in descendants(self.proc.pid))

    def portability(self) -> dict:
        return read_status(self.state).get("portability") or {}

    def ready(self) -> bool:
        if not self.portability().get("last_full_pass"):
            return False
        try:
            res = subprocess.run([self.bench.guardctl, "status", *self.common(), "--port",
                                  str(self.port), "--json"], env=self.bench.env,
                                 capture_output=True, text=True, timeout=30)
        except subprocess.TimeoutExpired:
            return False
        return res.returncode == 0

    def pid(self) -> int:
        """The daemon pid from status.json, checked to be the process we started."""
        pid = (read_status(self.state).get("daemon") or {}).get("pid")
        if pid != self.proc.pid:
            raise BenchError(f"{self.name}: status.json names daemon pid {pid}, but we started "
                             f"pid {self.proc.pid}")
        return pid

    def watch_setup_s(self) -> float | None:
        """From guard.log: 'starting' to 'path rewriting on' (the watcher is set up in the
        daemon's main thread before the server starts)."""
        start = done = None
        try:
            lines = self.guard_log.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return None
        for line in lines:
            try:
                at = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            except ValueError:
                continue
            if " starting (pid " in line and start is None:
                start = at
            elif "path rewriting on" in line and done is None:
                done = at
        return (done - start).total_seconds() if start and done else None

    def overflows(self) -> int:
        """Inotify queue overflows watchdog reported on the daemon's stderr."""
        return self.sink.overflows if self.sink else 0

    def output_mb(self) -> float:
        return self.sink.total / 1e6 if self.sink else 0.0

    def stop(self) -> None:
        if self.proc is None:
            return
        proc = self.proc
        stop_daemon([self.bench.guardctl, "stop", *self.common()], self.bench.env, proc,
                    self.tree, self.bench.timeout, self.name)
        if self.sink is not None:
            self.sink.join(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
        self.proc = None


def new_run(exp_dir: Path, exp_id: str, rng: random.Random,
            incoming: Path) -> tuple[Path, str, float]:
    """A finished run arriving by sync: its folders and tags, then meta.yaml written to a temp
    file outside the store and renamed into place. Returns (meta.yaml, the value the guard
    should write, perf_counter right after the rename)."""
    run_id = f"{rng.getrandbits(128):032x}"
    run_dir = exp_dir / run_id
    name = f"{rng.choice(ADJECTIVES)}-{rng.choice(ANIMALS)}-{rng.randint(100, 999)}"
    end = int(time.time() * 1000)
    run_dir.mkdir()
    for sub in ("metrics", "params", "artifacts", "tags"):
        (run_dir / sub).mkdir()
    for key, value in {"mlflow.runName": name, "mlflow.user": "alice",
                       "mlflow.source.name": "train.py", "mlflow.source.type": "LOCAL"}.items():
        write_text(run_dir / "tags" / key, value)
    tmp = incoming / f".meta-{run_id}.yaml"
    write_yaml(tmp, {
        "artifact_uri": f"{FOREIGN_ROOT}/{exp_id}/{run_id}/artifacts", "end_time": end,
        "entry_point_name": "", "experiment_id": exp_id, "lifecycle_stage": "active",
        "run_id": run_id, "run_name": name, "source_name": "", "source_type": 4,
        "source_version": "", "start_time": end - rng.randint(60_000, 3_600_000), "status": 3,
        "tags": [], "user_id": "alice"})
    os.replace(tmp, run_dir / "meta.yaml")
    return run_dir / "meta.yaml", f"mlflow-artifacts:/{exp_id}/{run_id}/artifacts", \
        time.perf_counter()


def latencies(daemon: Daemon, exp_id: str, count: int, timeout: float, seed: int,
              max_misses: int) -> tuple[list[float], int]:
    """Event-to-fix latencies (inf: not fixed within `timeout`) and the number of files that
    got a portable value other than the expected one. Stops early after `max_misses`
    consecutive events that were never fixed."""
    rng = random.Random(seed)
    exp_dir = daemon.store / exp_id
    incoming = daemon.bench.root / f"incoming-{daemon.name}"  # same filesystem as the store
    incoming.mkdir(exist_ok=True)
    out: list[float] = []
    wrong = misses = 0
    last_start = 0.0
    for _ in range(count):
        wait = last_start + EVENT_SPACING - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        if daemon.proc.poll() is not None:
            raise BenchError(f"{daemon.name} daemon exited with code {daemon.proc.returncode} "
                             f"during the events; last output:\n{tail(daemon.out)}")
        meta, expected, t0 = new_run(exp_dir, exp_id, rng, incoming)
        last_start = t0
        deadline = t0 + timeout
        while True:
            with open(meta, "rb") as fh:
                raw = fh.read()
            now = time.perf_counter()
            if PORTABLE in raw:
                out.append(now - t0)
                misses = 0
                if f"artifact_uri: {expected}\n".encode() not in raw:
                    wrong += 1
                break
            if now > deadline:
                out.append(math.inf)
                misses += 1
                break
            time.sleep(EVENT_POLL)
        if misses >= max_misses:
            break
    return out, wrong


def inotify_watches(pid: int) -> int | None:
    folder = Path(f"/proc/{pid}/fdinfo")
    if not folder.is_dir():
        return None
    total = 0
    for entry in folder.iterdir():
        try:
            text = entry.read_text(errors="replace")
        except OSError:
            continue
        total += sum(1 for line in text.splitlines() if line.startswith("inotify wd:"))
    return total


def server_tree_rss(state: Path) -> tuple[int, int]:
    """(processes, summed RSS) of the server tree status.json names (create_time checked)."""
    count = rss = 0
    for rec in (read_status(state).get("server") or {}).get("tree") or []:
        try:
            p = psutil.Process(int(rec["pid"]))
            if abs(p.create_time() - float(rec["create_time"])) > 0.01:
                continue
            rss += p.memory_info().rss
            count += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError, TypeError, ValueError):
            continue
    return count, rss


def idle_sample(daemon: Daemon, seconds: float) -> dict:
    pid = daemon.pid()
    proc = psutil.Process(pid)
    rss: list[int] = []
    c0 = proc.cpu_times()
    t0 = time.monotonic()
    end = t0 + seconds
    while True:
        if daemon.proc.poll() is not None:
            raise BenchError(f"{daemon.name} daemon exited with code {daemon.proc.returncode} "
                             f"while idle; last output:\n{tail(daemon.out)}")
        rss.append(proc.memory_info().rss)
        now = time.monotonic()
        if now >= end:
            break
        time.sleep(min(IDLE_SAMPLE, end - now))
    c1 = proc.cpu_times()
    wall = time.monotonic() - t0
    cpu = (c1.user + c1.system) - (c0.user + c0.system)
    n_server, server_rss = server_tree_rss(daemon.state)
    return {"pid": pid, "wall": wall, "cpu_pct": 100 * cpu / wall, "cpu_s": cpu,
            "rss_max": max(rss), "rss_last": rss[-1], "watches": inotify_watches(pid),
            "threads": proc.num_threads(), "server_procs": n_server, "server_rss": server_rss}


# ---- the benchmark ---------------------------------------------------------------------------
class Bench:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.guardctl = find_guardctl()
        self.root = Path(tempfile.mkdtemp(prefix="guard-bench-rw-"))  # state, logs, configs
        self.data = Path(tempfile.mkdtemp(prefix="guard-bench-rw-store-"))  # the stores
        self.pristine = self.data / "pristine" / "mlruns"
        self.env = {k: v for k, v in os.environ.items() if k != "MLFLOW_GUARD_CONFIG"}
        self.env["MLFLOW_ALLOW_FILE_STORE"] = "true"
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.daemons: list[Daemon] = []

    def copy(self, name: str) -> tuple[Path, float]:
        dest = self.data / name / "mlruns"
        t0 = time.perf_counter()
        shutil.copytree(self.pristine, dest, symlinks=True)
        os.sync()  # write the copy back now, so no measured fsync pays for it
        return dest, time.perf_counter() - t0

    def daemon(self, name: str, store: Path, rewrite: dict) -> Daemon:
        d = Daemon(self, name, store, rewrite)
        self.daemons.append(d)
        return d

    def stop_all(self) -> None:
        for d in self.daemons:
            d.stop()

    def cleanup(self, keep_logs: bool) -> None:
        shutil.rmtree(self.data, ignore_errors=True)
        if not keep_logs:
            shutil.rmtree(self.root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10000,
                        help="runs in the generated store (default 10000)")
    parser.add_argument("--events", type=int, default=200,
                        help="new runs for the events daemon's latency (default 200)")
    parser.add_argument("--poll-events", type=int, default=20,
                        help="new runs for the polling daemon's latency (default 20)")
    parser.add_argument("--idle", type=float, default=60.0,
                        help="seconds of idle sampling of the events daemon (default 60)")
    parser.add_argument("--event-timeout", type=float, default=30.0,
                        help="seconds to wait for one event's fix before counting it as "
                             "never fixed (default 30)")
    parser.add_argument("--max-misses", type=int, default=5,
                        help="stop a latency series after this many consecutive events that "
                             "were never fixed (default 5)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="bound on every other wait, seconds (default 300)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temp stores and state/log folders")
    args = parser.parse_args(argv)
    if args.runs < EXPERIMENTS:
        parser.error(f"--runs must be at least {EXPERIMENTS}")
    if args.events < 1 or args.poll_events < 1 or args.max_misses < 1 or args.idle <= 0:
        parser.error("--events, --poll-events and --max-misses must be at least 1, "
                     "--idle above 0")

    try:
        bench = Bench(args.timeout)
    except BenchError as exc:
        print(f"bench_rewrite: {exc}", file=sys.stderr)
        return 1
    failed = False
    res: dict = {}
    try:
        print(f"store: {bench.data}  (state/logs/configs: {bench.root})")
        print(f"python: {sys.executable}; {os.cpu_count()} CPUs, load average "
              f"{', '.join(f'{x:.2f}' for x in os.getloadavg())} at start")
        print("page cache: WARM for every figure (store just generated or copied, fits in RAM; "
              "caches never dropped)", flush=True)

        # -- 0. generate ------------------------------------------------------------------
        gen = StoreGenerator(bench.pristine)
        t0 = time.perf_counter()
        gen.generate(args.runs)
        gen_s = time.perf_counter() - t0
        files, size, alloc = tree_size(bench.pristine)
        print(f"generated {args.runs} runs over {EXPERIMENTS} experiments in {gen_s:.1f} s: "
              f"{files} files ({files / args.runs:.1f} per run), {gen.meta} meta.yaml, "
              f"{gen.models} logged models / model versions, {size / 2**20:.1f} MiB apparent, "
              f"{alloc / 2**20:.1f} MiB allocated", flush=True)

        # -- 1. full pass vs bare walk ----------------------------------------------------
        walks: list[float] = []
        firsts: list[float] = []
        steadies: list[float] = []
        copies: dict[int, Path] = {}
        scans: list[float] = []
        walk_files = pass_files = 0
        rewritten = 0
        for i in range(1, ROUNDS + 1):
            store, copy_s = bench.copy(f"copy-{i}")
            copies[i] = store
            fixer = Fixer(store, Journal(bench.root / f"journal-{i}.jsonl"), "bench",
                          foreign_delay=0)
            t0 = time.perf_counter()
            first = fixer.full_pass()
            firsts.append(time.perf_counter() - t0)
            walk_s, walk_files = bare_walk(store)
            walks.append(walk_s)
            t0 = time.perf_counter()
            find_copies(store, ["bench", "other-host"])
            scans.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            steady = fixer.full_pass()
            steadies.append(time.perf_counter() - t0)
            pass_files = steady["files"]
            rewritten = first["outcomes"].get("rewritten", 0)
            if steady["outcomes"].get("rewritten"):
                raise BenchError(f"round {i}: the second full pass rewrote files again: "
                                 f"{steady['outcomes']}")
            print(f"  round {i}: copy {copy_s:5.1f} s (+sync) | (b) first pass {firsts[-1]:6.2f} s "
                  f"{first['outcomes']} | (a) bare walk {walk_s:6.2f} s | (c) steady pass "
                  f"{steadies[-1]:6.2f} s {steady['outcomes']}", flush=True)
            if i == 1:  # copies 2 and 3 serve the daemons
                shutil.rmtree(store, ignore_errors=True)
        res["scans"] = scans
        res["pass"] = (statistics.median(walks), statistics.median(firsts),
                       statistics.median(steadies), walk_files, pass_files, rewritten,
                       walks, firsts, steadies)

        # -- 2. latency, events daemon ----------------------------------------------------
        exp_id = gen.experiments[0]
        events = bench.daemon("events", copies[3], {"foreign_delay": 0})
        events.start(args.timeout)
        port_ev = events.portability()
        print(f"  events daemon pid {events.pid()} ready after {events.ready_s:.1f} s "
              f"(watch mode {port_ev.get('watch_mode')}; watcher set up in "
              f"{events.watch_setup_s()} s before the server start; first full pass "
              f"{(port_ev.get('last_full_pass') or {}).get('duration_s')} s)", flush=True)
        lat_ev, wrong_ev = latencies(events, exp_id, args.events, args.event_timeout, 1,
                                     args.max_misses)
        time.sleep(SETTLE)  # also lets status.json (written at most once a second) catch up
        port_ev = events.portability()
        print(f"  events daemon: {len(lat_ev)} events done; rewrites_total "
              f"{port_ev.get('rewrites_total')}, problems {port_ev.get('problem_count')}, "
              f"deferred {port_ev.get('deferred_in_flight')}; watchdog inotify queue "
              f"overflows so far {events.overflows()}", flush=True)

        # -- 3. idle cost of the events daemon --------------------------------------------
        before = events.overflows()
        idle = idle_sample(events, args.idle)
        idle["overflows"] = events.overflows() - before
        events.stop()
        print(f"  events daemon idle sampled for {idle['wall']:.0f} s, then stopped", flush=True)

        # -- 2b. latency, polling daemon --------------------------------------------------
        polling = bench.daemon("polling", copies[2],
                               {"watch": "polling", "poll_interval": 2, "foreign_delay": 0})
        polling.start(args.timeout)
        port_po = polling.portability()
        print(f"  polling daemon pid {polling.pid()} ready after {polling.ready_s:.1f} s "
              f"(watch mode {port_po.get('watch_mode')}; first full pass "
              f"{(port_po.get('last_full_pass') or {}).get('duration_s')} s)", flush=True)
        lat_po, wrong_po = latencies(polling, exp_id, args.poll_events, args.event_timeout, 2,
                                     args.max_misses)
        port_po = polling.portability()
        last_poll_pass = (port_po.get("last_full_pass") or {}).get("duration_s")
        polling.stop()
        print(f"  polling daemon: {len(lat_po)} events done; last cached poll pass "
              f"{last_poll_pass} s; stopped", flush=True)
    except BenchError as exc:
        failed = True
        print(f"bench_rewrite: {exc}", file=sys.stderr)
        print(f"bench_rewrite: logs kept in {bench.root}", file=sys.stderr)
    except OSError as exc:  # e.g. the temp store vanished or the disk filled up
        failed = True
        print(f"bench_rewrite: {type(exc).__name__}: {str(exc)[:500]}", file=sys.stderr)
        print(f"bench_rewrite: logs kept in {bench.root}", file=sys.stderr)
    except KeyboardInterrupt:
        failed = True
        print("bench_rewrite: interrupted", file=sys.stderr)
    finally:
        bench.stop_all()
        if not args.keep:
            bench.cleanup(keep_logs=failed)
    if failed:
        return 1
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())

    walk, first, steady, walk_files, pass_files, rewritten, walks, firsts, steadies = res["pass"]
    print()
    print(f"full pass vs bare walk, {args.runs} runs (median of {ROUNDS}; warm page cache):")
    print(f"  (a) bare os.walk + CSafeLoader     {walk:7.2f} s  {walk_files / walk:8.0f} "
          f"meta.yaml/s  ({walk_files} files)  [{fmt(walks)}]")
    print(f"  (b) full_pass, all rewritten       {first:7.2f} s  {pass_files / first:8.0f} "
          f"meta.yaml/s  ({pass_files} files, {rewritten} rewritten)  [{fmt(firsts)}]")
    print(f"  (c) full_pass, steady state        {steady:7.2f} s  {pass_files / steady:8.0f} "
          f"meta.yaml/s  ({pass_files} files)  [{fmt(steadies)}]")
    print(f"  ratio (b)/(a) {first / walk:5.2f}   ratio (c)/(a) {steady / walk:5.2f}   "
          "(goal: at most 1.5)")
    scan = statistics.median(res["scans"])
    print(f"  (d) conflict-copy scan (reconcile.find_copies) {scan:5.2f} s, ratio (d)/(a) "
          f"{scan / walk:5.2f}; at conflicts.scan_interval 300 s that is "
          f"{100 * scan / 300:.2f} % of a core on average  [{fmt(res['scans'])}]")

    def lat_line(name: str, values: list[float], wanted: int, wrong: int,
                 mode: str | None) -> str:
        missed = sum(1 for v in values if math.isinf(v))
        stopped = (f"; stopped after {args.max_misses} consecutive misses"
                   if len(values) < wanted else "")
        return (f"  {name:<33} p50 {ms(nearest_rank(values, 50)):>7}  p95 "
                f"{ms(nearest_rank(values, 95)):>7}  max {ms(max(values)):>7}\n"
                f"  {'':<33} ({len(values)} of {wanted} events{stopped}; watch mode {mode}; "
                f"{missed} not fixed within {args.event_timeout:g} s; {wrong} wrong value)")

    print(f"event-to-fix latency, finished run's meta.yaml renamed into place -> "
          f"mlflow-artifacts:/ (read every {EVENT_POLL * 1000:.0f} ms; warm page cache):")
    print(lat_line("events daemon (foreign_delay 0)", lat_ev, args.events, wrong_ev,
                   port_ev.get("watch_mode")))
    print("    goal: p95 under 1 s with events")
    print(lat_line("polling daemon (poll_interval 2)", lat_po, args.poll_events, wrong_po,
                   port_po.get("watch_mode")))
    print("    (each event starts just after the previous fix, i.e. just after a poll pass: "
          "near the worst case,\n     poll_interval + pass; random arrivals average "
          "poll_interval/2 + pass)")
    watches = "unreadable" if idle["watches"] is None else str(idle["watches"])
    print(f"events daemon idle, {idle['wall']:.0f} s, daemon process only "
          f"(pid {idle['pid']}, {idle['threads']} threads):")
    print(f"  CPU {idle['cpu_pct']:.2f} % of one core ({idle['cpu_s']:.2f} s CPU)   "
          "(goal: under 1 %)")
    print(f"  RSS max {idle['rss_max'] / 1e6:.1f} MB, last {idle['rss_last'] / 1e6:.1f} MB"
          "   (goal: under 80 MB; MB = 10^6 bytes)")
    print(f"  inotify watches {watches}; watchdog inotify queue overflows while sampling: "
          f"{idle['overflows']}")
    print(f"  not counted: MLflow server tree, {idle['server_procs']} processes, summed RSS "
          f"{idle['server_rss'] / 1e6:.1f} MB")
    print(f"daemon stdout+stderr over the whole run: events daemon {events.output_mb():.1f} MB "
          f"({events.overflows()} inotify queue overflows), polling daemon "
          f"{polling.output_mb():.1f} MB")
    print(f"load average at the end: {load} ({os.cpu_count()} CPUs; other processes on the "
          "machine are not controlled)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
