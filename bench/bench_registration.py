"""Benchmark: what model registration costs through the guard, alone and with a live peer.

Measures, in one run, side by side (ratios against a bare `mlflow server` measured in the same
run, on a copy of the same store):

1. No live peer: `mlflow.register_model` through a guard over a fresh store (`guardctl init`,
   no other machine has ever written a heartbeat) against a bare `mlflow server` over a copy of
   that store. Per round, for each server in turn: a new model name (the registry creates the
   registered model, then version 1) and the next version of that name. Prints the medians and
   the ratio guard/bare (goal < 1.2).
2. A live peer over real Syncthing (tests/helpers/syncthing.py: two instances on loopback, the
   folder above the store shared at two paths, a guard on each, `locks.settle` = --settle):
   the measured sync latency L (a new file written on one host until it is readable on the
   other, median of both directions), then the same registrations through hostA's guard
   against a bare server over a copy of hostA's store. Prints the added time per registration
   (guard median - bare median) and its ratio to 3*L + 1 s (goal < 1).
3. Both hosts registering one model name at once, --burst versions each, through their own
   guards, starting at the same instant: every version number, whether they are distinct and
   exactly 1..2*burst on both hosts once synced, the time each host took, and how many
   requests were refused (HTTP 503, the lock timeout; the clients do not retry them here).

Registrations are made by a child process per phase (so MLflow's client import is not timed),
each call timed around `mlflow.register_model(runs:/<run>/model, name)`; the runs they point
at are logged through each server before the copies are made. Figures only: no pass/fail.

Run (from the repository root, with the project's venv; needs `syncthing` on PATH):

    python bench/bench_registration.py [--rounds 5] [--burst 5] [--settle 15] [--skew 0.5] [--keep]

Exits non-zero with a message when a server never becomes healthy, Syncthing does not
connect or sync within the timeout, or a registration fails. Only processes this script
started are ended (by pid): the guards with `guardctl stop`, the bare servers and the Syncthing
instances by pid.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import HOST, BenchError, end_started, fmt, free_port, health_ok, wait_until

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the Syncthing lab and the daemon wrapper are the tests' own
    sys.path.insert(0, str(REPO))

from guard.core.layout import COORDINATION  # noqa: E402
from guard.core.store import init_store  # noqa: E402
from tests.helpers.daemons import Guard  # noqa: E402
from tests.helpers.syncthing import (  # noqa: E402
    SyncthingError,
    guarded_syncthing_lab,
    lab_timing,
)

# A child process: through each server given, one run that logs a small pyfunc model ("model").
SETUP_CLIENT = r'''
import json, logging, sys
import mlflow
from mlflow.pyfunc import PythonModel
logging.getLogger("mlflow").setLevel(logging.ERROR)

class Echo(PythonModel):
    def predict(self, context, model_input):
        return model_input

out = {}
for url in sys.argv[1:]:
    mlflow.set_tracking_uri(url)
    with mlflow.start_run(experiment_id="0") as run:
        mlflow.pyfunc.log_model(name="model", python_model=Echo(), pip_requirements=[])
    out[url] = run.info.run_id
print("RESULT " + json.dumps(out))
'''

# A child process: rounds of register_model, alternating over the targets; each call timed.
# argv: targets (json [[label, url, run_id], ...]), rounds, prefix, start_at (epoch), same_name
TIMER_CLIENT = r'''
import json, logging, sys, time
import mlflow
from mlflow.exceptions import MlflowException
logging.getLogger("mlflow").setLevel(logging.ERROR)
targets, rounds, prefix = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
start_at, same_name = float(sys.argv[4]), sys.argv[5] == "1"
out = {label: {"new": [], "next": [], "versions": [], "refused": 0, "errors": []}
       for label, _, _ in targets}

def register(label, url, run_id, name):
    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)
    t0 = time.perf_counter()
    try:
        mv = mlflow.register_model(f"runs:/{run_id}/model", name, await_registration_for=0)
    except MlflowException as exc:
        if "TEMPORARILY_UNAVAILABLE" in str(exc.error_code) or "503" in str(exc):
            out[label]["refused"] += 1
        else:
            out[label]["errors"].append(str(exc)[:300])
        return None
    except Exception as exc:  # a 503 after the client gave up retrying, a connection error
        if "503" in str(exc):
            out[label]["refused"] += 1
        else:
            out[label]["errors"].append(f"{type(exc).__name__}: {str(exc)[:300]}")
        return None
    out[label]["versions"].append(mv.version)
    return time.perf_counter() - t0

time.sleep(max(0.0, start_at - time.time()))
t_all = time.perf_counter()
for r in range(rounds):
    for label, url, run_id in targets:
        name = prefix if same_name else f"{prefix}-{label}-{r}"
        dt = register(label, url, run_id, name)
        if dt is not None:
            out[label]["next" if same_name else "new"].append(dt)
        if not same_name:
            dt = register(label, url, run_id, name)
            if dt is not None:
                out[label]["next"].append(dt)
for label in out:
    out[label]["total"] = time.perf_counter() - t_all
print("RESULT " + json.dumps(out))
'''


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_GUARD_CONFIG"}
    env["MLFLOW_ALLOW_FILE_STORE"] = "true"
    # A refusal (503) must show as one, not disappear into the client's retries.
    env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    return env


def run_child(script: str, args: list[str], timeout: float) -> dict:
    res = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                         timeout=timeout, env=child_env())
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
    if res.returncode != 0 or not lines:
        raise BenchError(f"client failed ({res.returncode}): {res.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def start_child(script: str, args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=child_env())


def result_of(proc: subprocess.Popen, timeout: float) -> dict:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        end_started(proc)
        raise BenchError("a registering client did not finish in time") from None
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise BenchError(f"client failed ({proc.returncode}): {err[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def guard_config(path: Path, host: str, settle: float, skew: float) -> Path:
    """What the Syncthing lab's guards run with (tests/helpers/syncthing.py), for phase 1."""
    path.write_text(f"host_id: {host}\nserver:\n  health_interval: 1\n"
                    + lab_timing(settle, skew) + "conflicts:\n  scan_interval: 1\n",
                    encoding="utf-8")
    return path


