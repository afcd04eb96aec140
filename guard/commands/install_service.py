"""`guardctl install-service`: run the daemon at boot or logon: a systemd unit, a Windows logon
task (the default on Windows: no password, no special right) or a Windows service."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from guard.commands.common import add_config_options, config_from
from guard.core.config import Config, ConfigError
from guard.core.runtime import interpreter, windowless
from guard.service import logontask, units

NAME = "install-service"
Run = Callable[..., "subprocess.CompletedProcess[str]"]
HELP = ("install the daemon as a service: a systemd unit (--systemd), a Windows logon task "
        "(--windows) or a Windows service (--windows-service)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    kind = parser.add_mutually_exclusive_group(required=True)
    kind.add_argument("--systemd", action="store_true", help="write a systemd unit")
    kind.add_argument("--windows", action="store_true",
                      help="register a Task Scheduler task that starts the guard at your logon "
                           "(no password, no special right; the usual choice on a workstation)")
    kind.add_argument("--windows-service", action="store_true",
                      help="install a Windows service, for a machine that runs the guard with "
                           "nobody logged on (needs an Administrator prompt and the account's "
                           "password)")
    add_config_options(parser, store=False, state_dir=False)
    parser.add_argument("--user", action="store_true",
                        help="systemd: a user unit for `systemctl --user` instead of a system unit")
    parser.add_argument("--run-as", metavar="NAME",
                        help="systemd system unit: the account that owns the sync folder "
                             "(default: the user who ran sudo, or you)")
    parser.add_argument("--output", metavar="PATH",
                        help="systemd: write the unit here instead ('-' prints it)")
    parser.add_argument("--enable", action="store_true",
                        help="also run the systemctl commands that enable and start it")
    parser.add_argument("--account", metavar="NAME",
                        help=r"--windows-service: run the service as this account (.\name or "
                             r"DOMAIN\name), the one that owns the Synology Drive folder; asks "
                             "for its password and gives it the right to log on as a service")


def run(args: argparse.Namespace) -> int:
    if args.account and not args.windows_service:
        print("guardctl: --account is for --windows-service (the logon task runs as you)",
              file=sys.stderr)
        return 2
    if args.windows:
        return _install_task(args)
    if args.windows_service:
        return _install_windows_service(args)
    try:
        return _install_systemd(args)
    except OSError as exc:
        print(f"guardctl: {exc}", file=sys.stderr)
        return 1


def _target_user(args: argparse.Namespace) -> str | None:
    if args.user:
        return None
    name = args.run_as or os.environ.get("SUDO_USER") or getpass.getuser()
    if name == "root" and not args.run_as:
        raise ConfigError("a system unit runs as the account that owns the sync folder, not "
                          "root: pass --run-as NAME (or use --user for your own user unit)")
    return name


@contextlib.contextmanager
def _home_of(user: str | None) -> Iterator[None]:
    """Expand '~' in the config as the service's account will (sudo may keep root's HOME)."""
    if user is None or sys.platform == "win32":
        yield
        return
    import pwd

    try:
        home = pwd.getpwnam(user).pw_dir
    except KeyError:
        raise ConfigError(f"no account named {user!r} on this machine (--run-as)") from None
    saved = {k: os.environ.get(k) for k in ("HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME")}
    os.environ["HOME"] = home
    os.environ.pop("XDG_STATE_HOME", None)
    os.environ.pop("XDG_CONFIG_HOME", None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _service_config(args: argparse.Namespace, user: str | None) -> Config:
    with _home_of(user):
        cfg = config_from(args)
    if cfg.file is None:
        raise ConfigError("a service needs a config file naming the store: write one with "
                          "`guardctl config --save --store PATH` (or by hand, see "
                          "config.example.yaml) and pass --config PATH")
    cfg.require_store()
    return cfg


def _unit_path(args: argparse.Namespace) -> Path | None:
    if args.output == "-":
        return None
    if args.output:
        return Path(args.output).expanduser().absolute()
    if args.user:
        base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
        return Path(base) / "systemd" / "user" / f"{units.SERVICE_NAME}.service"
    return Path("/etc/systemd/system") / f"{units.SERVICE_NAME}.service"


def _own_folders(cfg: Config, user: str | None) -> None:
    """Create the state folder and vault for the service's account: ReadWritePaths needs
    them to exist, and a folder root created for another account would be unwritable."""
    for folder in (cfg.state_dir, cfg.vault_root):
        missing = [p for p in [folder, *folder.parents] if not p.exists()]
        folder.mkdir(parents=True, exist_ok=True)
        if user and os.geteuid() == 0:
            import pwd

            entry = pwd.getpwnam(user)
            for path in missing:
                os.chown(path, entry.pw_uid, entry.pw_gid)


def _install_systemd(args: argparse.Namespace) -> int:
    if sys.platform == "win32":
        print("guardctl: systemd units are for Linux; on Windows use --windows", file=sys.stderr)
        return 2
    user = _target_user(args)
    cfg = _service_config(args, user)
    spec = units.UnitSpec(
        python=sys.executable, config=str(cfg.file), user=user,
        writable=tuple(dict.fromkeys(str(p) for p in (cfg.store, cfg.state_dir, cfg.vault_root))),
        stop_grace=cfg.server.stop_grace)
    text = units.render(spec)
    path = _unit_path(args)
    if path is None:
        sys.stdout.write(text)
        return 0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except PermissionError:
        print(f"guardctl: cannot write {path}: permission denied; a system unit needs root: "
              f"sudo {sys.executable} -m guard.cli install-service --systemd --config "
              f"{cfg.file}   (or --user for a user unit)", file=sys.stderr)
        return 1
    _own_folders(cfg, user)
    print(f"wrote {path}")
    print(f"  runs {sys.executable} -m guard.cli run --config {cfg.file} --wait-for-store"
          + (f" as {user}" if user else ""))
    steps = units.commands(args.user, getpass.getuser() if args.user else None)
    if not args.enable:
        print("to start it now and at every boot:")
        for step in steps:
            print("  " + ("" if args.user else "sudo ") + " ".join(step))
        return 0
    for step in steps:
        print("+ " + " ".join(step))
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"guardctl: `{' '.join(step)}` failed ({done.returncode}): "
                  f"{(done.stderr or done.stdout).strip()}", file=sys.stderr)
            return 1
    print(f"enabled and started; `guardctl status` shows it, "
          f"`journalctl {'--user ' if args.user else ''}-u {units.SERVICE_NAME}` its log")
    return 0


def _install_task(args: argparse.Namespace, run: Run = subprocess.run,
                  platform: str = sys.platform) -> int:
    if platform != "win32":
        print("guardctl: the logon task is for Windows; on Linux use --systemd",
              file=sys.stderr)
        return 2
    cfg = _service_config(args, None)
    return register_task(cfg, run)


def register_task(cfg: Config, run: Run = subprocess.run) -> int:
    """Write the task's XML into the state folder and register it with schtasks."""
    spec = logontask.TaskSpec(
        pythonw=windowless(interpreter(), "win32"), config=str(cfg.file),
        user=windows_user(os.environ), workdir=str(cfg.state_dir))
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    xml_path = cfg.state_dir / f"{logontask.TASK_NAME}.task.xml"
    xml_path.write_bytes(logontask.encode(logontask.render(spec)))
    done = run(logontask.create_command(str(xml_path)), capture_output=True, text=True)
    if done.returncode != 0:
        print(f"guardctl: schtasks could not register the task: "
              f"{(done.stderr or done.stdout).strip()} (its definition: {xml_path})",
              file=sys.stderr)
        return 1
    print(f"registered the logon task {logontask.TASK_NAME}: at each logon of {spec.user} it "
          f"runs {spec.pythonw} {subprocess.list2cmdline(logontask.arguments(spec))}")
    print(f"  start it now:  {' '.join(logontask.run_command())}")
    print("  stop it:       guardctl stop   (the daemon ends its server first; Task "
          "Scheduler's End would not)")
    print(f"  see it:        {' '.join(logontask.query_command())}   and guardctl status")
    print("  remove it:     guardctl uninstall-service --windows")
    return 0


def windows_user(environ: Mapping[str, str]) -> str:
    """DOMAIN\\name of the user running guardctl (a logon task is for that user)."""
    name = environ.get("USERNAME") or getpass.getuser()
    domain = environ.get("USERDOMAIN") or environ.get("COMPUTERNAME")
    return f"{domain}\\{name}" if domain else name


def _install_windows_service(args: argparse.Namespace) -> int:
    try:
        from windows_service import install
    except ImportError as exc:
        hint = "" if sys.platform == "win32" else "; on Linux use --systemd"
        print(f"guardctl: the Windows service needs pywin32 ({exc}): run `pip install "
              f"mlflow-sync-guard[windows]` (or `pip install pywin32`) on Windows{hint}",
              file=sys.stderr)
        return 2
    cfg = _service_config(args, None)
    return install.install(cfg, args.account)
