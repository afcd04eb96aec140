"""The pure checks behind `guardctl doctor`: plain facts in, findings out (no processes, no
disks)."""

from __future__ import annotations

import json
import os

import pytest

from guard.service.doctor import (
    FAIL,
    OK,
    WARN,
    ClockFacts,
    ConfigFacts,
    Facts,
    Finding,
    Listener,
    MlflowFacts,
    MountFacts,
    Partition,
    PeerClock,
    PortFacts,
    StoreFacts,
    Stray,
    VolumeFacts,
    WatchFacts,
    check_clocks,
    check_config,
    check_filesystem,
    check_mlflow,
    check_port,
    check_store,
    check_strays,
    check_sync_client,
    check_volume,
    check_watches,
    exit_code,
    is_network_fs,
    mlflow_supported,
    mount_of,
    render,
    run_checks,
    suggested_watches,
    sync_clients_seen,
    to_json,
)

# --- config ------------------------------------------------------------------------------------


def test_config_error_is_a_fail_with_the_error_text():
    f = check_config(ConfigFacts(None, "", "config file /x.yaml is not valid YAML at line 3"))
    assert f.level == FAIL and "not valid YAML at line 3" in f.detail and f.fix


def test_config_without_store_fails_and_says_how_to_set_one():
    f = check_config(ConfigFacts("/etc/mlflow-guard/config.yaml", "system config"))
    assert f.level == FAIL and "no store configured" in f.detail
    assert "/etc/mlflow-guard/config.yaml (system config)" in f.detail
    assert "store:" in f.fix and "--store" in f.fix


def test_config_ok_names_the_file_and_why():
    f = check_config(ConfigFacts("/home/a/.config/mlflow-guard/config.yaml", "user config",
                                 store="/data/mlruns"))
    assert f.level == OK
    assert "config.yaml (user config)" in f.detail and "/data/mlruns" in f.detail
    none = check_config(ConfigFacts(None, "none found", store="/data/mlruns"))
    assert none.level == OK and "no config file" in none.detail


def test_a_store_only_the_running_daemon_knows_is_a_warning_with_the_way_to_keep_it():
    f = check_config(ConfigFacts(None, "none found", store="/data/mlruns", daemon_pid=4242))
    assert f.level == WARN and "/data/mlruns" in f.detail and "pid 4242" in f.detail
    assert "guardctl config --save" in f.fix


def test_no_config_file_and_no_store_points_at_config_save():
    f = check_config(ConfigFacts(None, "none found"))
    assert f.level == FAIL and "guardctl config --save --store PATH" in f.fix


def test_a_folder_above_the_store_points_at_the_store():
    f = check_store(StoreFacts("/data", "not an MLflow file store", "...", True,
                               child_store="/data/mlruns"))
    assert f.level == FAIL and "/data/mlruns" in f.fix


# --- store -------------------------------------------------------------------------------------


@pytest.mark.parametrize("state, words", [("missing", "does not exist"),
                                          ("empty", "empty folder")])
def test_missing_or_empty_store_looks_unmounted(state, words):
    f = check_store(StoreFacts("/mnt/nas/mlruns", state, "", False))
    assert f.level == FAIL and words in f.detail and "unmounted" in f.detail
    assert "guardctl init --store /mnt/nas/mlruns" in f.fix and "--wait-for-store" in f.fix


def test_folder_that_is_not_a_store_fails_with_inspect_detail():
    f = check_store(StoreFacts("/home/a", "not an MLflow file store",
                               "/home/a is not an MLflow file store: expected ...", True))
    assert f.level == FAIL and f.detail.startswith("/home/a is not an MLflow file store")


def test_read_only_store_fails():
    f = check_store(StoreFacts("/data/mlruns", "ok", "", writable=False))
    assert f.level == FAIL and "cannot write" in f.detail


def test_writable_store_is_ok():
    f = check_store(StoreFacts("/data/mlruns", "ok", "", writable=True))
    assert f == Finding("store", OK, "/data/mlruns is an MLflow file store, writable")


# --- sync client -------------------------------------------------------------------------------


