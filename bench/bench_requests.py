"""Benchmark: what the guard inside MLflow's server (guard/app.py) costs on the hot paths.

Two servers run side by side, each over its own fresh store made by `guardctl init`:
- bare:  `mlflow server` with the arguments the guard uses, without `--app-name guard`;
- guard: exactly the command and environment the daemon starts (guard.server.server_command
  and server_env, so `--app-name guard` and the lock settings are in).
Both get one worker, loopback, fresh free ports. In each round, interleaved (bare first on odd
rounds, guard first on even ones), a real MlflowClient measures against each server:
1. log_batch throughput: `--batches` calls of 100 metrics each into one run (calls/s);
2. artifact upload of one `--mb` MB file through the artifact proxy (MB/s);
3. artifact download of that file (MB/s).
The stores live in memory (/dev/shm) where there is one, and each upload starts after
os.sync(), so the disk's writeback does not decide the figures (`--dir` to choose).
In MLflow 3.x artifact transfers are served by MLflow's own ASGI routes, which the guard's
Flask hooks never see; these two figures show that, and the noise of the machine.
Prints the median of each and the ratio guard/bare (goal: within 5%, i.e. >= 0.95).
Figures only: no pass/fail.

Run (from the repository root, with the project's venv):

    python bench/bench_requests.py [--rounds 5] [--batches 300] [--mb 64]

Only processes this script started are ended (by pid, with their trees).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import HOST, BenchError, end_started, fmt, free_port, wait_until

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from guard.core.config import load_config  # noqa: E402
from guard.core.store import init_store  # noqa: E402
from guard.supervision.server import probe_health, server_command, server_env  # noqa: E402


class Server:
    def __init__(self, name: str, root: Path, bare: bool) -> None:
        self.name, self.port = name, free_port()
        self.store, state = root / f"{name}-mlruns", root / f"{name}-state"
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
        init_store(self.store)
        empty = root / "empty.yaml"
        empty.write_text("# built-in defaults\n")
        cfg = load_config(str(empty), {"store": str(self.store), "state_dir": str(state),
                                       "server.port": self.port}, env={})
        self.cmd = server_command(cfg)
        self.env = server_env(cfg)
        if bare:
            i = self.cmd.index("--app-name")
            del self.cmd[i:i + 2]
            self.env = {k: v for k, v in self.env.items() if not k.startswith("MLFLOW_GUARD")}
        self.url = f"http://{HOST}:{self.port}"
        self.log = root / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float) -> None:
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_until(lambda: probe_health(self.url, 1.0)[0], timeout,
                   f"{self.name} server health", self.proc, self.log)

    def stop(self) -> None:
        if self.proc is not None:
            end_started(self.proc)


def log_batch_rate(url: str, batches: int) -> float:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(url)
    run = client.create_run("0")
    now = int(time.time() * 1000)
    t0 = time.perf_counter()
    for b in range(batches):
        metrics = [Metric(f"m{k}", float(b * k), now + b, b) for k in range(100)]
        client.log_batch(run.info.run_id, metrics=metrics)
    return batches / (time.perf_counter() - t0)


def artifact_rates(url: str, payload: Path, scratch: Path) -> tuple[float, float]:
    from mlflow import MlflowClient

    client = MlflowClient(url)
    run = client.create_run("0")
    size_mb = payload.stat().st_size / 2**20
    os.sync()  # start from a quiet disk: the previous upload's writeback is not ours to pay
    t0 = time.perf_counter()
    client.log_artifact(run.info.run_id, str(payload))
    up = size_mb / (time.perf_counter() - t0)
    dst = Path(tempfile.mkdtemp(dir=scratch))
    t0 = time.perf_counter()
    client.download_artifacts(run.info.run_id, payload.name, str(dst))
    down = size_mb / (time.perf_counter() - t0)
    if (dst / payload.name).stat().st_size != payload.stat().st_size:
        raise BenchError("downloaded artifact differs in size from the upload")
    shutil.rmtree(dst)
    return up, down


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--mb", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--dir", help="where the stores go (default: /dev/shm when there is "
                        "one, so the disk's noise does not drown the servers' own cost)")
    parser.add_argument("--control", action="store_true",
                        help="A/A control: run both servers bare, to see the machine's noise")
    args = parser.parse_args()
    base = args.dir or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
    root = Path(tempfile.mkdtemp(prefix="guard-bench-requests-", dir=base))
    payload = root / "payload.bin"
    with open(payload, "wb") as fh:
        for _ in range(args.mb):
            fh.write(os.urandom(2**20))
    servers = {name: Server(name, root, name == "bare" or args.control)
               for name in ("bare", "guard")}
    figures: dict[str, dict[str, list[float]]] = {
        name: {"log_batch": [], "upload": [], "download": []} for name in servers}
    try:
        for server in servers.values():
            server.start(args.timeout)
        for server in servers.values():  # warm up both (imports, first requests)
            log_batch_rate(server.url, 10)
        for r in range(args.rounds):
            order = ("bare", "guard") if r % 2 == 0 else ("guard", "bare")
            for name in order:
                url = servers[name].url
                figures[name]["log_batch"].append(log_batch_rate(url, args.batches))
                up, down = artifact_rates(url, payload, root)
                figures[name]["upload"].append(up)
                figures[name]["download"].append(down)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(root, ignore_errors=True)

    print(f"rounds: {args.rounds}; log_batch: {args.batches} calls x 100 metrics; "
          f"artifact: {args.mb} MB; one worker each, loopback; stores in {root.parent}"
          + ("; CONTROL: both servers bare" if args.control else ""))
    units = {"log_batch": "calls/s", "upload": "MB/s", "download": "MB/s"}
    for what, unit in units.items():
        bare, guard = (statistics.median(figures[n][what]) for n in ("bare", "guard"))
        print(f"{what:<9} bare {bare:8.1f} {unit:<7} guard {guard:8.1f} {unit:<7} "
              f"ratio guard/bare {guard / bare:.3f}")
        print(f"          bare runs: {fmt(figures['bare'][what])}")
        print(f"          guard runs: {fmt(figures['guard'][what])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
