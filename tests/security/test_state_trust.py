"""The state folder is the daemon's alone (issue 13, attack 6): under umask 000 it stays
private, another local user cannot stop the daemon through control.json, a planted control.json
is refused, and a forged pids.json cannot make the guard end a process that is not its server.

Real daemons, a real second user (useradd + setpriv, as tests/faults/test_disk.py; CI runs as
root) and real processes the test starts and ends itself, by pid.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers.daemons import Guard, free_port, wait_for
from tests.helpers.users import as_user, throwaway_user

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(sys.platform == "win32", reason="POSIX owners and modes")]

USER = "mlflow-guard-intruder"
CONFIG = "server:\n  health_interval: 1\n"


@pytest.fixture(scope="module")
def intruder():
    with throwaway_user(USER) as user:
        yield user


class Umask0Guard(Guard):
    """A daemon started under umask 000 that makes its state folder itself."""

    def start(self) -> Umask0Guard:
        out = open(self.state_dir.parent / f"guard-run-{self.state_dir.name}.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "guard.cli", "run", "--store", str(self.store), *self.opts],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **self.env},
            preexec_fn=lambda: os.umask(0))
        out.close()
        return self


@pytest.fixture
def guard0(new_store, tmp_path):
    config = tmp_path / "guard.yaml"
    config.write_text(CONFIG)
    guard = Umask0Guard(new_store, tmp_path / "state", free_port(), config=config)
    yield guard
    guard.teardown()


def guard_log(guard: Guard) -> str:
    path = guard.state_dir / "logs" / "guard.log"
    return path.read_text(errors="replace") if path.exists() else ""


def loose_entries(root: Path, skip: str = "vault/") -> list[str]:
    """Every entry under `root` with a group or other bit, but what is under `skip`: the vault
    folder itself is checked, its content is the vault's (objects are hard links to store
    files, whose mode is the store's; vault.py writes its index and lock itself)."""
    out = []
    for path in [root, *root.rglob("*")]:
        rel = path.relative_to(root).as_posix()
        if skip and rel.startswith(skip):
            continue
        mode = stat.S_IMODE(os.lstat(path).st_mode)
        if mode & 0o077 and not path.is_symlink():
            out.append(f"{rel or '.'} {mode:04o}")
    return out


def test_under_umask_000_the_state_folder_has_no_group_or_other_bits(guard0):
    guard0.start().wait_healthy()
    guard0.ctl("restart", "--no-wait")  # a request, a log line, more files
    wait_for(lambda: "request: restart" in guard_log(guard0), 30, what="the restart request")
    guard0.wait_healthy()
    assert loose_entries(guard0.state_dir) == []


def test_a_loose_state_folder_of_the_daemon_user_is_tightened_and_logged(new_store, make_guard,
                                                                         tmp_path):
    state = tmp_path / "loose-state"
    (state / "logs").mkdir(parents=True)
    os.chmod(state, 0o777)
    os.chmod(state / "logs", 0o777)
    (state / "pids.json").write_text('{"server": []}')
    os.chmod(state / "pids.json", 0o666)
    guard = make_guard(new_store, state_dir=state).start()
    guard.wait_healthy()
    assert loose_entries(state) == []
    text = guard_log(guard)
    assert "was open to other users (mode 0777); made it 0700" in text
    assert "pids.json" in text


def test_a_state_folder_of_another_user_is_refused_with_the_fix(new_store, intruder, make_guard,
                                                               tmp_path):
    state = tmp_path / "theirs"
    state.mkdir(mode=0o700)
    os.chown(state, intruder.pw_uid, intruder.pw_gid)
    guard = make_guard(new_store, state_dir=state).start()
    try:
        code = guard.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        code = None  # it runs in a folder another user controls (teardown stops it)
    assert code == 2
    out = guard.output()  # the user's name, or only its uid once another worker removed it
    assert f"uid {intruder.pw_uid})" in out and "belongs to" in out and "chown" in out
    assert list(state.iterdir()) == []  # nothing written into it


def test_another_user_cannot_stop_the_daemon_through_control_json(guard0, intruder):
    guard0.start().wait_healthy()
    control = guard0.state_dir / "control.json"
    attack = subprocess.run(
        [*as_user(intruder), sys.executable, "-c",
         "import json, sys; open(sys.argv[1], 'w').write(json.dumps({'command': 'stop'}))",
         str(control)], capture_output=True, text=True, timeout=30)
    assert attack.returncode != 0 and "Permission denied" in attack.stderr
    time.sleep(3)  # the daemon reads requests about once a second
    assert guard0.proc.poll() is None
    assert guard0.status().get("phase") == "running"


@pytest.mark.parametrize("plant", ["group-writable", "owned by another user", "a symlink"])
def test_a_planted_control_json_is_refused_and_the_daemon_keeps_running(guard0, intruder,
                                                                        plant, tmp_path):
    guard0.start().wait_healthy()
    control = guard0.state_dir / "control.json"
    request = json.dumps({"command": "stop", "id": "x", "at": time.time()})
    if plant == "a symlink":
        target = tmp_path / "elsewhere.json"
        target.write_text(request)
        os.chmod(target, 0o600)
        control.symlink_to(target)
    else:
        tmp = guard0.state_dir / "planted"
        tmp.write_text(request)
        if plant == "group-writable":
            os.chmod(tmp, 0o666)
        else:
            os.chmod(tmp, 0o644)
            os.chown(tmp, intruder.pw_uid, intruder.pw_gid)
        os.replace(tmp, control)
    wait_for(lambda: "refusing" in guard_log(guard0), 20, what="the refusal in the log")
    time.sleep(2)
    assert guard0.proc.poll() is None and guard0.status().get("phase") == "running"
    assert not control.exists() and not control.is_symlink()  # removed unread
    line = [x for x in guard_log(guard0).splitlines() if "refusing" in x][0]
    assert {"group-writable": "writable by group or others",
            "owned by another user": f"owned by uid {intruder.pw_uid}",
            "a symlink": "symlink"}[plant] in line
    assert guard0.ctl("stop").returncode == 0  # the daemon's own user still may
    guard0.proc.wait(timeout=60)


def test_a_forged_pids_json_does_not_end_an_unrelated_process(new_store, make_guard, tmp_path):
    """pids.json names a web server the test started (its real pid and start time): the daemon
    starts, does not end it, and says why in its log."""
    web_port = free_port()
    web = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                            str(web_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: any(c.laddr.port == web_port
                             for c in psutil.Process(web.pid).net_connections()),
                 30, what="the web server to listen")
        state = tmp_path / "state"
        state.mkdir(mode=0o700)
        forged = {"daemon": {"pid": 1, "create_time": psutil.Process(1).create_time()},
                  "server": [{"pid": web.pid,
                              "create_time": psutil.Process(web.pid).create_time()}]}
        fd = os.open(state / "pids.json", os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, json.dumps(forged).encode())
        os.close(fd)
        guard = make_guard(new_store, state_dir=state).start()
        guard.wait_healthy()
        time.sleep(1)
        assert web.poll() is None, "the guard ended a process that is not its server"
        log = guard_log(guard)
        assert f"not ending pid {web.pid}" in log and "no MLflow server" in log
    finally:
        if web.poll() is None:
            web.kill()
        web.wait(timeout=10)