@pytest.mark.parametrize("name, cmdline, client", [
    ("cloud-drive-dae", ("/opt/Synology/SynologyDrive/bin/cloud-drive-daemon",), "Synology Drive"),
    ("cloud-drive-ui", ("/opt/Synology/SynologyDrive/bin/cloud-drive-ui",), "Synology Drive"),
    ("SynologyDrive.exe", (r"C:\Program Files\SynologyDrive\SynologyDrive.exe",),
     "Synology Drive"),
    ("synology-drive", ("synology-drive",), "Synology Drive"),
    ("syncthing", ("/usr/bin/syncthing", "serve", "--no-browser"), "Syncthing"),
    ("syncthing.exe", (), "Syncthing"),
    ("dropbox", ("/home/a/.dropbox-dist/dropbox-lnx.x86_64-190.4.6383/dropbox",), "Dropbox"),
    ("Dropbox.exe", (), "Dropbox"),
    ("OneDrive.exe", (r"C:\Users\a\AppData\Local\Microsoft\OneDrive\OneDrive.exe",),
     "OneDrive"),
    ("onedrive", ("/usr/bin/onedrive", "--monitor"), "OneDrive"),
    ("nextcloud", ("/usr/bin/nextcloud", "--background"), "Nextcloud"),
    ("nextcloud.exe", (), "Nextcloud"),
])
def test_each_sync_client_is_recognised(name, cmdline, client):
    assert sync_clients_seen([(name, cmdline)]) == (client,)


@pytest.mark.parametrize("name, cmdline", [
    ("vim", ("vim", "/home/a/Dropbox/notes.txt")),
    ("python3", ("python3", "test_syncthing.py")),
    ("bash", ("bash", "-c", "onedrive --help")),
    ("", ()),
    ("systemd", ("/sbin/init",)),
])
def test_other_processes_are_not_sync_clients(name, cmdline):
    assert sync_clients_seen([(name, cmdline)]) == ()


def test_several_clients_are_listed_once_each():
    procs = [("dropbox", ()), ("syncthing", ()), ("syncthing", ("syncthing", "serve")),
             ("bash", ())]
    assert sync_clients_seen(procs) == ("Dropbox", "Syncthing")


def test_sync_client_seen_is_ok_none_is_a_warning_fine_for_a_nas():
    assert check_sync_client(("Syncthing",)).level == OK
    f = check_sync_client(())
    assert f.level == WARN and "NAS share" in f.detail and f.fix


# --- filesystem --------------------------------------------------------------------------------


@pytest.mark.parametrize("fstype", ["nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "drvfs",
                                    "afpfs", "davfs", "fuse.sshfs", "fuse.rclone", "NFS"])
def test_network_filesystems(fstype):
    assert is_network_fs(fstype)


@pytest.mark.parametrize("fstype", ["ext4", "xfs", "btrfs", "zfs", "apfs", "NTFS", "tmpfs",
                                    "fuseblk", "overlay", ""])
def test_local_filesystems(fstype):
    assert not is_network_fs(fstype)


def test_windows_mapped_drive_is_network_by_its_remote_option():
    assert is_network_fs("NTFS", "rw,remote")
    assert not is_network_fs("NTFS", "rw,fixed")


def test_mount_of_takes_the_longest_mountpoint_on_a_path_boundary():
    parts = [Partition("/", "ext4"), Partition("/mnt/c", "9p"), Partition("/mnt/cd", "nfs"),
             Partition("/mnt/c/sub", "ext4")]
    assert mount_of("/mnt/c/mlruns", parts).fstype == "9p"
    assert mount_of("/mnt/cd/mlruns", parts).fstype == "nfs"
    assert mount_of("/mnt/c", parts).fstype == "9p"
    assert mount_of("/mnt/cx/mlruns", parts).fstype == "ext4"
    assert mount_of("/mnt/c/sub/x", parts).mountpoint == "/mnt/c/sub"
    assert mount_of("/x", [Partition("/data", "ext4")]) is None


def test_mount_of_prefers_the_later_of_two_equal_mountpoints():
    parts = [Partition("/mnt/nas", "ext4"), Partition("/mnt/nas", "cifs")]
    assert mount_of("/mnt/nas/mlruns", parts).fstype == "cifs"


def test_mount_of_windows_drives():
    parts = [Partition("c:\\", "NTFS"), Partition("z:\\", "NTFS", opts="rw,remote")]
    assert mount_of("z:\\lab\\mlruns", parts).mountpoint == "z:\\"
    assert mount_of("c:\\users\\a\\mlruns", parts).mountpoint == "c:\\"


def test_network_store_with_events_warns_to_poll():
    f = check_filesystem(MountFacts("/mnt/nas/mlruns", Partition("/mnt/nas", "nfs4"), "auto"))
    assert f.level == WARN and "nfs4" in f.detail and "other machines" in f.detail
    assert "rewrite.watch: polling" in f.fix


