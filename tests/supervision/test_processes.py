"""The pure decisions in guard.processes: which process is an MLflow server, over which store,
and whose it is. No real processes or folders are looked at: a `Disk` table of folders and
symlinks answers the decisions' two questions (what a path resolves to, whether it is a folder).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from guard.supervision.processes import (
    MLFLOW_STORE_ENV,
    OWNER_ENV,
    Census,
    Folders,
    ProcInfo,
    ProcRef,
    classify,
    gc_aimed_at,
    may_end,
    mlflow_role,
    orphans,
    served_store,
    sort_processes,
)

PORT = 5050
LAB = Path(os.path.abspath(os.sep + "lab"))  # never created: the Disk below stands in for it


class Disk:
    """Folders and symlinks as a table, handed to the decisions as their `Folders`."""

    def __init__(self, dirs=(), links=None) -> None:
        self.dirs = {os.path.normpath(str(d)) for d in dirs}
        self.links = {os.path.normpath(str(k)): os.path.normpath(str(v))
                      for k, v in (links or {}).items()}

    def link(self, link, target) -> None:
        self.links[os.path.normpath(str(link))] = os.path.normpath(str(target))

    def resolve(self, path: str) -> str:
        path = os.path.normpath(path)
        for link, target in self.links.items():
            if path == link or path.startswith(link + os.sep):
                return target + path[len(link):]
        return path

    def is_dir(self, path: str) -> bool:
        return self.resolve(path) in self.dirs

    @property
    def folders(self) -> Folders:
        return Folders(self.resolve, self.is_dir)


NO_DISK = Disk().folders


def proc(pid: int, cmdline, *, create_time: float = 1000.0, cwd=None, env=None,
         ports=(), ppid: int = 1) -> ProcInfo:
    return ProcInfo(pid=pid, ppid=ppid, create_time=create_time, cmdline=tuple(cmdline),
                    cwd=cwd, username="alice", env=dict(env or {}), listen_ports=tuple(ports))


# --- ProcRef / ProcInfo -----------------------------------------------------------------------

def test_procref_json_round_trip():
    ref = ProcRef(123, 1700000000.25)
    data = ref.to_json()
    assert data == {"pid": 123, "create_time": 1700000000.25}
    assert ProcRef.from_json(data) == ref
    assert ProcRef.from_json({"pid": "7", "create_time": "1.5"}) == ProcRef(7, 1.5)


def test_procinfo_ref_and_command():
    p = proc(42, ["mlflow", "server", "--port", "5050"], create_time=9.5)
    assert p.ref == ProcRef(42, 9.5)
    assert p.command == "mlflow server --port 5050"


def test_procref_identity_includes_create_time():
    assert ProcRef(1, 1.0) != ProcRef(1, 2.0)
    assert ProcRef(1, 1.0) in {ProcRef(1, 1.0)}
    assert ProcRef(1, 2.0) not in {ProcRef(1, 1.0)}


# --- mlflow_role ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "cmdline, role",
    [
        (["mlflow", "server", "--backend-store-uri", "/x", "--port", "5050"], "server"),
        (["/venv/bin/mlflow", "ui"], "ui"),
        (["/venv/bin/python", "/venv/bin/mlflow", "server"], "server"),
        (["python", "-m", "mlflow", "server", "--host", "0.0.0.0"], "server"),
        (["python3", "-m", "mlflow", "ui"], "ui"),
        (["mlflow.exe", "server", "--port", "5000"], "server"),
        (["MLFLOW.EXE", "ui"], "ui"),
        (["C:/venv/Scripts/mlflow.exe", "server"], "server"),
        (["python.exe", "C:/venv/Scripts/mlflow-script.py", "server"], "server"),
        (["mlflow", "--debug", "server"], "server"),
        (["/venv/bin/python", "-m", "uvicorn", "--host", "127.0.0.1", "--port", "5050",
          "--workers", "1", "mlflow.server.fastapi_app:app"], "worker"),
        (["/venv/bin/python", "/venv/bin/gunicorn", "-b", "127.0.0.1:5050", "-w", "4",
          "mlflow.server:app"], "worker"),
        (["waitress-serve", "--listen=127.0.0.1:5050", "mlflow.server:app"], "worker"),
        (["/venv/bin/python", "-m", "uvicorn", "--port", "5050", "--workers", "1",
          "--factory", "guard.app:create_app"], "worker"),
    ],
)
def test_mlflow_role_recognises_servers_and_workers(cmdline, role):
    assert mlflow_role(tuple(cmdline)) == role


@pytest.mark.parametrize(
    "cmdline",
    [
        ["pytest", "tests/test_mlflow.py"],
        ["python", "-m", "pytest", "tests/test_mlflow.py"],
        ["mlflow", "runs", "list"],
        ["mlflow", "--version"],
        ["mlflow"],
        ["python", "train.py"],
        ["python", "-m", "mlflow_helper", "server"],
        ["/home/a/mlflow-data/run.sh", "server"],
        ["vim", "mlflow/server/__init__.py"],
        [],
    ],
)
def test_mlflow_role_ignores_everything_else(cmdline):
    assert mlflow_role(tuple(cmdline)) is None


# --- served_store -----------------------------------------------------------------------------

def test_served_store_from_file_uri_flag():
    store = LAB / "mlruns"
    p = proc(1, ["mlflow", "server", "--backend-store-uri", store.as_uri()])
    assert served_store(p, NO_DISK) == str(store)


def test_served_store_from_equals_form():
    store = LAB / "mlruns"
    p = proc(1, ["mlflow", "server", f"--backend-store-uri={store}", "--port", "5050"])
    assert served_store(p, NO_DISK) == str(store)


def test_served_store_from_legacy_file_store_flag():
    store = LAB / "mlruns"
    p = proc(1, ["mlflow", "ui", "--file-store", str(store)])
    assert served_store(p, NO_DISK) == str(store)


def test_served_store_relative_path_resolves_against_process_cwd():
    p = proc(1, ["mlflow", "server", "--backend-store-uri", "./data/mlruns"], cwd=str(LAB))
    assert served_store(p, NO_DISK) == str(LAB / "data" / "mlruns")


def test_served_store_relative_file_uri_resolves_against_process_cwd():
    # `mlflow server --backend-store-uri file:mlruns` serves <its cwd>/mlruns
    p = proc(1, ["mlflow", "server", "--backend-store-uri", "file:mlruns"], cwd=str(LAB))
    assert served_store(p, NO_DISK) == str(LAB / "mlruns")


def test_served_store_relative_path_without_cwd_is_unknown():
    p = proc(1, ["mlflow", "server", "--backend-store-uri", "mlruns"], cwd=None)
    assert served_store(p, NO_DISK) is None


def test_served_store_from_worker_env():
    store = LAB / "mlruns"
    p = proc(2, ["python", "-m", "uvicorn", "mlflow.server.fastapi_app:app"],
             env={MLFLOW_STORE_ENV: store.as_uri()})
    assert served_store(p, NO_DISK) == str(store)


def test_served_store_worker_env_relative_uses_cwd():
    p = proc(2, ["gunicorn", "mlflow.server:app"], cwd=str(LAB),
             env={MLFLOW_STORE_ENV: "mlruns"})
    assert served_store(p, NO_DISK) == str(LAB / "mlruns")


def test_served_store_worker_without_env_is_unknown():
    p = proc(2, ["gunicorn", "mlflow.server:app"], cwd=str(LAB))
    assert served_store(p, NO_DISK) is None


@pytest.mark.parametrize("uri", ["sqlite:///mlflow.db", "sqlite:////abs/mlflow.db",
                                 "postgresql://u@h/db", "s3://bucket/mlruns"])
def test_served_store_non_local_backend_is_none(uri):
    p = proc(1, ["mlflow", "server", "--backend-store-uri", uri], cwd=str(LAB))
    assert served_store(p, NO_DISK) is None


def test_served_store_sqlite_in_worker_env_is_none():
    p = proc(2, ["gunicorn", "mlflow.server:app"], env={MLFLOW_STORE_ENV: "sqlite:///m.db"})
    assert served_store(p, NO_DISK) is None


def test_served_store_defaults_to_cwd_mlruns_when_it_exists():
    p = proc(1, ["mlflow", "ui"], cwd=str(LAB))
    assert served_store(p, Disk([LAB / "mlruns"]).folders) == os.path.join(str(LAB), "mlruns")
    assert served_store(p, Disk([LAB / "other"]).folders) is None


def test_served_store_no_flag_and_no_mlruns_is_unknown():
    p = proc(1, ["mlflow", "ui"], cwd=str(LAB))
    assert served_store(p, NO_DISK) is None


def test_served_store_of_non_mlflow_process_is_none():
    p = proc(1, ["python", "train.py", "--backend-store-uri", str(LAB / "mlruns")],
             cwd=str(LAB))
    assert served_store(p, Disk([LAB / "mlruns"]).folders) is None


def test_served_store_flag_without_value_falls_through():
    p = proc(1, ["mlflow", "server", "--backend-store-uri"], cwd=str(LAB))
    assert served_store(p, NO_DISK) is None


# --- classify ---------------------------------------------------------------------------------

@pytest.fixture
def world():
    return str(LAB / "mlruns"), str(LAB / "other-mlruns"), str(LAB / "state")


@pytest.fixture
def disk(world):
    return Disk([*world, LAB / "elsewhere", LAB / "other-state"])


def pids(procs) -> list[int]:
    return [p.pid for p in procs]


def test_classify_sorts_every_kind(world, disk):
    store, other, owner = world
    recorded = proc(10, ["mlflow", "server", "--backend-store-uri", store, "--port", "5050"],
                    create_time=111.0, ports=(PORT,))
    marked_orphan = proc(11, ["python", "-m", "uvicorn", "mlflow.server.fastapi_app:app"],
                         create_time=222.0, ports=(PORT,),
                         env={OWNER_ENV: owner, MLFLOW_STORE_ENV: store})
    stray = proc(20, ["mlflow", "ui", "--backend-store-uri", store, "--port", "5000"],
                 ports=(5000,))
    other_elsewhere = proc(30, ["mlflow", "server", "--backend-store-uri", other,
                                "--port", "6000"], ports=(6000,))
    other_on_port = proc(31, ["mlflow", "server", "--backend-store-uri", other,
                              "--port", "5050"], ports=(PORT,))
    nginx = proc(40, ["nginx", "-g", "daemon off;"], ports=(80, PORT))
    idle = proc(50, ["python", "train.py"])
    census = classify([recorded, marked_orphan, stray, other_elsewhere, other_on_port, nginx,
                       idle], store, PORT, owner, records=[ProcRef(10, 111.0)],
                      folders=disk.folders)
    assert isinstance(census, Census)
    assert pids(census.ours) == [10, 11]
    assert pids(census.same_store) == [20]
    assert pids(census.foreign_on_port) == [31, 40]


def test_classify_records_make_a_process_ours(world, disk):
    store, _, owner = world
    p = proc(10, ["mlflow", "server", "--backend-store-uri", store], create_time=5.0,
             ports=(PORT,))
    census = classify([p], store, PORT, owner, folders=disk.folders, records=[ProcRef(10, 5.0)])
    assert census.ours == (p,)
    assert census.same_store == ()
    assert census.foreign_on_port == ()


def test_classify_owner_marker_makes_a_process_ours(world, disk):
    store, _, owner = world
    p = proc(12, ["python", "-m", "uvicorn", "mlflow.server.fastapi_app:app"],
             env={OWNER_ENV: owner + os.sep,  # trailing separator: still the same folder
                  MLFLOW_STORE_ENV: store})
    census = classify([p], store, PORT, owner, folders=disk.folders)
    assert census.ours == (p,)


def test_classify_owner_marker_through_symlink_is_ours(world, disk):
    store, _, owner = world
    link = LAB / "state-link"
    disk.link(link, owner)
    p = proc(12, ["gunicorn", "mlflow.server:app"],
             env={OWNER_ENV: str(link), MLFLOW_STORE_ENV: store})
    assert classify([p], store, PORT, owner, folders=disk.folders).ours == (p,)


# --- a forged pids.json or owner mark never makes the guard end an unrelated process ---------
@pytest.mark.parametrize("cmdline, env, allowed", [
    (["mlflow", "server", "--backend-store-uri", "{store}"], {}, True),
    (["python", "-m", "uvicorn", "mlflow.server.fastapi_app:app"], {MLFLOW_STORE_ENV: "{store}"},
     True),
    (["sleep", "600"], {}, False),
    (["python3", "-m", "http.server", "8000"], {}, False),
    (["/usr/sbin/sshd", "-D"], {OWNER_ENV: "{owner}"}, False),
    (["mlflow", "server", "--backend-store-uri", "{other}"], {}, False),
    (["mlflow", "server", "--backend-store-uri", "postgresql://u:p@db/x"], {}, False),
    (["gunicorn", "mlflow.server:app"], {OWNER_ENV: "{owner}"}, False),  # mark, no store
])
def test_may_end_only_an_mlflow_server_over_the_store(cmdline, env, allowed, world, disk):
    store, other, owner = world
    fill = {"store": store, "other": other, "owner": owner}
    p = proc(10, [a.format(**fill) for a in cmdline], create_time=5.0,
             env={k: v.format(**fill) for k, v in env.items()})
    why = may_end(p, store, disk.folders)
    assert (why is None) is allowed
    if not allowed:
        assert why


def test_a_forged_record_naming_another_process_is_refused_not_ours(world, disk):
    """pids.json names (pid, start time) of a root web server: it is not ended, says why,
    and counts as foreign because it holds the port."""
    store, _, owner = world
    web = proc(77, ["python3", "-m", "http.server", str(PORT)], create_time=9.0, ports=(PORT,))
    sleeper = proc(78, ["sleep", "600"], create_time=9.5)
    census = sort_processes([web, sleeper], store, PORT, owner,
                            records=[ProcRef(77, 9.0), ProcRef(78, 9.5)], folders=disk.folders)
    assert census.ours == ()
    assert [(p.pid, "no MLflow server" in why) for p, why in census.refused] == [(77, True),
                                                                               (78, True)]
    assert census.foreign_on_port == (web,)


def test_orphans_never_include_a_recorded_process_that_is_no_server(world, disk):
    store, _, owner = world
    sleeper = proc(78, ["sleep", "600"], create_time=9.5)
    assert orphans([sleeper], store, owner, records=[ProcRef(78, 9.5)],
                   folders=disk.folders) == ()


def test_classify_marker_of_another_guard_is_not_ours(world, disk):
    store, _, owner = world
    elsewhere = LAB / "other-state"
    p = proc(13, ["mlflow", "server", "--backend-store-uri", store],
             env={OWNER_ENV: str(elsewhere)})
    census = classify([p], store, PORT, owner, folders=disk.folders)
    assert census.ours == ()
    assert census.same_store == (p,)


def test_classify_same_store_through_symlink(world, disk):
    store, _, owner = world
    link = LAB / "store-link"
    disk.link(link, store)
    p = proc(20, ["mlflow", "server", "--backend-store-uri", link.as_uri()])
    assert classify([p], store, PORT, owner, folders=disk.folders).same_store == (p,)


def test_classify_same_store_by_relative_path_and_cwd(world, disk):
    store, _, owner = world
    p = proc(21, ["mlflow", "ui", "--backend-store-uri", "mlruns"], cwd=str(LAB))
    assert classify([p], store, PORT, owner, folders=disk.folders).same_store == (p,)


def test_classify_same_store_even_on_our_port_is_same_store(world, disk):
    store, _, owner = world
    p = proc(22, ["mlflow", "server", "--backend-store-uri", store], ports=(PORT,))
    census = classify([p], store, PORT, owner, folders=disk.folders)
    assert census.same_store == (p,)
    assert census.foreign_on_port == ()


def test_classify_other_store_on_another_port_is_ignored(world, disk):
    store, other, owner = world
    p = proc(30, ["mlflow", "server", "--backend-store-uri", other], ports=(6000,))
    assert classify([p], store, PORT, owner, folders=disk.folders) == Census((), (), ())


def test_classify_other_store_on_our_port_is_foreign(world, disk):
    store, other, owner = world
    p = proc(31, ["mlflow", "server", "--backend-store-uri", other], ports=(PORT,))
    census = classify([p], store, PORT, owner, folders=disk.folders)
    assert census.foreign_on_port == (p,)
    assert census.same_store == () and census.ours == ()


def test_classify_non_mlflow_listener_on_our_port_is_foreign(world, disk):
    store, _, owner = world
    p = proc(40, ["node", "server.js"], ports=(PORT,))
    assert classify([p], store, PORT, owner, folders=disk.folders).foreign_on_port == (p,)


def test_classify_non_mlflow_listener_elsewhere_is_ignored(world, disk):
    store, _, owner = world
    p = proc(41, ["node", "server.js"], ports=(PORT + 1,))
    assert classify([p], store, PORT, owner, folders=disk.folders) == Census((), (), ())


def test_classify_excludes_self_pid(world, disk):
    store, _, owner = world
    me = proc(99, ["python", "-m", "guard", "run", "--store", store], ports=(PORT,),
              env={OWNER_ENV: owner})
    census = classify([me], store, PORT, owner, folders=disk.folders, records=[me.ref], self_pid=99)
    assert census == Census((), (), ())


def test_classify_recycled_pid_is_not_ours(world, disk):
    store, _, owner = world
    # The record says pid 10 started at 100.0; pid 10 now belongs to a newer process.
    recycled_listener = proc(10, ["node", "server.js"], create_time=250.0, ports=(PORT,))
    census = classify([recycled_listener], store, PORT, owner, records=[ProcRef(10, 100.0)],
                      folders=disk.folders)
    assert census.ours == ()
    assert census.foreign_on_port == (recycled_listener,)


def test_classify_recycled_pid_running_mlflow_is_a_stray_not_ours(world, disk):
    store, _, owner = world
    recycled = proc(10, ["mlflow", "server", "--backend-store-uri", store], create_time=250.0)
    census = classify([recycled], store, PORT, owner, records=[ProcRef(10, 100.0)],
                      folders=disk.folders)
    assert census.ours == ()
    assert census.same_store == (recycled,)


def test_classify_recycled_pid_elsewhere_is_ignored(world, disk):
    store, _, owner = world
    recycled = proc(10, ["python", "train.py"], create_time=250.0)
    census = classify([recycled], store, PORT, owner, records=[ProcRef(10, 100.0)],
                      folders=disk.folders)
    assert census == Census((), (), ())


def test_classify_accepts_a_generator_and_keeps_order(world, disk):
    store, _, owner = world
    procs = [proc(i, ["mlflow", "server", "--backend-store-uri", store]) for i in (5, 3, 4)]
    census = classify((p for p in procs), store, PORT, owner, folders=disk.folders)
    assert pids(census.same_store) == [5, 3, 4]


# --- gc_aimed_at ------------------------------------------------------------------------------

def gc(cmdline, cwd=None) -> ProcInfo:
    return proc(60, cmdline, cwd=None if cwd is None else str(cwd))


@pytest.mark.parametrize("make", [
    lambda s: ["mlflow", "gc", "--backend-store-uri", s.as_uri()],
    lambda s: ["mlflow", "gc", f"--backend-store-uri={s.as_uri()}"],
    lambda s: ["mlflow", "gc", "--backend-store-uri", str(s)],
    lambda s: ["python", "-m", "mlflow", "gc", "--backend-store-uri", s.as_uri()],
    lambda s: ["/venv/bin/python", "/venv/bin/mlflow", "gc", "--older-than", "30d",
               "--backend-store-uri", str(s) + os.sep],
])
def test_gc_aimed_at_the_store_by_backend_uri(make, world, disk):
    store, _, _ = world
    elsewhere = LAB / "elsewhere"
    assert gc_aimed_at(gc(make(Path(store)), cwd=elsewhere), store, PORT, disk.folders)


def test_gc_aimed_at_the_store_by_relative_backend_and_cwd(world, disk):
    store, _, _ = world
    assert gc_aimed_at(gc(["mlflow", "gc", "--backend-store-uri", "mlruns"], cwd=LAB),
                       store, PORT, disk.folders)
    assert gc_aimed_at(gc(["mlflow", "gc", "--backend-store-uri", "file:mlruns"],
                          cwd=LAB), store, PORT, disk.folders)


def test_gc_aimed_at_the_store_through_a_symlink(world, disk):
    store, _, _ = world
    link = LAB / "store-link"
    disk.link(link, store)
    assert gc_aimed_at(gc(["mlflow", "gc", "--backend-store-uri", link.as_uri()]), store, PORT,
                       disk.folders)


def test_gc_of_another_store_is_not_aimed_at_ours(world, disk):
    """Even run from the folder whose ./mlruns is our store: the flag names the other one."""
    store, other, _ = world
    assert not gc_aimed_at(gc(["mlflow", "gc", "--backend-store-uri", other], cwd=LAB),
                           store, PORT, disk.folders)
    assert not gc_aimed_at(gc(["mlflow", "gc", "--backend-store-uri", "sqlite:///mlflow.db"],
                              cwd=LAB), store, PORT, disk.folders)


@pytest.mark.parametrize("uri", [
    f"http://127.0.0.1:{PORT}",
    f"http://localhost:{PORT}/",
    f"https://[::1]:{PORT}",
    f"http://127.0.0.1:{PORT}/mlflow",
])
@pytest.mark.parametrize("form", ["split", "equals"])
def test_gc_aimed_at_the_store_by_tracking_uri_on_our_port(uri, form):
    flag = ["--tracking-uri", uri] if form == "split" else [f"--tracking-uri={uri}"]
    assert gc_aimed_at(gc(["mlflow", "gc", *flag]), "/nowhere/mlruns", PORT, NO_DISK)


def test_gc_aimed_at_our_port_with_credentials_in_the_tracking_uri(world, disk):
    store = world[0]
    p = proc(9, ["mlflow", "gc", "--tracking-uri", f"http://alice:***@127.0.0.1:{PORT}"])
    assert gc_aimed_at(p, store, PORT, disk.folders)


@pytest.mark.parametrize("uri", [
    f"http://127.0.0.1:{PORT + 1}",
    f"http://127.0.0.1:{PORT}0",          # 50500: our port as a prefix
    f"http://127.0.0.1:{str(PORT)[:-1]}",  # 505
    f"http://tracking.example.com:{PORT}",
    f"http://127.0.0.1.example.com:{PORT}",
    "http://127.0.0.1",
])
def test_gc_with_tracking_uri_elsewhere_is_not_aimed_at_ours(uri, world, disk):
    store, _, _ = world
    elsewhere = LAB / "elsewhere"
    assert not gc_aimed_at(gc(["mlflow", "gc", "--tracking-uri", uri], cwd=elsewhere),
                           store, PORT, disk.folders)


def test_gc_without_flags_aims_at_cwd_mlruns(world, disk):
    store, _, _ = world
    elsewhere = LAB / "elsewhere"
    assert gc_aimed_at(gc(["mlflow", "gc"], cwd=LAB), store, PORT, disk.folders)
    assert gc_aimed_at(gc(["mlflow", "gc", "--older-than", "1d"], cwd=LAB), store, PORT,
                       disk.folders)
    assert not gc_aimed_at(gc(["mlflow", "gc"], cwd=elsewhere), store, PORT, disk.folders)
    assert not gc_aimed_at(gc(["mlflow", "gc"], cwd=None), store, PORT, disk.folders)


def test_gc_with_only_a_tracking_uri_elsewhere_still_uses_cwd_mlruns(world, disk):
    """mlflow 3.17's gc opens its backend before applying --tracking-uri: with no
    --backend-store-uri it deletes from ./mlruns whatever server the URI names."""
    store, _, _ = world
    assert gc_aimed_at(gc(["mlflow", "gc", "--tracking-uri", f"http://127.0.0.1:{PORT + 1}"],
                          cwd=LAB), store, PORT, disk.folders)


def test_gc_for_another_store_and_another_port_is_not_ours(world, disk):
    store, other, _ = world
    cmd = ["mlflow", "gc", "--backend-store-uri", Path(other).as_uri(),
           "--tracking-uri", f"http://127.0.0.1:{PORT + 1}"]
    assert not gc_aimed_at(gc(cmd, cwd=LAB), store, PORT, disk.folders)


@pytest.mark.parametrize("cmdline", [
    ["mlflow", "server", "--backend-store-uri", "{store}", "--port", str(PORT)],
    ["mlflow", "ui", "--backend-store-uri", "{store}"],
    ["mlflow", "runs", "delete", "--run-id", "x"],
    ["mlflow", "--version"],
    ["mlflow"],
    ["python", "cleanup.py", "gc", "--backend-store-uri", "{store}"],
    ["python", "-m", "uvicorn", "mlflow.server.fastapi_app:app"],
    ["mlflow", "server", "gc"],  # a positional after server: still the server command
])
def test_other_commands_are_not_gc(cmdline, world, disk):
    store, _, _ = world
    args = [a.replace("{store}", store) for a in cmdline]
    assert not gc_aimed_at(gc(args, cwd=LAB), store, PORT, disk.folders)


# --- orphans: what `guardctl stop` may end once the daemon is gone ----------------------------

def test_orphans_are_ours_and_over_this_store(world, disk):
    store, other, owner = world
    parent = proc(10, ["python", "-m", "mlflow", "server", "--backend-store-uri",
                       Path(store).as_uri()], create_time=111.0, env={OWNER_ENV: owner})
    worker = proc(11, ["python", "-m", "uvicorn", "--factory", "guard.app:create_app"],
                  create_time=222.0, env={OWNER_ENV: owner, MLFLOW_STORE_ENV: store})
    recorded = proc(12, ["mlflow", "server", "--backend-store-uri", store], create_time=5.0)
    found = orphans([parent, worker, recorded], store, owner, records=[ProcRef(12, 5.0)],
                    folders=disk.folders)
    assert pids(found) == [10, 11, 12]


def test_orphans_never_include_another_store_even_with_our_mark(world, disk):
    store, other, owner = world
    lookalike = proc(20, ["python", "-m", "mlflow", "server", "--backend-store-uri",
                          Path(other).as_uri()], env={OWNER_ENV: owner})
    worker = proc(21, ["python", "-m", "uvicorn", "mlflow.server.fastapi_app:app"],
                  env={OWNER_ENV: owner, MLFLOW_STORE_ENV: other})
    recorded_other = proc(22, ["mlflow", "server", "--backend-store-uri", other],
                          create_time=7.0)
    assert orphans([lookalike, worker, recorded_other], store, owner,
                   records=[ProcRef(22, 7.0)], folders=disk.folders) == ()


def test_orphans_need_our_record_or_mark(world, disk):
    store, _, owner = world
    hand_started = proc(30, ["mlflow", "server", "--backend-store-uri", store])
    other_guard = proc(31, ["mlflow", "server", "--backend-store-uri", store],
                       env={OWNER_ENV: str(LAB / "other-state")})
    recycled = proc(32, ["mlflow", "server", "--backend-store-uri", store], create_time=9.0)
    assert orphans([hand_started, other_guard, recycled], store, owner,
                   records=[ProcRef(32, 8.0)], folders=disk.folders) == ()


def test_orphans_need_a_server_not_just_the_mark(world, disk):
    store, _, owner = world
    shell = proc(40, ["bash"], env={OWNER_ENV: owner})
    myself = proc(41, ["mlflow", "server", "--backend-store-uri", store],
                  env={OWNER_ENV: owner})
    assert orphans([shell, myself], store, owner, self_pid=41, folders=disk.folders) == ()
