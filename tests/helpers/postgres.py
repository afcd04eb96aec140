"""A throwaway PostgreSQL server (Debian's `postgresql` package) for the tests of
`guardctl migrate --to postgresql://...` and of a guard serving from PostgreSQL: the
`postgres_server` and `postgres_url` fixtures in tests/conftest.py.

The server gets a fresh data folder under /tmp, listens only on 127.0.0.1 on a free port (its
unix socket stays in that folder), trusts loopback connections and trades durability for speed
(fsync off). PostgreSQL refuses to run as root: as root, initdb and the server run as `nobody`
(setpriv exec's, so the pid we started is the server's). The server is ended by that pid and
its recorded children, never by name (the machine is shared), and its folder removed.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psutil

from guard.supervision.processes import ProcRef, end_tree, ref_of
from tests.helpers.daemons import free_port

INSTALL = "apt-get install postgresql"
SUPERUSER = "postgres"
START_TIMEOUT = 30.0
STOP_GRACE = 10.0
# Speed over durability: a test's data lives as long as the test session.
SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "jit": "off",
    "autovacuum": "off",
    "max_connections": "100",
    "shared_buffers": "32MB",
    "logging_collector": "off",
    "log_min_messages": "warning",
}


def bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb and postgres, if any."""
    found = []
    for initdb in glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        folder = Path(initdb).parent
        version = folder.parent.name
        if (folder / "postgres").exists() and re.fullmatch(r"\d+(\.\d+)*", version):
            found.append((tuple(int(n) for n in version.split(".")), folder))
    return max(found)[1] if found else None


def require() -> Path:
    """The binaries' folder. Missing: skip the test; in CI (CI=true, whose .ci/run installs
    Debian's postgresql) fail instead."""
    import pytest

    folder = bin_dir()
    if folder is None:
        why = f"PostgreSQL is not installed: no /usr/lib/postgresql/*/bin/initdb ({INSTALL})"
        if os.environ.get("CI") == "true":
            pytest.fail(why + "; .ci/run installs Debian's package")
        pytest.skip(why)
    return folder


def _run_as() -> tuple[list[str], pwd.struct_passwd | None]:
    """A command prefix for initdb and the server (setpriv exec's: the pid stays the one we
    started): as `nobody` when we are root (PostgreSQL refuses root). The server gets SIGINT
    (fast shutdown) if the test process dies without stopping it, so none outlives a killed
    run."""
    prefix = ["setpriv", "--pdeathsig=INT"]
    if os.geteuid() != 0:
        return prefix, None
    user = pwd.getpwnam("nobody")
    return [*prefix, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
            "--clear-groups"], user


class PostgresServer:
    """One PostgreSQL server of this test session; `stop()` ends it by pid and removes its
    folder."""

    def __init__(self, bin_folder: Path | None = None, timeout: float = START_TIMEOUT) -> None:
        self.bin = bin_folder or require()
        self.timeout = timeout
        self.user = SUPERUSER
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self._refs: list[ProcRef] = []
        # Under a 0755 folder (/tmp) and itself 0755: `nobody` must reach it.
        self.root = Path(tempfile.mkdtemp(prefix="pg-test-", dir="/tmp"))
        os.chmod(self.root, 0o755)
        self.data = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.log = self.root / "server.log"
        self.startup_seconds = 0.0

    # ---- start -----------------------------------------------------------------------------
    def start(self) -> PostgresServer:
        t0 = time.monotonic()
        try:
            self._initdb()
            for attempt in range(3):  # another process may take the free port before we bind
                self.port = free_port()
                self._spawn()
                if self._wait_ready(retry_bind=attempt < 2):
                    break
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def _initdb(self) -> None:
        prefix, user = _run_as()
        self.socket_dir.mkdir()
        if user is not None:
            for path in (self.root, self.socket_dir):
                os.chown(path, user.pw_uid, user.pw_gid)
        done = subprocess.run(
            [*prefix, str(self.bin / "initdb"), "-D", str(self.data), "-U", self.user,
             "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"],
            capture_output=True, text=True, cwd=self.root, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}")

    def _spawn(self) -> None:
        prefix, _ = _run_as()
        settings = {**SETTINGS, "listen_addresses": "127.0.0.1", "port": str(self.port),
                    "unix_socket_directories": str(self.socket_dir)}
        args = [arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([*prefix, str(self.bin / "postgres"), "-D",
                                          str(self.data), *args],
                                         stdout=log, stderr=subprocess.STDOUT, cwd=self.root,
                                         start_new_session=True)
        try:
            ref = ref_of(psutil.Process(self.proc.pid))
        except psutil.NoSuchProcess:
            ref = None
        if ref is not None:
            self._refs.append(ref)

    def _wait_ready(self, retry_bind: bool) -> bool:
        """True once the server accepts connections; False when it could not bind its port
        and `retry_bind`; otherwise an error with the log's tail."""
        import psycopg2

        assert self.proc is not None
        deadline = time.monotonic() + self.timeout
        error = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_tail()
                if retry_bind and "could not bind" in tail:
                    self.proc = None
                    return False
                raise RuntimeError(f"PostgreSQL exited with {self.proc.returncode} while "
                                   f"starting on port {self.port}; its log:\n{tail}")
            try:
                psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user,
                                 dbname="postgres", connect_timeout=2).close()
                self._remember_children()
                return True
            except psycopg2.OperationalError as exc:
                error = str(exc).strip()
            time.sleep(0.05)
        raise RuntimeError(f"PostgreSQL did not accept connections on 127.0.0.1:{self.port} "
                           f"within {self.timeout:.0f}s (last error: {error}); its log:\n"
                           f"{self.log_tail()}")

    def _remember_children(self) -> None:
        assert self.proc is not None
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return
        for child in children:
            try:
                ref = ref_of(child)
            except psutil.NoSuchProcess:
                continue
            if ref is not None and ref not in self._refs:
                self._refs.append(ref)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # ---- use -------------------------------------------------------------------------------
    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def _admin(self):
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user,
                                dbname="postgres", connect_timeout=10)
        conn.autocommit = True
        return conn

    def create_database(self, name: str | None = None) -> str:
        """A new empty database (a copy of template1); returns its name."""
        from psycopg2 import sql

        name = name or f"test_{uuid.uuid4().hex[:12]}"
        conn = self._admin()
        try:
            with conn.cursor() as cur:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        finally:
            conn.close()
        return name

    def drop_database(self, name: str) -> None:
        """Drop it, ending its sessions first (a test may leave a pooled connection open)."""
        from psycopg2 import sql

        conn = self._admin()
        try:
            with conn.cursor() as cur:
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                            .format(sql.Identifier(name)))
        finally:
            conn.close()

    # ---- stop ------------------------------------------------------------------------------
    def stop(self, grace: float = STOP_GRACE) -> None:
        """End the server this object started, by pid: SIGINT to the postmaster (PostgreSQL's
        fast shutdown, which ends open sessions; SIGTERM's smart shutdown would wait for the
        clients), then after `grace` SIGTERM/SIGKILL to it and to the children recorded at
        start. Then remove the folder."""
        if self.proc is not None:
            self._remember_children()
            if self.proc.poll() is None:
                try:
                    os.kill(self.proc.pid, signal.SIGINT)
                    self.proc.wait(timeout=grace)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    pass
            left = end_tree(self._refs, 5)
            if self.proc.poll() is None:
                self.proc.wait(timeout=10)
            if left:
                raise RuntimeError(f"PostgreSQL processes outlived SIGKILL: {left}")
            self.proc = None
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