def test_network_store_already_polling_is_ok():
    f = check_filesystem(MountFacts("/mnt/c/mlruns", Partition("/mnt/c", "9p"), "polling"))
    assert f.level == OK and "polling" in f.detail


def test_network_store_without_rewriting_uses_no_events():
    f = check_filesystem(MountFacts("/mnt/nas/mlruns", Partition("/mnt/nas", "cifs"), "off"))
    assert f.level == OK and "rewrite.enabled: false" in f.detail
    assert check_watches(WatchFacts(10**6, 8192, "off")).level == OK


def test_local_store_is_ok_and_unknown_mount_warns():
    assert check_filesystem(MountFacts("/d/mlruns", Partition("/", "ext4"), "auto")).level == OK
    assert check_filesystem(MountFacts("/d/mlruns", None, "auto")).level == WARN


# --- inotify watches ---------------------------------------------------------------------------


def test_more_folders_than_the_limit_warns_with_the_sysctl_fix():
    f = check_watches(WatchFacts(folders=9000, limit=8192, watch_mode="auto"))
    assert f.level == WARN and "9000" in f.detail and "8192" in f.detail
    assert "falls back to polling" in f.detail
    assert "sudo sysctl fs.inotify.max_user_watches=524288" in f.fix
    assert "/etc/sysctl.d/" in f.fix


def test_most_of_the_limit_warns_too():
    f = check_watches(WatchFacts(folders=7000, limit=8192, watch_mode="events"))
    assert f.level == WARN and "other programs" in f.detail and "sysctl" in f.fix


def test_plenty_of_watches_is_ok():
    f = check_watches(WatchFacts(folders=6000, limit=8192, watch_mode="auto"))
    assert f.level == OK and "6000" in f.detail


def test_watches_do_not_matter_when_polling_or_unknown():
    assert check_watches(WatchFacts(10**6, 8192, "polling")).level == OK
    assert check_watches(WatchFacts(10, None, "auto")).level == OK


def test_suggested_limit_grows_with_huge_stores():
    assert suggested_watches(100) == 524288
    assert suggested_watches(400000) == 1048576
    f = check_watches(WatchFacts(folders=400000, limit=8192, watch_mode="auto"))
    assert "max_user_watches=1048576" in f.fix


# --- port --------------------------------------------------------------------------------------


def port(**kw) -> PortFacts:
    values = dict(host="127.0.0.1", port=5050, bindable=True, daemon_pid=None)
    values.update(kw)
    return PortFacts(**values)


def test_free_port_is_ok():
    f = check_port(port())
    assert f.level == OK and "127.0.0.1:5050 is free" in f.detail


def test_port_held_by_our_own_server_is_ok():
    f = check_port(port(bindable=False, daemon_pid=4242,
                        ours=(Listener(4300, "mlflow server --port 5050"),)))
    assert f.level == OK and "this guard's own server" in f.detail and "4242" in f.detail
    assert check_port(port(bindable=False, ours=(Listener(4300, "mlflow"),))).level == OK


def test_server_of_a_dead_daemon_is_an_orphan_not_our_own_server():
    left = (Listener(4300, "python -m mlflow server --port 5050"),
            Listener(4301, "python -m uvicorn --factory guard.app:create_app"))
    f = check_port(port(bindable=False, ours=left, orphans=left))
    assert f.level == WARN and "own server" not in f.detail
    assert "dead guard daemon" in f.detail and "orphan" in f.detail
    assert "pid 4300" in f.detail and "pid 4301" in f.detail
    assert "`guardctl stop` ends it" in f.fix


def test_orphans_are_not_reported_while_the_daemon_runs():
    f = check_port(port(bindable=False, daemon_pid=4242,
                        orphans=(Listener(4300, "mlflow server"),)))
    assert f.level == OK and "own server" in f.detail


def test_hand_started_server_on_the_guards_port_is_filed_under_port():
    f = check_port(port(bindable=False, same_store=(Stray(777, "bob", 5050, "/data/mlruns"),)))
    assert f.level == WARN and "pid 777 (bob), port 5050, store /data/mlruns" in f.detail
    assert "ends it when it starts" in f.detail


def test_hand_started_server_on_another_port_is_not_a_port_problem():
    f = check_port(port(same_store=(Stray(777, "bob", 5000, "/data/mlruns"),)))
    assert f.level == OK and "777" not in f.detail


def test_hand_started_server_on_the_port_while_the_guard_runs_blocks_its_server():
    f = check_port(port(bindable=False, daemon_pid=4242,
                        same_store=(Stray(777, None, 5050, "/data/mlruns"),)))
    assert f.level == FAIL and "ends it when it starts" not in f.detail
    assert "kill 777" in f.fix