class Bare:
    """A bare `mlflow server` over `store` (as the guard starts it, without the guard app)."""

    def __init__(self, store: Path, log: Path, timeout: float) -> None:
        self.port = free_port()
        uri = store.resolve().as_uri()
        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
               "--artifacts-destination", uri, "--default-artifact-root", "mlflow-artifacts:/",
               "--host", HOST, "--port", str(self.port), "--workers", "1"]
        env = child_env()
        env.setdefault("PYTHONUNBUFFERED", "1")
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until(lambda: health_ok(self.port), timeout,
                       f"bare mlflow server (port {self.port}) health OK", self.proc, log)
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def stop(self) -> None:
        end_started(self.proc)


def copy_store(src: Path, dst: Path) -> Path:
    """A copy of the store for the bare server, without the guard's coordination folder."""
    shutil.copytree(src, dst, ignore=lambda d, names: [n for n in names
                                                       if n == COORDINATION
                                                       or n.startswith(".guard-tmp-")])
    return dst


def timed_pair(guard_url: str, bare_url: str, rounds: int, prefix: str,
               timeout: float) -> tuple[dict, dict]:
    runs = run_child(SETUP_CLIENT, [guard_url, bare_url], timeout)
    targets = [["guard", guard_url, runs[guard_url]], ["bare", bare_url, runs[bare_url]]]
    out = run_child(TIMER_CLIENT, [json.dumps(targets), str(rounds), prefix, "0", "0"],
                    timeout + rounds * 300)
    for label in ("guard", "bare"):
        if out[label]["errors"] or out[label]["refused"]:
            raise BenchError(f"{label}: registrations failed: refused {out[label]['refused']}, "
                             f"{out[label]['errors'][:3]}")
    return out["guard"], out["bare"]


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def print_pair(guard: dict, bare: dict) -> tuple[float, float]:
    """Prints new-name and next-version medians; returns (guard, bare) medians of all calls."""
    for kind, what in (("new", "new name (model + version 1)"),
                       ("next", "next version of a name   ")):
        g, b = med(guard[kind]), med(bare[kind])
        print(f"  {what}  guard {g:6.2f} s  bare {b:6.2f} s  ratio {g / b:6.2f}   "
              f"[guard {fmt(guard[kind])}] [bare {fmt(bare[kind])}]")
    g_all, b_all = med(guard["new"] + guard["next"]), med(bare["new"] + bare["next"])
    return g_all, b_all


def phase_alone(root: Path, rounds: int, settle: float, skew: float, timeout: float) -> None:
    store = root / "alone" / "mlruns"
    init_store(store)
    guard = Guard(store, root / "alone" / "state", free_port(),
                  config=guard_config(root / "alone" / "guard.yaml", "alone", settle, skew))
    bare = None
    try:
        guard.start()
        guard.wait_healthy(timeout)
        # A guard that just started is not yet known to other hosts it cannot see either, so
        # it settles fully for 2 x locks.settle after its first heartbeat (guard/sync/settle.py):
        # measured here is the steady state after that.
        announced = time.time() + 2 * settle
        bare = Bare(copy_store(store, root / "alone" / "bare-mlruns"), root / "alone-bare.log",
                    timeout)
        time.sleep(max(0.0, announced - time.time()))
        g, b = timed_pair(guard.url, bare.url, rounds, "alone", timeout)
    finally:
        if bare is not None:
            bare.stop()
        guard.teardown()
    print(f"1. no live peer: register_model, guard vs bare over a copy of the store "
          f"(median of {rounds} rounds each, interleaved):")
    g_all, b_all = print_pair(g, b)
    print(f"  all calls                  guard {g_all:6.2f} s  bare {b_all:6.2f} s  "
          f"ratio {g_all / b_all:6.2f}   (goal < 1.2)")


