"""Who can reach the server: the doctor's view of exposure (issue 13).

The server's API can delete runs, experiments and models, and MLflow's own server has no
authentication. load_config already refuses a configured bind beyond loopback without
`server.auth: basic` and `server.expose: true` (guard.core.config.exposure_problem); this
module looks at what is actually listening, because a hand-started server, or one started
from another configuration, can be exposed whatever this config file says.

The decisions are pure functions over Bind and ExposureFacts; `gather_binds` is the shell.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import psutil

from guard.core.config import SERVER_AUTH_ENV, ServerAuth, exposure_problem, is_loopback

OK, WARN, FAIL = "ok", "warn", "fail"  # the doctor's levels

FIX_BIND = ("end that server (`guardctl stop` for the guard's own) and serve this machine "
            "only (server.host: 127.0.0.1), or serve other machines with server.auth: basic "
            "and server.expose: true")


@dataclass(frozen=True)
class Bind:
    """One listening socket of an MLflow server over the store."""
    pid: int
    address: str  # the local address it listens on: 0.0.0.0, ::, 127.0.0.1...
    port: int
    auth: bool | None  # whether the server asks for credentials; None: cannot tell
    command: str = ""


@dataclass(frozen=True)
class ExposureFacts:
    host: str  # server.host
    expose: bool  # server.expose
    auth: ServerAuth  # server.auth
    binds: tuple[Bind, ...] = ()  # MLflow servers over this store listening now


def server_auth(cmdline: Sequence[str], env: Mapping[str, str] | None) -> bool | None:
    """Whether a server process asks for credentials: MLflow's basic-auth app (by name or by
    its factory on a uvicorn command line), or the guard's app told to compose it. None when
    its environment could not be read and the command line does not say."""
    text = " ".join(cmdline)
    if "basic-auth" in text or "mlflow.server.auth" in text:
        return True
    if env is None:
        return None
    return env.get(SERVER_AUTH_ENV) == ServerAuth.BASIC


def exposed(bind: Bind) -> bool:
    return not is_loopback(bind.address)


def verdict(f: ExposureFacts) -> tuple[str, str, str]:
    """(level, detail, fix) of the exposure check."""
    def named(b: Bind) -> str:
        return f"pid {b.pid} ({b.command[:120] or 'command not visible'}) on {b.address}:{b.port}"

    open_binds = [b for b in f.binds if exposed(b) and b.auth is False]
    if open_binds:
        return (FAIL, "; ".join(named(b) for b in open_binds) + " listens beyond loopback "
                "without authentication: anyone on the network can delete runs, experiments "
                "and models through it", FIX_BIND)
    problem = exposure_problem(f.host, f.expose, f.auth)
    if problem is not None:
        return FAIL, problem, "change the config file as the message says"
    unknown = [b for b in f.binds if exposed(b) and b.auth is None]
    if unknown:
        return (WARN, "; ".join(named(b) for b in unknown) + " listens beyond loopback and "
                "this user cannot tell whether it asks for credentials",
                "run `guardctl doctor` as the server's user, or " + FIX_BIND)
    if not is_loopback(f.host):
        return (OK, f"server.host {f.host} serves other machines (server.expose: true), "
                    "behind MLflow's basic auth (server.auth: basic)", "")
    auth = ", basic auth" if f.auth == ServerAuth.BASIC else ""
    return OK, f"server.host {f.host}: this machine only{auth}", ""


# ---- the shell ------------------------------------------------------------------------------

def gather_binds(pids: Iterable[int]) -> tuple[Bind, ...]:
    """The listening sockets of these processes, with whether each one asks for credentials."""
    out: list[Bind] = []
    for pid in sorted(set(pids)):
        try:
            proc = psutil.Process(pid)
            conns = [c for c in proc.net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN and c.laddr]
            if not conns:
                continue
            cmdline = tuple(proc.cmdline())
            env: dict[str, str] | None
            try:
                env = proc.environ()
            except (psutil.AccessDenied, OSError):
                env = None
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied, OSError):
            continue
        auth = server_auth(cmdline, env)
        out.extend(Bind(pid, c.laddr.ip, c.laddr.port, auth, " ".join(cmdline)) for c in conns)
    return tuple(out)