def test_strays_are_one_line_each_with_pid_port_and_store():
    strays = (Stray(777, "bob", 5000, "/data/mlruns"), Stray(778, None, None, "/data/mlruns"))
    f = check_strays(port(same_store=strays))
    assert f.name == "strays" and f.level == WARN
    lines = f.detail.splitlines()
    assert lines[0] == "2 hand-started MLflow servers over this store:"
    assert lines[1].strip() == "pid 777 (bob), port 5000, store /data/mlruns"
    assert lines[2].strip() == "pid 778, port unknown, store /data/mlruns"
    assert "`guardctl run` ends them when it starts" in f.fix


def test_stray_advice_while_the_guard_runs_does_not_promise_an_ending():
    f = check_strays(port(daemon_pid=4242, same_store=(Stray(777, "bob", 5000, "/s"),)))
    assert "kill 777" in f.fix and "ends them when it starts" not in f.fix
    assert "only when it starts" in f.fix and "1 hand-started MLflow server over" in f.detail


def test_no_strays_is_ok():
    assert check_strays(port()).level == OK


def test_foreign_listener_fails_naming_pid_and_command():
    f = check_port(port(bindable=False, daemon_pid=4242,
                        foreign=(Listener(555, "python -m http.server 5050"),)))
    assert f.level == FAIL and "pid 555" in f.detail and "http.server" in f.detail
    assert "server.port" in f.fix and "--port" in f.fix


def test_invisible_listener_fails():
    f = check_port(port(bindable=False))
    assert f.level == FAIL and "cannot see" in f.detail


# --- mlflow ------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["3.0.0", "3.0", "3.17.2", "3.99.1rc1"])
def test_supported_mlflow(version):
    assert mlflow_supported(version)


@pytest.mark.parametrize("version", ["2.22.1", "4.0.0", "4.0.0rc1", "10.1", "", "dev"])
def test_unsupported_mlflow(version):
    assert not mlflow_supported(version)


def test_mlflow_checks():
    good = MlflowFacts("3.17.2", True, ("guard.app:create_app",))
    assert check_mlflow(good).level == OK
    missing = check_mlflow(MlflowFacts(None, False, ()))
    assert missing.level == FAIL and "not installed" in missing.detail
    old = check_mlflow(MlflowFacts("2.22.1", True, ("guard.app:create_app",)))
    assert old.level == FAIL and "2.22.1" in old.detail and "mlflow>=3.0,<4" in old.fix
    no_app = check_mlflow(MlflowFacts("3.17.2", True, ()))
    assert no_app.level == FAIL and "--app-name guard" in no_app.detail
    assert no_app.fix == "reinstall mlflow-sync-guard (pip install .)"
    other = check_mlflow(MlflowFacts("3.17.2", True, ("other.app:create_app",)))
    assert other.level == FAIL and "other.app:create_app" in other.detail


# --- vault volume ------------------------------------------------------------------------------


def test_vault_on_the_store_volume_is_ok_elsewhere_warns():
    assert check_volume(VolumeFacts(42, "/s/vault", 42, True, True)).level == OK
    f = check_volume(VolumeFacts(42, "/s/vault", 7, True, True))
    assert f.level == WARN and "hard links are impossible" in f.detail and "copies" in f.detail
    assert "vault.path (or state_dir)" in f.fix
    explicit = check_volume(VolumeFacts(42, "/v", 7, True, False))
    assert "state_dir" not in explicit.fix and "vault.path" in explicit.fix


def test_vault_off_or_unreadable():
    assert check_volume(VolumeFacts(42, "/s/vault", 7, False, True)).level == OK
    assert check_volume(VolumeFacts(42, "/s/vault", None, True, True)).level == WARN


# --- clocks ------------------------------------------------------------------------------------

NOW = 1_700_000_000.0


def clocks(*peers: PeerClock, now: float = NOW) -> ClockFacts:
    return ClockFacts(tuple(peers), now, skew=2.0, stale_after=60.0, interval=5.0)


def test_no_peers_is_ok():
    f = check_clocks(clocks())
    assert f.level == OK and "no other machines" in f.detail


def test_peer_clock_ahead_warns():
    # written at 10:00:10 by the peer's clock, arrived here at 10:00:03 by ours
    f = check_clocks(clocks(PeerClock("hostB", NOW - 2, NOW + 5)))
    assert f.level == WARN and "hostB's clock is ahead of ours by at least 7.0 s" in f.detail
    assert "locks.skew (2 s)" in f.detail and "timedatectl set-ntp true" in f.fix


