"""Facts about the Python and the OS the guard runs on, as pure functions over plain data.

Why these need care:
- Under pywin32's service host `sys.executable` is `pythonservice.exe`, which cannot run
  `-m mlflow server`; CPython's own multiprocessing.spawn special-cases the same name. The
  environment's real interpreter is `python.exe` in the prefix (a venv keeps it in Scripts\\).
- A logon task must start without a console window: `pythonw.exe` beside `python.exe`.
- WSL and the Windows side of one PC report the same host name; two guards on one PC with one
  `host_id` would take each other's locks and heartbeats for their own.
"""

from __future__ import annotations

import ntpath
import os
import re
import socket
import sys
from collections.abc import Callable, Mapping

SERVICE_HOSTS = ("pythonservice.exe", "pythonservice_d.exe")


def real_interpreter(executable: str, exec_prefix: str, platform: str,
                     isfile: Callable[[str], bool] | None = None) -> str:
    """The interpreter that can run `-m mlflow` for this environment: `executable` itself,
    except under a Windows service host (pythonservice.exe), where it is the prefix's
    python.exe (a venv's Scripts\\python.exe first)."""
    if platform != "win32" or ntpath.basename(executable).lower() not in SERVICE_HOSTS:
        return executable
    isfile = isfile or os.path.isfile
    debug = "_d" if ntpath.basename(executable).lower().endswith("_d.exe") else ""
    candidates = [ntpath.join(exec_prefix, "Scripts", f"python{debug}.exe"),
                  ntpath.join(exec_prefix, f"python{debug}.exe")]
    for candidate in candidates:
        if isfile(candidate):
            return candidate
    raise FileNotFoundError(f"no python.exe in {exec_prefix} (looked for "
                            f"{' and '.join(candidates)}): the service host {executable} "
                            "cannot run mlflow itself; reinstall the environment")


def windowless(python: str, platform: str,
               isfile: Callable[[str], bool] | None = None) -> str:
    """The same environment's interpreter without a console window (pythonw.exe), for a
    program started at logon; unchanged off Windows or when there is no pythonw.exe."""
    if platform != "win32":
        return python
    isfile = isfile or os.path.isfile
    folder, name = ntpath.split(python)
    if name.lower() in ("python.exe", "python_d.exe"):
        candidate = ntpath.join(folder, name[:6] + "w" + name[6:])
        if isfile(candidate):
            return candidate
    return python


def interpreter() -> str:
    """This process's real interpreter (see real_interpreter)."""
    return real_interpreter(sys.executable, sys.exec_prefix, sys.platform)


def wsl_distro(environ: Mapping[str, str], osrelease: str) -> str | None:
    """The WSL distribution this Linux runs in (None outside WSL). WSL sets WSL_DISTRO_NAME
    in every shell; a service started without it still has "microsoft" in the kernel's
    release string."""
    name = environ.get("WSL_DISTRO_NAME", "").strip()
    if name:
        return name
    if "microsoft" in osrelease.lower():
        return "wsl"
    return None


def default_host_id(hostname: str, wsl: str | None) -> str:
    """A valid host_id from the machine's name; under WSL with '-wsl-<distro>' appended
    (kept within 64 characters), so the Linux and Windows guards of one PC differ."""
    def clean(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9._-]", "-", text).strip("-.")

    name = clean(hostname) or "host"
    if wsl is None:
        return name[:64]
    suffix = "-wsl" if wsl == "wsl" else "-wsl-" + (clean(wsl) or "wsl")
    suffix = suffix[:32]
    return name[:64 - len(suffix)].rstrip("-.") + suffix


def this_host_id() -> str:
    """default_host_id for this machine."""
    osrelease = ""
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/sys/kernel/osrelease", encoding="utf-8", errors="replace") as f:
                osrelease = f.read()
        except OSError:
            pass
    return default_host_id(socket.gethostname(), wsl_distro(os.environ, osrelease))

