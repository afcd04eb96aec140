"""Benchmark: what the vault (guard/vault.py) costs in time, disk space, idle CPU and memory.

Measures, in one run, on one generated MLflow file store (bench_rewrite.StoreGenerator: --runs
runs over 10 experiments, every 100th with a logged model and a model version; generated with
portable `mlflow-artifacts:/` locations, checked by one Fixer full pass, so the daemons below
have nothing to rewrite), in a temp folder on the --tmp volume (default: the system temp
folder), with the vaults next to it on the same volume:

1. Building the vault from scratch vs a bare walk, in this process, --rounds rounds (default
   3), each: (a) the baseline, a bare `os.walk` + `os.stat` of every file of the store; (b) the
   build into a fresh, empty vault folder: `Vault(root, store, copy_max_bytes).open()`, then
   `vault.sync(())`, then `vault.save(force=True)`; (c) a second `sync(())` pass on the built
   vault (the steady state, what the daemon repeats every vault.scan_interval), plus the rest
   of the daemon's full pass, `collect()` and a forced `save()`, timed separately. Prints the
   medians, files per second and the ratios (b)/(a), (c)/(a), and the average share of a core
   that (c) + collect costs at the default vault.scan_interval (300 s).
2. Extra disk space of the hard-link vault (the last round's vault): allocated bytes
   (st_blocks * 512) of every directory under the vault root (the root, objects/, its bucket
   folders) and of every file with a single link (index.json.gz, vault.lock, anything else);
   files with more than one link are the store's own data blocks under a second name and count
   0. Compared with the store's allocated size (every file and directory). Prints both, the
   percentage (goal: under 1 %), index.json.gz separately, and bytes per store file.
3. Copy mode, for comparison: if /dev/shm (tmpfs) is on another device than the store, a vault
   there (hard links fail across devices, so Vault picks copies; checked) is built the same
   way; prints its time and allocated size (as tmpfs reports it). Skipped, with the reason,
   otherwise.
4. The daemon's idle cost with the vault on vs off: two real daemons (`guardctl run`), each on
   its own copy of the store (in /dev/shm if it has room, else under --tmp), with its own
   state folder next to that copy (so the vault, <state_dir>/vault, is on the store's volume
   and uses hard links), free port and config file (`host_id`, `vault: {enabled: true}` vs
   `vault: {enabled: false}`; everything else default), MLFLOW_ALLOW_FILE_STORE=true. Both are
   started together; once each status.json says phase "running", the first rewrite pass is
   done and, for the vault-on daemon, vault.ready is true (its initial pass done), and after
   5 s of quiet, both daemon processes are sampled over the same --idle window (default
   30 s): CPU (user + system of the daemon process only, all its threads; not the MLflow server
   tree) as % of one core, RSS every second (max). Prints both and the ratios on/off. The
   daemons are stopped with `guardctl stop`; anything they started that outlives that is ended
   by pid.

Page cache: every figure runs with a WARM page cache (the store was just generated or copied
and fits in memory; caches are never dropped). Figures only, with the goals stated: no
pass/fail.

Run (from the repository root, with the project's venv):

    /work/venv/bin/python bench/bench_vault.py [--runs 10000] [--idle 30] [--keep]
                                               [--rounds 3] [--tmp DIR] [--timeout 300]

Exits non-zero with a message if a daemon never becomes ready within --timeout. Only
processes this script started are ended (by pid); temp folders are removed unless --keep
(a failed run keeps its configs and daemon logs).
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
    descendants,
    end_started,
    find_guardctl,
    fmt,
    free_port,
    read_status,
    stop_daemon,
    tail,
    wait_until,
)

from guard.portability.fixer import Fixer  # noqa: E402
from guard.protection.vault import COPY, LINK, Vault  # noqa: E402

PORTABLE_ROOT = "mlflow-artifacts:"  # StoreGenerator writes f"{root}/<exp>/<run>/artifacts"
COPY_MAX_BYTES = 100 * 1024 * 1024  # vault.copy_max_bytes default
SCAN_INTERVAL = 300.0  # vault.scan_interval default
SHM = Path("/dev/shm")
STATUS_POLL = 0.5  # seconds between readiness checks
SETTLE = 5.0  # seconds of quiet after both daemons are ready, before idle sampling
IDLE_SAMPLE = 1.0  # seconds between RSS samples


# ---- measuring -------------------------------------------------------------------------------
def bare_walk(store: Path) -> tuple[float, int, int]:
    """os.walk + os.stat of every file; returns (seconds, files, folders, the root included)."""
    files, folders = 0, 1
    t0 = time.perf_counter()
    for dirpath, dirs, names in os.walk(store):
        folders += len(dirs)
        for name in names:
            os.stat(os.path.join(dirpath, name))
            files += 1
    return time.perf_counter() - t0, files, folders


def store_allocated(root: Path) -> dict:
    """Allocated bytes (st_blocks * 512) of every file and folder under root (root included)."""
    out = {"files": 0, "dirs": 1, "file_bytes": 0, "dir_bytes": os.lstat(root).st_blocks * 512,
           "apparent": 0}
    for dirpath, dirs, names in os.walk(root):
        for name in dirs:
            out["dirs"] += 1
            out["dir_bytes"] += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
        for name in names:
            st = os.lstat(os.path.join(dirpath, name))
            out["files"] += 1
            out["file_bytes"] += st.st_blocks * 512
            out["apparent"] += st.st_size
    out["total"] = out["file_bytes"] + out["dir_bytes"]
    return out


def vault_extra(root: Path) -> dict:
    """What a vault adds on disk: every folder, and every file with one link; files with more
    links share their data blocks with the store and count 0 (their entry is in a folder)."""
    out = {"dirs": 1, "dir_bytes": os.lstat(root).st_blocks * 512, "linked": 0, "own_files": 0,
           "own_bytes": 0, "index_bytes": 0, "index_apparent": 0, "buckets": 0,
           "largest_bucket": 0}
    for dirpath, dirs, names in os.walk(root):
        for name in dirs:
            out["dirs"] += 1
            out["dir_bytes"] += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            if Path(dirpath) == root / "objects":
                out["buckets"] += 1
        if Path(dirpath).parent == root / "objects":
            out["largest_bucket"] = max(out["largest_bucket"], len(names))
        for name in names:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if st.st_nlink > 1:
                out["linked"] += 1
                continue
            out["own_files"] += 1
            out["own_bytes"] += st.st_blocks * 512
            if Path(path) == root / "index.json.gz":
                out["index_bytes"] = st.st_blocks * 512
                out["index_apparent"] = st.st_size
    out["total"] = out["dir_bytes"] + out["own_bytes"]
    return out


def build_vault(root: Path, store: Path) -> tuple[Vault, dict]:
    """The timed build: open, sync(()), save(force=True)."""
    t0 = time.perf_counter()
    vault = Vault(root, store, COPY_MAX_BYTES)
    vault.open()
    t1 = time.perf_counter()
    missing = vault.sync(())
    t2 = time.perf_counter()
    vault.save(force=True)
    t3 = time.perf_counter()
    return vault, {"open": t1 - t0, "sync": t2 - t1, "save": t3 - t2, "total": t3 - t0,
                   "missing": len(missing)}


def same_device(a: Path, b: Path) -> bool:
    return os.stat(a).st_dev == os.stat(b).st_dev


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def median(values: list[float]) -> float:
    return statistics.median(values)


# ---- the daemons -----------------------------------------------------------------------------
class Daemon:
    """One `guardctl run` we started, on its own store copy, state folder, port and config."""

    def __init__(self, bench: Bench, name: str, store: Path, state: Path,
                 vault_on: bool) -> None:
        self.bench = bench
        self.name = name
        self.store = store
        self.state = state
        self.vault_on = vault_on
        self.config = bench.root / f"config-{name}.yaml"
        self.config.write_text(yaml.safe_dump({"host_id": f"bench-{name}",
                                               "vault": {"enabled": vault_on}},
                                              sort_keys=False), encoding="utf-8")
        self.port = free_port()
        self.out = bench.root / f"guard-{name}.out"
        self.proc: subprocess.Popen | None = None
        self.out_fh = None
        self.tree: dict[int, psutil.Process] = {}
        self.t0 = 0.0
        self.ready_s: float | None = None

    def common(self) -> list[str]:
        return ["--config", str(self.config), "--state-dir", str(self.state)]

    def start(self) -> None:
        cmd = [self.bench.guardctl, "run", *self.common(), "--store", str(self.store),
               "--port", str(self.port)]
        self.out_fh = open(self.out, "wb")
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, env=self.bench.env, stdin=subprocess.DEVNULL,
                                     stdout=self.out_fh, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def status(self) -> dict:
        return read_status(self.state)

    def ready(self) -> bool:
        if self.ready_s is not None:
            return True
        doc = self.status()
        if doc.get("phase") != "running":
            return False
        if not (doc.get("portability") or {}).get("last_full_pass"):
            return False
        vault = doc.get("vault") or {}
        if self.vault_on and vault.get("ready") is not True:
            if vault.get("error"):
                raise BenchError(f"{self.name} daemon: vault error: {vault['error']}")
            return False
        self.ready_s = time.perf_counter() - self.t0
        self.tree.update((p.pid, p) for p in descendants(self.proc.pid))
        return True

    def check_alive(self, what: str) -> None:
        if self.proc.poll() is not None:
            raise BenchError(f"{self.name} daemon exited with code {self.proc.returncode} "
                             f"{what}; last output of {self.out}:\n{tail(self.out)}")

    def pid(self) -> int:
        """The daemon pid from status.json, checked to be the process we started."""
        pid = (self.status().get("daemon") or {}).get("pid")
        if pid != self.proc.pid:
            raise BenchError(f"{self.name}: status.json names daemon pid {pid}, but we started "
                             f"pid {self.proc.pid}")
        return pid

    def stop(self) -> None:
        if self.proc is None:
            return
        proc = self.proc
        self.tree.update((p.pid, p) for p in descendants(proc.pid))
        stop_daemon([self.bench.guardctl, "stop", *self.common()], self.bench.env, proc,
                    self.tree, self.bench.timeout, self.name)
        if proc.poll() is None:  # stop_daemon ends a lingering daemon; make sure
            end_started(proc)
        if self.out_fh is not None:
            self.out_fh.close()
            self.out_fh = None
        self.proc = None


def wait_all_ready(daemons: list[Daemon], timeout: float) -> None:
    def cond() -> bool:
        ready = True
        for d in daemons:
            d.check_alive("before it was ready")
            ready = d.ready() and ready
        return ready

    names = " and ".join(d.name for d in daemons)
    wait_until(cond, timeout, f"{names} daemons: phase running, first rewrite pass done, vault "
               "ready", interval=STATUS_POLL)


def idle_sample(daemons: list[Daemon], seconds: float) -> dict[str, dict]:
    """CPU and RSS of each daemon process over one shared window."""
    procs = {d.name: psutil.Process(d.pid()) for d in daemons}
    rss: dict[str, list[int]] = {name: [] for name in procs}
    c0 = {name: p.cpu_times() for name, p in procs.items()}
    t0 = time.monotonic()
    end = t0 + seconds
    while True:
        for d in daemons:
            d.check_alive("while idle")
            rss[d.name].append(procs[d.name].memory_info().rss)
        now = time.monotonic()
        if now >= end:
            break
        time.sleep(min(IDLE_SAMPLE, end - now))
    wall = time.monotonic() - t0
    out = {}
    for name, p in procs.items():
        c1 = p.cpu_times()
        cpu = (c1.user + c1.system) - (c0[name].user + c0[name].system)
        out[name] = {"pid": p.pid, "wall": wall, "cpu_s": cpu, "cpu_pct": 100 * cpu / wall,
                     "rss_max": max(rss[name]), "rss_last": rss[name][-1],
                     "threads": p.num_threads()}
    return out


# ---- the benchmark ---------------------------------------------------------------------------
class Bench:
    def __init__(self, timeout: float, tmp: str | None) -> None:
        self.timeout = timeout
        self.guardctl = find_guardctl()
        self.root = Path(tempfile.mkdtemp(prefix="guard-bench-vault-", dir=tmp))  # configs, logs
        self.data = Path(tempfile.mkdtemp(prefix="guard-bench-vault-store-", dir=tmp))
        self.pristine = self.data / "pristine" / "mlruns"
        self.shm_dirs: list[Path] = []  # our folders in /dev/shm
        self.env = {k: v for k, v in os.environ.items() if k != "MLFLOW_GUARD_CONFIG"}
        self.env["MLFLOW_ALLOW_FILE_STORE"] = "true"
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.daemons: list[Daemon] = []
        self.open_vaults: list[Vault] = []

    def shm_dir(self, prefix: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=SHM))
        self.shm_dirs.append(path)
        return path

    def close_vault(self, vault: Vault) -> None:
        if vault in self.open_vaults:
            self.open_vaults.remove(vault)
            vault.close()

    def stop_all(self) -> None:
        for d in self.daemons:
            try:
                d.stop()
            except Exception as exc:  # noqa: BLE001 - stop the others regardless
                print(f"warning: stopping the {d.name} daemon: {exc!r}", file=sys.stderr)
        for vault in list(self.open_vaults):
            try:
                self.close_vault(vault)
            except OSError:
                pass

    def keep_logs(self) -> None:
        """Daemon logs out of the (possibly RAM-backed) daemon folders, before they go."""
        for d in self.daemons:
            for name in ("guard.log", "mlflow-server.log"):
                src = d.state / "logs" / name
                if src.exists():
                    shutil.copy2(src, self.root / f"{d.name}-{name}")

    def cleanup(self, keep_logs: bool) -> None:
        for path in self.shm_dirs:
            shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(self.data, ignore_errors=True)
        if not keep_logs:
            shutil.rmtree(self.root, ignore_errors=True)


def run_bench(bench: Bench, args: argparse.Namespace) -> dict:
    res: dict = {}
    # -- 0. generate -----------------------------------------------------------------------
    bench_rewrite.FOREIGN_ROOT = PORTABLE_ROOT  # the generator's locations, already portable
    gen = StoreGenerator(bench.pristine)
    t0 = time.perf_counter()
    gen.generate(args.runs)
    gen_s = time.perf_counter() - t0
    fixed = Fixer(bench.pristine, None, "bench", foreign_delay=0).full_pass()
    os.sync()  # write the store back now, so no figure below pays for it
    size = store_allocated(bench.pristine)
    res["store"] = size
    print(f"generated {args.runs} runs over {EXPERIMENTS} experiments in {gen_s:.1f} s: "
          f"{size['files']} files, {size['dirs']} folders, {gen.models} logged models / model "
          f"versions; {mib(size['apparent'])} apparent, {mib(size['total'])} allocated "
          f"({mib(size['file_bytes'])} files + {mib(size['dir_bytes'])} folders)")
    print(f"  Fixer full pass (foreign_delay 0): {fixed['outcomes']} in {fixed['duration_s']} s "
          "(nothing left for the daemons to rewrite)", flush=True)

    # -- 1. build vs bare walk -------------------------------------------------------------
    walks, builds, steadies, collects, saves = [], [], [], [], []
    phases: list[dict] = []
    vault: Vault | None = None
    vault_root: Path | None = None
    walk_files = walk_dirs = kept = 0
    for i in range(1, args.rounds + 1):
        if vault is not None:  # the previous round's vault: gone before this round
            bench.close_vault(vault)
            shutil.rmtree(vault_root)
            os.sync()
        vault_root = bench.data / f"vault-{i}"
        walk_s, walk_files, walk_dirs = bare_walk(bench.pristine)
        walks.append(walk_s)
        vault, times = build_vault(vault_root, bench.pristine)
        bench.open_vaults.append(vault)
        if vault.mode != LINK:
            raise BenchError(f"the vault in {vault_root} is in {vault.mode} mode, not {LINK}, "
                             "on the store's own volume")
        builds.append(times["total"])
        phases.append(times)
        t0 = time.perf_counter()
        missing = vault.sync(())
        steadies.append(time.perf_counter() - t0)
        if missing or vault.dirty:
            raise BenchError(f"round {i}: the steady pass found {len(missing)} missing paths, "
                             f"dirty={vault.dirty}")
        t0 = time.perf_counter()
        removed = vault.collect()
        collects.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        vault.save(force=True)
        saves.append(time.perf_counter() - t0)
        kept = vault.stats()["files"]
        print(f"  round {i}: (a) bare walk {walk_s:6.2f} s | (b) build {times['total']:6.2f} s "
              f"(open {times['open']:.2f}, sync {times['sync']:.2f}, save {times['save']:.2f}; "
              f"{kept} files kept) | (c) steady sync {steadies[-1]:6.2f} s, collect "
              f"{collects[-1]:.2f} s ({removed} removed), save {saves[-1]:.2f} s", flush=True)
    res["pass"] = {"walks": walks, "builds": builds, "steadies": steadies,
                   "collects": collects, "saves": saves, "phases": phases,
                   "walk_files": walk_files, "walk_dirs": walk_dirs, "kept": kept}

    # -- 2. disk space of the hard-link vault ----------------------------------------------
    bench.close_vault(vault)  # as the daemon leaves it: index saved, lock released
    os.sync()  # so delayed allocation has placed every block that st_blocks reports
    res["disk"] = vault_extra(vault_root)
    res["store_after"] = store_allocated(bench.pristine)

    # -- 3. copy mode ----------------------------------------------------------------------
    res["copy"] = None
    if not SHM.is_dir():
        res["copy_skipped"] = f"{SHM} does not exist"
    elif same_device(SHM, bench.pristine.parent):
        res["copy_skipped"] = (f"{SHM} is on the store's device ({bench.pristine.parent}), "
                               "so hard links would work there")
    elif shutil.disk_usage(SHM).free < 2 * size["total"] + 512 * 2**20:
        res["copy_skipped"] = (f"{SHM} has {mib(shutil.disk_usage(SHM).free)} free, less than "
                               "twice the store's size plus 512 MiB")
    else:
        shm = bench.shm_dir("guard-bench-vault-copy-")
        copy_vault, times = build_vault(shm / "vault", bench.pristine)
        bench.open_vaults.append(copy_vault)
        mode = copy_vault.mode
        t0 = time.perf_counter()
        copy_vault.sync(())
        steady = time.perf_counter() - t0
        too_large = copy_vault.too_large
        bench.close_vault(copy_vault)
        used = store_allocated(shm / "vault")
        res["copy"] = {"mode": mode, "times": times, "steady": steady, "size": used,
                       "too_large": too_large, "where": shm}
        shutil.rmtree(shm, ignore_errors=True)
        print(f"  copy mode in {shm}: mode {mode}, build {times['total']:.2f} s, steady sync "
              f"{steady:.2f} s, {mib(used['total'])} allocated", flush=True)
        if mode != COPY:
            raise BenchError(f"the vault in {shm} picked mode {mode}, expected {COPY}")
    shutil.rmtree(vault_root)  # the store's files have one link again

    # -- 4. idle daemons, vault on vs off --------------------------------------------------
    need = 2 * size["total"] + 2 * size["total"] // 100 + 1024 * 2**20
    room = shutil.disk_usage(SHM).free if SHM.is_dir() else 0
    if room >= need and psutil.virtual_memory().available >= need + 2 * 2**30:
        base = bench.shm_dir("guard-bench-vault-daemons-")
        res["daemon_where"] = f"{base} (tmpfs)"
    else:
        base = bench.data / "daemons"
        base.mkdir()
        res["daemon_where"] = (f"{base} ({SHM} has {mib(room)} free, needs {mib(need)})"
                               if SHM.is_dir() else f"{base} (no {SHM})")
    t0 = time.perf_counter()
    for name in ("on", "off"):
        shutil.copytree(bench.pristine, base / name / "mlruns", symlinks=True)
    copy_s = time.perf_counter() - t0
    os.sync()
    print(f"  daemon stores copied to {res['daemon_where']} in {copy_s:.1f} s", flush=True)
    on = Daemon(bench, "vault-on", base / "on" / "mlruns", base / "on" / "state", True)
    off = Daemon(bench, "vault-off", base / "off" / "mlruns", base / "off" / "state", False)
    bench.daemons += [on, off]
    on.start()
    off.start()
    wait_all_ready([on, off], bench.timeout)
    for d in (on, off):
        d.pid()
    time.sleep(SETTLE)
    res["status"] = {d.name: d.status() for d in (on, off)}
    vs = res["status"]["vault-on"].get("vault") or {}
    print(f"  daemons ready: vault-on pid {on.proc.pid} after {on.ready_s:.1f} s (vault mode "
          f"{vs.get('mode')}, at {vs.get('path')}), vault-off pid {off.proc.pid} after "
          f"{off.ready_s:.1f} s; sampling {args.idle:g} s idle", flush=True)
    if vs.get("mode") != LINK:
        print(f"warning: the vault-on daemon's vault is in mode {vs.get('mode')}, not {LINK}",
              file=sys.stderr)
    res["idle"] = idle_sample([on, off], args.idle)
    res["status_after"] = {d.name: d.status() for d in (on, off)}
    res["vault_disk_daemon"] = vault_extra(Path(vs["path"])) if vs.get("path") else None
    for d in (on, off):
        d.stop()
    print("  daemons stopped", flush=True)
    return res


def report(args: argparse.Namespace, res: dict) -> None:
    p = res["pass"]
    walk, build, steady = median(p["walks"]), median(p["builds"]), median(p["steadies"])
    collect, save = median(p["collects"]), median(p["saves"])
    files = p["walk_files"]
    sync_med = median([t["sync"] for t in p["phases"]])
    rounds = len(p["walks"])
    print()
    print(f"vault build vs bare walk, {args.runs} runs, {files} files in {p['walk_dirs']} "
          f"folders (median of {rounds}; warm page cache):")
    print(f"  (a) bare os.walk + os.stat       {walk:7.2f} s  {files / walk:8.0f} files/s  "
          f"[{fmt(p['walks'])}]")
    print(f"  (b) build: open+sync(())+save    {build:7.2f} s  {files / build:8.0f} files/s  "
          f"[{fmt(p['builds'])}]")
    print(f"        of which open {median([t['open'] for t in p['phases']]):.2f} s, sync "
          f"{sync_med:.2f} s, save(force) {median([t['save'] for t in p['phases']]):.2f} s; "
          f"{p['kept']} files kept")
    print(f"  (c) steady sync(()) pass         {steady:7.2f} s  {files / steady:8.0f} files/s  "
          f"[{fmt(p['steadies'])}]")
    print(f"        the daemon's full pass adds collect() {collect:.2f} s [{fmt(p['collects'])}]"
          f" and save() (only when changed; forced: {save:.2f} s)")
    print(f"  ratio (b)/(a) {build / walk:5.2f}   ratio (c)/(a) {steady / walk:5.2f}")
    print(f"  daemon full pass (c) + collect (only after a replace or forget) every "
          f"{SCAN_INTERVAL:g} s (vault.scan_interval), at most: "
          f"{100 * (steady + collect) / SCAN_INTERVAL:.2f} % of a core on average")

    d, s = res["disk"], res["store_after"]
    pct = 100 * d["total"] / s["total"]
    print("extra disk space of the hard-link vault (allocated bytes, st_blocks * 512):")
    print(f"  store            {s['total']:>13,} B  {mib(s['total']):>10}  ({s['files']} files, "
          f"{s['dirs']} folders)")
    print(f"  vault, extra     {d['total']:>13,} B  {mib(d['total']):>10}  = {pct:.3f} % of the "
          "store   (goal: under 1 %)")
    print(f"    folders        {d['dir_bytes']:>13,} B  ({d['dirs']} folders: root, objects/, "
          f"{d['buckets']} buckets; largest bucket {d['largest_bucket']} entries)")
    print(f"    index.json.gz  {d['index_bytes']:>13,} B  ({d['index_apparent']:,} B apparent)")
    other = d["own_bytes"] - d["index_bytes"]
    other_files = d["own_files"] - (1 if d["index_apparent"] else 0)
    print(f"    other files    {other:>13,} B  ({other_files}"
          " other single-link files: vault.lock)")
    print(f"    hard links     {0:>13,} B  ({d['linked']} objects sharing the store's blocks)")
    print(f"  per store file   {d['total'] / s['files']:.1f} B allocated (index alone "
          f"{d['index_apparent'] / s['files']:.1f} B)")

    c = res["copy"]
    if c is None:
        print(f"copy mode: skipped: {res['copy_skipped']}")
    else:
        cs = c["size"]
        print(f"copy mode (vault in {SHM}, tmpfs, store on another device): mode {c['mode']}")
        print(f"  build {c['times']['total']:.2f} s "
              f"(ratio to bare walk {c['times']['total'] / walk:.2f}; "
              f"open {c['times']['open']:.2f}, sync {c['times']['sync']:.2f}, save "
              f"{c['times']['save']:.2f}), steady sync {c['steady']:.2f} s (ratio "
              f"{c['steady'] / walk:.2f})")
        print(f"  size {cs['total']:,} B = {mib(cs['total'])} allocated as tmpfs reports it "
              f"({cs['files']} files, {mib(cs['apparent'])} apparent) = "
              f"{100 * cs['total'] / s['total']:.1f} % of the store; {c['too_large']} artifacts "
              f"above copy_max_bytes")

    idle = res["idle"]
    on, off = idle["vault-on"], idle["vault-off"]
    print(f"daemon idle, {on['wall']:.0f} s, same window, daemon process only (not the MLflow "
          f"server tree); stores in {res['daemon_where']}:")
    for name, v in (("vault-on ", on), ("vault-off", off)):
        st = res["status_after"][name.strip()]
        port = st.get("portability") or {}
        print(f"  {name}  pid {v['pid']:>7}  CPU {v['cpu_pct']:5.2f} % of one core "
              f"({v['cpu_s']:.2f} s)  RSS max {v['rss_max'] / 1e6:6.1f} MB, last "
              f"{v['rss_last'] / 1e6:6.1f} MB  ({v['threads']} threads; watch mode "
              f"{port.get('watch_mode')})")
    ratio_cpu = on["cpu_s"] / off["cpu_s"] if off["cpu_s"] > 0 else float("inf")
    print(f"  ratio on/off: CPU {ratio_cpu:.2f}, RSS max {on['rss_max'] / off['rss_max']:.2f} "
          f"(+{(on['rss_max'] - off['rss_max']) / 1e6:.1f} MB; MB = 10^6 bytes)")
    vs = res["status_after"]["vault-on"].get("vault") or {}
    print(f"  vault-on status: mode {vs.get('mode')}, ready {vs.get('ready')}, pending "
          f"{vs.get('pending')}, restored {vs.get('restored')}, alerts {vs.get('alerts')}, error "
          f"{vs.get('error')!r}")
    vd = res.get("vault_disk_daemon")
    if vd:
        tmpfs = " (tmpfs reports 0 blocks for folders)" if "tmpfs" in res["daemon_where"] else ""
        print(f"  its vault: {vd['linked']} hard links, extra {mib(vd['total'])}{tmpfs} (index "
              f"{vd['index_bytes']:,} B)")

    print()
    print("summary")
    print(f"  store: {args.runs} runs, {files} files, {mib(s['total'])} allocated")
    print(f"  vault build {build:.2f} s vs bare walk {walk:.2f} s: ratio {build / walk:.2f}; "
          f"steady pass {steady:.2f} s: ratio {steady / walk:.2f}")
    print(f"  vault extra disk {mib(d['total'])} = {pct:.3f} % of the store "
          f"({d['total'] / s['files']:.1f} B per file; index.json.gz {d['index_bytes']:,} B)")
    if c is not None:
        print(f"  copy mode: build {c['times']['total']:.2f} s, {mib(c['size']['total'])} "
              f"({100 * c['size']['total'] / s['total']:.1f} % of the store)")
    else:
        print(f"  copy mode: skipped ({res['copy_skipped']})")
    print(f"  idle daemon: vault on {on['cpu_pct']:.2f} % CPU, {on['rss_max'] / 1e6:.1f} MB RSS; "
          f"off {off['cpu_pct']:.2f} % CPU, {off['rss_max'] / 1e6:.1f} MB RSS; ratio on/off "
          f"CPU {ratio_cpu:.2f}, RSS {on['rss_max'] / off['rss_max']:.2f}")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"  load average at the end: {load} ({os.cpu_count()} CPUs; other processes on the "
          "machine are not controlled)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10000,
                        help="runs in the generated store (default 10000)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of bare walk / build / steady pass (default 3)")
    parser.add_argument("--idle", type=float, default=30.0,
                        help="seconds of idle sampling of both daemons (default 30)")
    parser.add_argument("--tmp", metavar="DIR", default=None,
                        help="folder for the store, vaults, configs and logs (default: the "
                             "system temp folder)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="bound on the daemons' readiness wait, seconds (default 300)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temp store, daemon folders, configs and logs")
    args = parser.parse_args(argv)
    if args.runs < EXPERIMENTS:
        parser.error(f"--runs must be at least {EXPERIMENTS}")
    if args.rounds < 1 or args.idle <= 0:
        parser.error("--rounds must be at least 1, --idle above 0")

    try:
        bench = Bench(args.timeout, args.tmp)
    except (BenchError, OSError) as exc:
        print(f"bench_vault: {exc}", file=sys.stderr)
        return 1
    failed = False
    res: dict = {}
    try:
        print(f"store and vaults: {bench.data}  (configs/logs: {bench.root})")
        print(f"python: {sys.executable}; {os.cpu_count()} CPUs, load average "
              f"{', '.join(f'{x:.2f}' for x in os.getloadavg())} at start")
        print("page cache: WARM for every figure (store just generated or copied, fits in RAM; "
              "caches never dropped)", flush=True)
        res = run_bench(bench, args)
    except BenchError as exc:
        failed = True
        print(f"bench_vault: {exc}", file=sys.stderr)
    except OSError as exc:  # e.g. the disk filled up
        failed = True
        print(f"bench_vault: {type(exc).__name__}: {str(exc)[:500]}", file=sys.stderr)
    except KeyboardInterrupt:
        failed = True
        print("bench_vault: interrupted", file=sys.stderr)
    finally:
        bench.stop_all()
        if failed:
            try:
                bench.keep_logs()
            except OSError:
                pass
            print(f"bench_vault: configs and daemon logs kept in {bench.root}", file=sys.stderr)
        if not args.keep:
            bench.cleanup(keep_logs=failed)
        else:
            print(f"kept: {bench.data}, {bench.root}"
                  + "".join(f", {p}" for p in bench.shm_dirs))
    if failed:
        return 1
    report(args, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