def test_peer_clock_behind_warns_on_a_recent_heartbeat():
    f = check_clocks(clocks(PeerClock("hostC", NOW - 1, NOW - 1 - 120)))
    assert f.level == WARN and "hostC's clock is behind ours" in f.detail


def test_old_heartbeat_with_a_large_gap_is_not_evidence():
    assert check_clocks(clocks(PeerClock("hostC", NOW - 3600, NOW - 3600 - 120))).level == OK


def test_sync_lag_and_small_skew_are_within_tolerance():
    f = check_clocks(clocks(PeerClock("hostB", NOW - 1, NOW - 1 + 1.5),  # 1.5 s ahead
                            PeerClock("hostC", NOW - 2, NOW - 2 - 30)))  # 30 s sync lag
    assert f.level == OK and "hostB, hostC" in f.detail


def test_several_problems_are_all_named():
    f = check_clocks(clocks(PeerClock("b", NOW, NOW + 10), PeerClock("c", NOW, NOW - 100),
                            PeerClock("d", NOW, NOW)))
    assert f.level == WARN and "b's clock is ahead" in f.detail and "c's clock is behind" \
        in f.detail and "d's" not in f.detail


# --- the whole report --------------------------------------------------------------------------

MLFLOW_OK = MlflowFacts("3.17.2", True, ("guard.app:create_app",))


def test_run_checks_shows_only_what_was_gathered():
    facts = Facts(config=ConfigFacts(None, "", "bad yaml"), mlflow=MLFLOW_OK, sync_clients=())
    assert [f.name for f in run_checks(facts)] == ["config", "sync client", "mlflow"]


def test_watch_check_is_linux_only():
    base = dict(config=ConfigFacts("/c.yaml", "--config", store="/s"), mlflow=MLFLOW_OK,
                sync_clients=("Dropbox",), watches=WatchFacts(10, 5, "auto"))
    assert "inotify watches" in [f.name for f in run_checks(Facts(**base, linux=True))]
    assert "inotify watches" not in [f.name for f in run_checks(Facts(**base, linux=False))]


def test_exit_code_fails_only_on_fail():
    assert exit_code([Finding("a", OK, ""), Finding("b", WARN, "", "x")]) == 0
    assert exit_code([Finding("a", OK, ""), Finding("b", FAIL, "", "x")]) == 1


def test_render_lines_fixes_and_summary():
    text = render([Finding("store", OK, "fine", "unused"), Finding("port", FAIL, "taken", "stop"),
                   Finding("clocks", WARN, "skewed", "ntp")])
    lines = text.splitlines()
    assert lines[0] == "ok    store: fine"
    assert lines[1:5] == ["FAIL  port: taken", "      fix: stop", "WARN  clocks: skewed",
                          "      fix: ntp"]
    assert lines[5].startswith("1 failed, 1 warning, 1 ok") and "cannot run" in lines[5]


def test_json_is_a_list_of_findings():
    data = json.loads(to_json([Finding("port", FAIL, "taken", "stop")]))
    assert data == [{"name": "port", "level": "fail", "detail": "taken", "fix": "stop"}]


def test_exposure_is_checked_when_gathered_and_fails_on_an_open_bind():
    from dataclasses import replace

    from guard.core.config import ServerAuth
    from guard.service.doctor import check_exposure
    from guard.service.exposure import Bind, ExposureFacts

    base = Facts(ConfigFacts(None, "none found", store="/s"), MlflowFacts("3.1.0", True, ()), ())
    assert "exposure" not in [f.name for f in run_checks(base)]
    facts = replace(base, exposure=ExposureFacts("127.0.0.1", False, ServerAuth.NONE,
                                                 (Bind(7, "0.0.0.0", 5050, False, "mlflow"),)))
    found = {f.name: f for f in run_checks(facts)}
    assert found["exposure"].level == FAIL and found["exposure"] == check_exposure(facts.exposure)
    assert exit_code(run_checks(facts)) == 1


# --- sync clients' folders in the store root (issue 14) -------------------------------------

def test_sync_folders_in_the_root_warn_with_each_clients_fix():
    from guard.service.doctor import check_sync_folders

    f = check_sync_folders((".stfolder", ".stversions", "@eaDir"))
    assert f.level == WARN and f.name == "sync folders"
    assert f.detail.startswith("the store root holds .stfolder, .stversions, @eaDir: the "
                               "guard's server skips them, but MLflow opening the folder "
                               "directly (a file:// tracking URI, a bare `mlflow server`)")
    assert "Invalid experiment ID: '.stfolder'" in f.detail
    assert f.fix.startswith("share the folder above mlruns rather than mlruns itself")
    for words in ("Marker Name (Advanced) to `.trash`", "versioning `fsPath`", "indexing"):
        assert words in f.fix
    assert "recycle" not in f.fix and "Marker" not in check_sync_folders(("@eaDir",)).fix