def phase_peer(root: Path, rounds: int, burst: int, settle: float, skew: float,
               timeout: float) -> None:
    with guarded_syncthing_lab(root / "lab", settle=settle, skew=skew) as (st, guards, stores):
        a, b = guards
        lags = st.latency(0, 1, 5) + st.latency(1, 0, 5)
        lag = med(lags)
        print(f"2. live peer over real Syncthing (locks.settle {settle:g} s, fsWatcherDelayS "
              f"{st.watch_delay}):")
        print(f"  sync latency L (new file on one host -> readable on the other): median "
              f"{lag:.2f} s, max {max(lags):.2f} s   [{fmt(lags)}]")
        st.wait_in_sync(timeout)
        bare = Bare(copy_store(stores[0], root / "peer-bare-mlruns"), root / "peer-bare.log",
                    timeout)
        try:
            g, bb = timed_pair(a.url, bare.url, rounds, "peer", timeout)
        finally:
            bare.stop()
        g_all, b_all = print_pair(g, bb)
        added = g_all - b_all
        budget = 3 * lag + 1
        print(f"  added per registration     {added:6.2f} s  vs 3*L + 1 s = {budget:.2f} s: "
              f"ratio {added / budget:6.2f}   (goal < 1)")

        # 3. Both hosts register one name at once.
        setup = [run_child(SETUP_CLIENT, [guard.url], timeout)[guard.url] for guard in guards]
        st.wait_in_sync(timeout)
        start_at = time.time() + 8  # both clients are past their imports by then
        procs = [start_child(TIMER_CLIENT, [json.dumps([[label, guard.url, run]]), str(burst),
                                            "burst", str(start_at), "1"])
                 for label, guard, run in zip(("hostA", "hostB"), guards, setup)]
        made = [result_of(proc, timeout + burst * 300) for proc in procs]
        st.wait_in_sync(timeout)
        from mlflow import MlflowClient

        seen = {}
        for label, guard in zip(("hostA", "hostB"), guards):
            found = MlflowClient(guard.url).search_model_versions("name = 'burst'")
            seen[label] = sorted(int(mv.version) for mv in found)
        numbers = sorted(int(v) for res, label in zip(made, ("hostA", "hostB"))
                         for v in res[label]["versions"])
        refused = sum(res[label]["refused"] for res, label in zip(made, ("hostA", "hostB")))
        errors = [e for res, label in zip(made, ("hostA", "hostB")) for e in res[label]["errors"]]
        want = list(range(1, 2 * burst + 1))
        print(f"3. both hosts register one name at once, {burst} each:")
        for res, label in zip(made, ("hostA", "hostB")):
            r = res[label]
            print(f"  {label}: versions {', '.join(r['versions'])}; {len(r['next'])} done in "
                  f"{r['total']:.1f} s (per call median {med(r['next']):.2f} s), "
                  f"refused {r['refused']}")
        print(f"  versions distinct and 1..{2 * burst}: "
              f"{'yes' if numbers == want else 'NO: ' + str(numbers)}; "
              f"the same on both hosts after sync: "
              f"{'yes' if seen['hostA'] == seen['hostB'] == want else 'NO: ' + str(seen)}; "
              f"refused: {refused}" + (f"; errors: {errors[:3]}" if errors else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds per phase; each registers a new name and its next version "
                             "on each server (default 5)")
    parser.add_argument("--burst", type=int, default=5,
                        help="versions each host registers at once in phase 3 (default 5)")
    parser.add_argument("--settle", type=float, default=15.0,
                        help="locks.settle of the guards: the ceiling of the measured settle "
                             "(default 15, the config's default)")
    parser.add_argument("--skew", type=float, default=0.5,
                        help="locks.skew of the guards (default 0.5: clocks kept by NTP, as "
                             "the README recommends)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="bound on every wait, seconds (default 120)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folders")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.burst < 1:
        parser.error("--rounds and --burst must be at least 1")
    if shutil.which("syncthing") is None:
        print("bench_registration: syncthing is not installed (Debian: apt-get install "
              "syncthing)", file=sys.stderr)
        return 1
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    root = Path(tempfile.mkdtemp(prefix="guard-bench-reg-"))
    print(f"temp: {root}")
    print(f"python: {sys.executable}; mlflow server --workers 1, host {HOST}; guards: "
          f"locks.settle {args.settle:g} s (ceiling), locks.skew {args.skew:g} s, heartbeats "
          "every 1 s")
    failed = False
    try:
        phase_alone(root, args.rounds, args.settle, args.skew, args.timeout)
        phase_peer(root, args.rounds, args.burst, args.settle, args.skew, args.timeout)
    except (BenchError, SyncthingError, AssertionError) as exc:
        failed = True
        print(f"bench_registration: {exc}", file=sys.stderr)
        print(f"bench_registration: logs kept in {root}", file=sys.stderr)
    except KeyboardInterrupt:
        failed = True
        print("bench_registration: interrupted", file=sys.stderr)
    finally:
        if not failed and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
