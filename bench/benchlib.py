"""Helpers shared by the benchmarks: ports, status files, bounded waits, ending what we started."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from guard.supervision.processes import end_tree as end_refs
from guard.supervision.processes import ref_of

HOST = "127.0.0.1"


class BenchError(Exception):
    pass


def health_ok(port: int) -> bool:
    """Whether the server on `port` answers /health with OK right now."""
    import http.client

    conn = http.client.HTTPConnection(HOST, port, timeout=1.0)
    try:
        conn.request("GET", "/health")
        resp = conn.getresponse()
        return resp.status == 200 and resp.read(64).strip() == b"OK"
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def find_guardctl() -> str:
    """The guardctl of the interpreter running the benchmark (so both test one install)."""
    bindir = Path(sys.executable).parent
    guardctl = bindir / ("guardctl.exe" if os.name == "nt" else "guardctl")
    found = str(guardctl) if guardctl.exists() else shutil.which("guardctl")
    if not found:
        raise BenchError("guardctl not found next to this interpreter or on PATH; "
                         "run with the project's venv python")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def read_status(state_dir: Path) -> dict:
    try:
        with open(state_dir / "status.json", encoding="utf-8") as fh:
            doc = json.load(fh)
        return doc if isinstance(doc, dict) else {}
    except (OSError, ValueError):
        return {}


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no output)"
    return "\n".join("    " + line for line in text[-lines:]) or "    (empty)"


def wait_until(cond, timeout: float, what: str, proc: subprocess.Popen | None = None,
               log: Path | None = None, interval: float = 0.05) -> None:
    """Poll `cond` every `interval` seconds; fail after `timeout` or if `proc` exits meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        started = time.monotonic()
        if cond():
            return
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"{what}: process {proc.pid} exited with code {proc.returncode}"
                             + (f"; last output of {log}:\n{tail(log)}" if log else ""))
        if started > deadline:
            raise BenchError(f"{what}: not reached within {timeout:g} s"
                             + (f"; last output of {log}:\n{tail(log)}" if log else ""))
        time.sleep(max(0.0, interval - (time.monotonic() - started)))


def end_tree(proc: psutil.Process, grace: float = 10.0) -> None:
    """Terminate a process we started and all its descendants; kill what survives."""
    ref = ref_of(proc)
    if ref is not None:
        end_refs([ref], grace)


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def end_started(proc: subprocess.Popen, wait: float = 10.0) -> None:
    """End a process this benchmark started, with its tree, and reap it."""
    try:
        end_tree(psutil.Process(proc.pid))
    except psutil.NoSuchProcess:
        pass
    try:
        proc.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        print(f"warning: pid {proc.pid} did not end", file=sys.stderr)


def stop_daemon(stop_cmd: list[str], env: dict, proc: subprocess.Popen,
                tree: dict[int, psutil.Process], timeout: float, name: str = "guard") -> None:
    """Stop a daemon this benchmark started: `guardctl stop`, then by pid if it lingers, then
    anything of its recorded tree that outlived it."""
    tree.update((p.pid, p) for p in descendants(proc.pid))
    try:
        res = subprocess.run(stop_cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if res.returncode != 0:
            print(f"warning: guardctl stop ({name}) exited {res.returncode}: "
                  f"{res.stderr.strip()}", file=sys.stderr)
    except subprocess.TimeoutExpired:
        print(f"warning: guardctl stop ({name}) timed out", file=sys.stderr)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        print(f"warning: daemon pid {proc.pid} still running after stop; ending it",
              file=sys.stderr)
        end_started(proc)
    for p in tree.values():  # safety net: what the daemon started must be gone now
        try:
            if not p.is_running() or p.status() == psutil.STATUS_ZOMBIE:
                continue
        except psutil.NoSuchProcess:
            continue
        print(f"warning: pid {p.pid} from the {name} daemon outlived `guardctl stop`; ending it",
              file=sys.stderr)
        end_tree(p)


def bare_server_seconds(python: str, store: Path, env: dict, root: Path, log_name: str,
                        timeout: float, poll: float = 0.05) -> float:
    """Launch -> /health OK of a bare `mlflow server` over `store`, with the arguments the
    guard gives its own (the baseline of the startup benchmarks); ended by pid afterwards."""
    port = free_port()
    uri = Path(os.path.abspath(store)).as_uri()  # as the guard builds it
    cmd = [python, "-m", "mlflow", "server", "--backend-store-uri", uri,
           "--artifacts-destination", uri, "--default-artifact-root", "mlflow-artifacts:/",
           "--host", HOST, "--port", str(port), "--workers", "1"]
    log = root / log_name
    proc = None
    with open(log, "wb") as out:
        try:
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, cwd=str(root),
                                    start_new_session=True)
            wait_until(lambda: health_ok(port), timeout,
                       f"bare mlflow server (port {port}) health OK", proc, log, poll)
            return time.perf_counter() - t0
        finally:
            if proc is not None:
                end_started(proc)