def test_sync_folders_are_checked_only_when_there_are_some():
    from dataclasses import replace

    from guard.service.doctor import check_sync_folders

    base = Facts(ConfigFacts("/c.yaml", "--config", None, "/s"),
                 MlflowFacts("3.17.2", True, ("guard.app:create_app",)), ("Syncthing",))
    plain = replace(base, store=StoreFacts("/s", "ok", "", True))
    assert "sync folders" not in {f.name for f in run_checks(plain)}
    marked = replace(base, store=StoreFacts("/s", "ok", "", True, (".stfolder",)))
    found = {f.name: f for f in run_checks(marked)}
    assert found["sync folders"] == check_sync_folders((".stfolder",))
    assert found["store"].level == OK and exit_code(run_checks(marked)) == 0


def test_a_hand_started_server_and_its_workers_are_one_stray_with_its_port():
    """`mlflow server` forks a gunicorn/uvicorn tree: one line per server, with the port one
    of its workers listens on, not one line per process."""
    from guard.supervision.processes import ProcInfo, server_trees

    def proc(pid, ppid, cmd, ports=()):
        return ProcInfo(pid, ppid, 1.0, tuple(cmd.split()), username="bob",
                        listen_ports=tuple(ports))

    tree = [proc(10, 1, "python -m mlflow server --backend-store-uri /s --port 5392"),
            proc(11, 10, "python -m uvicorn mlflow.server.fastapi_app:app"),
            proc(12, 11, "python -m uvicorn worker", ports=(5392,)),
            proc(20, 1, "mlflow ui --backend-store-uri /s")]
    assert [(p.pid, port) for p, port in server_trees(tree)] == [(10, 5392), (20, 5000)]


# --- files the running daemon's vault could not keep (issue 15) ------------------------------

def placeholder_group(n: int = 4):
    from guard.protection.restorer import Unprotected
    from guard.protection.vault import PLACEHOLDER, unprotected_fix

    return Unprotected(PLACEHOLDER, n, ("0/abc/artifacts/model.pkl", "0/abc/metrics/loss"),
                       unprotected_fix(PLACEHOLDER))


def test_unprotected_files_are_listed_by_reason_with_each_fix():
    from guard.protection.restorer import Unprotected
    from guard.protection.vault import OTHER_VOLUME, unprotected_fix
    from guard.service.doctor import UnprotectedFacts, check_unprotected

    other = Unprotected(OTHER_VOLUME, 1, ("0/abc/artifacts/mnt/x",), unprotected_fix(OTHER_VOLUME))
    f = check_unprotected(UnprotectedFacts(4242, (placeholder_group(), other)))
    assert f.level == WARN and f.name == "unprotected files"
    assert f.detail.startswith("the running daemon (pid 4242) could not keep 5 store files in "
                               "its vault: deleting them cannot be undone")
    lines = f.detail.splitlines()[1:]
    assert lines == ["        4 files (online-only placeholder): 0/abc/artifacts/model.pkl, "
                     "0/abc/metrics/loss and 2 more",
                     "        1 file (on another volume): 0/abc/artifacts/mnt/x"]
    assert "Always available on this device" in f.fix and "keep the store on one volume" in f.fix
    more = check_unprotected(UnprotectedFacts(4242, (placeholder_group(),), more=True))
    assert "could not keep more than 4 store files" in more.detail


def test_the_unprotected_check_shows_only_when_the_daemon_reports_some():
    from dataclasses import replace

    from guard.service.doctor import UnprotectedFacts

    base = Facts(ConfigFacts("/c.yaml", "--config", None, "/s"), MLFLOW_OK, ("Syncthing",))
    assert "unprotected files" not in {f.name for f in run_checks(base)}
    none = replace(base, unprotected=UnprotectedFacts(4242, ()))
    assert "unprotected files" not in {f.name for f in run_checks(none)}
    some = replace(base, unprotected=UnprotectedFacts(4242, (placeholder_group(),)))
    found = {f.name: f for f in run_checks(some)}
    assert found["unprotected files"].level == WARN and exit_code(run_checks(some)) == 0


def test_unprotected_files_are_read_from_the_running_daemons_status_file(tmp_path):
    from guard.core.records import to_json
    from guard.core.state import StateDir
    from guard.protection.restorer import VaultFigures
    from guard.service.doctor import UnprotectedFacts, read_unprotected

    state = StateDir(tmp_path)
    figures = VaultFigures(ready=True, unprotected=(placeholder_group(),))
    state.status.write_text(json.dumps({"vault": to_json(figures)}))
    assert read_unprotected(state, 4242) == UnprotectedFacts(4242, (placeholder_group(),))
    assert read_unprotected(state, None) is None  # no daemon runs: its file is stale
    state.status.write_text(json.dumps({"vault": {"enabled": False}}))
    assert read_unprotected(state, 4242) is None
    state.status.write_text("{half a docu")
    assert read_unprotected(state, 4242) is None


# --- long paths on Windows (issue 15) ----------------------------------------------------------

def long_facts(**kw):
    from guard.service.doctor import LongPathFacts

    base = dict(platform="win32", enabled=0, store="C:\\Users\\ana\\SynologyDrive\\mlruns",
                vault="C:\\Users\\ana\\AppData\\Local\\mlflow-guard\\vault",
                quarantine="C:\\Users\\ana\\AppData\\Local\\mlflow-guard\\quarantine",
                longest="", longest_live="", scanned=10, complete=True, sep="\\")
    base.update(kw)
    return LongPathFacts(**base)


def rel_of_length(n: int) -> str:
    """A store-relative Windows path of exactly `n` characters."""
    head = "1\\0a1b2c3d4e5f\\artifacts\\"
    return head + "x" * (n - len(head))


def test_long_paths_do_not_matter_off_windows_or_when_enabled():
    from guard.service.doctor import check_long_paths

    far = rel_of_length(400)
    f = check_long_paths(long_facts(platform="linux", enabled=None, longest=far))
    assert f.level == OK and f.detail == "no path length limit here (not Windows)"
    f = check_long_paths(long_facts(enabled=1, longest=far, longest_live=far))
    assert f.level == OK and "LongPathsEnabled is 1" in f.detail


def test_long_paths_warn_when_the_guards_folders_push_a_path_over_259():
    from guard.service.doctor import MAX_PATH_CHARS, check_long_paths, longest_paths

    # fits in the store (35 + 1 + 200 = 236), not in the quarantine or the vault's trash
    rel = rel_of_length(200)
    facts = long_facts(longest=rel, longest_live=rel)
    lengths = {where.split(",")[0]: n for n, where in longest_paths(facts)}
    assert lengths["in the store"] == len(facts.store) + 1 + 200 <= MAX_PATH_CHARS
    assert lengths["in the vault's trash"] == len(facts.vault) + len("\\trash\\") + 22 + 1 + 200
    assert lengths["in the quarantine"] == (len(facts.quarantine) + 1 + 22 + 1 + 200
                                            + len(".before"))
    f = check_long_paths(facts)
    assert f.level == WARN, f
    assert f.detail.startswith(f"the longest path the guard may write is "
                               f"{lengths['in the quarantine']} characters (in the quarantine, "
                               f"where conflict copies go; the longest store path is {rel})")
    assert "LongPathsEnabled is 0" in f.detail and "over Windows' 259-character limit" in f.detail
    assert f.fix.startswith('in an Administrator PowerShell: `New-ItemProperty -Path "HKLM:\\'
                            'SYSTEM\\CurrentControlSet\\Control\\FileSystem" -Name '
                            "LongPathsEnabled -Value 1 -PropertyType DWORD -Force`, then sign "
                            "out and in")
    unread = check_long_paths(long_facts(enabled=None, longest=rel, longest_live=rel))
    assert unread.level == WARN and "LongPathsEnabled is unreadable" in unread.detail
    no_vault = check_long_paths(long_facts(vault=None, longest=rel, longest_live=rel))
    assert no_vault.level == WARN and "quarantine" in no_vault.detail


def test_long_paths_under_the_limit_are_ok_with_the_margin():
    from guard.service.doctor import check_long_paths, longest_paths

    rel = rel_of_length(120)
    facts = long_facts(longest=rel, longest_live=rel, complete=False, scanned=100000)
    worst = max(n for n, _ in longest_paths(facts))
    f = check_long_paths(facts)
    assert f.level == OK
    assert f"{259 - worst} under Windows' 259-character limit" in f.detail
    assert "(of the first 100000 store entries)" in f.detail


def test_a_path_only_trash_makes_long_counts_once_moved_there():
    """MLflow moves a deleted experiment under .trash: 7 more characters in the store."""
    from guard.service.doctor import longest_paths

    rel = rel_of_length(100)
    places = {where.split(",")[0]: n for n, where in longest_paths(long_facts(
        longest=rel, longest_live=rel))}
    assert places["in the store's .trash"] == places["in the store"] + len(".trash\\")


def test_the_longest_store_paths_walk_is_bounded(tmp_path):
    from guard.service.doctor import longest_store_paths

    deep = tmp_path / "1" / "run" / "artifacts" / "a" / "b"
    deep.mkdir(parents=True)
    (deep / "long-name.txt").write_text("x")
    trashed = tmp_path / ".trash" / "2" / ("y" * 60)
    trashed.mkdir(parents=True)
    longest, live, seen, complete = longest_store_paths(tmp_path)
    assert longest == os.path.join(".trash", "2", "y" * 60) and complete
    assert live == os.path.join("1", "run", "artifacts", "a", "b", "long-name.txt")
    assert seen == 9
    assert longest_store_paths(tmp_path, limit=3)[2:] == (3, False)


def test_long_paths_facts_read_the_registry_only_on_windows(tmp_path):
    from guard.core.config import load_config
    from guard.service.doctor import Probes, gather_long_paths

    (tmp_path / "mlruns").mkdir()
    path = tmp_path / "guard.yaml"
    path.write_text(f"store: {tmp_path / 'mlruns'}\nstate_dir: {tmp_path / 'state'}\n")
    cfg = load_config(str(path))
    asked: list[bool] = []

    def enabled() -> int | None:
        asked.append(True)
        return 0

    linux = gather_long_paths(cfg, Probes(platform="linux", long_paths_enabled=enabled))
    assert linux.enabled is None and not asked and linux.scanned == 0
    windows = gather_long_paths(cfg, Probes(platform="win32", long_paths_enabled=enabled))
    assert asked and windows.enabled == 0 and windows.store == str(tmp_path / "mlruns")


# --- the address MLflow clients use (issue 15) -------------------------------------------------

def address(uri: str | None, platform: str = "win32", host: str = "127.0.0.1"):
    from guard.service.doctor import AddressFacts

    return AddressFacts(platform, host, uri, 5050)


@pytest.mark.parametrize("uri", ["http://localhost:5050", "http://LocalHost:5050/",
                                 "HTTP://LOCALHOST:5050/#/experiments"])
def test_localhost_on_windows_warns_of_the_2_second_ipv6_attempt(uri):
    from guard.service.doctor import check_address

    f = check_address(address(uri))
    assert f.level == WARN and f.name == "address"
    assert "try localhost's IPv6 address ::1 first" in f.detail
    assert "binds 127.0.0.1 (IPv4) only" in f.detail and "about 2 s" in f.detail
    assert f.fix.startswith("set MLFLOW_TRACKING_URI=http://127.0.0.1:5050")


def test_localhost_elsewhere_is_fine_but_127_0_0_1_is_still_suggested():
    from guard.service.doctor import check_address

    f = check_address(address("http://localhost:5050", platform="linux"))
    assert f.level == OK and "MLFLOW_TRACKING_URI=http://127.0.0.1:5050 avoids it" in f.detail


@pytest.mark.parametrize("uri, host, words", [
    (None, "127.0.0.1", "not set here; point MLflow clients at the guard's server with "
                        "MLFLOW_TRACKING_URI=http://127.0.0.1:5050"),
    ("  ", "127.0.0.1", "MLFLOW_TRACKING_URI=http://127.0.0.1:5050"),
    ("http://127.0.0.1:5050", "127.0.0.1", "reach the server by IPv4 directly"),
    ("http://localhost:5051", "127.0.0.1", "not this guard's server"),
    ("http://localhost", "127.0.0.1", "not this guard's server"),
    ("http://localhost:5050", "::", "which localhost reaches"),
    ("file:///C:/Users/ana/mlruns", "127.0.0.1", "not this guard's server"),
    ("http://localhost:99999", "127.0.0.1", "not an address of this guard's server"),
])
def test_the_address_is_ok_when_it_uses_127_0_0_1_is_unset_or_is_another_server(uri, host,
                                                                                words):
    from guard.service.doctor import check_address

    f = check_address(address(uri, host=host))
    assert f.level == OK and words in f.detail, f


def test_the_address_check_never_prints_a_password():
    from guard.service.doctor import check_address

    f = check_address(address("http://ana:s3cret@localhost:5050"))
    assert f.level == WARN and "s3cret" not in f.detail + f.fix
