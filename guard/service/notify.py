"""systemd's notify protocol (sd_notify): datagrams to $NOTIFY_SOCKET, nothing else.

The protocol is a few lines of text on a unix socket, so no libsystemd binding is needed; a
missing NOTIFY_SOCKET (not started by systemd with Type=notify) makes every call a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

from guard.service.readiness import Advice

log = logging.getLogger("guard.notify")

DEFAULT_EVERY = 10.0      # liveness interval when systemd asks for no watchdog
EXTEND_FACTOR = 3         # a start-timeout extension covers this many intervals


class SystemdNotifier:
    """Sends readiness, watchdog pings, start-timeout extensions and status to systemd."""

    def __init__(self, address: str, watchdog_usec: int | None) -> None:
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_usec = watchdog_usec
        # systemd's advice: ping at half the watchdog timeout.
        self.every = watchdog_usec / 2e6 if watchdog_usec else DEFAULT_EVERY

    def send(self, advice: Advice) -> None:
        lines = []
        if advice.ready:
            lines.append("READY=1")
        if advice.watchdog:
            lines.append("WATCHDOG=1")
        if advice.extend:
            lines.append(f"EXTEND_TIMEOUT_USEC={int(self.every * EXTEND_FACTOR * 1e6)}")
        if advice.stopping:
            lines.append("STOPPING=1")
        if advice.status is not None:
            lines.append("STATUS=" + advice.status.replace("\n", " ")[:200])
        if lines:
            self.notify("\n".join(lines))

    def notify(self, text: str) -> None:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self.address)
                sock.sendall(text.encode("utf-8"))
        except OSError as exc:
            log.warning("cannot notify systemd at %s: %s", self.address.lstrip("\0"), exc)


def from_environment(env: Mapping[str, str] | None = None,
                     pid: int | None = None) -> SystemdNotifier | None:
    """The notifier systemd asked for, or None outside a Type=notify unit."""
    env = os.environ if env is None else env
    address = env.get("NOTIFY_SOCKET")
    if not address:
        return None
    usec = None
    watchdog_pid = env.get("WATCHDOG_PID")
    if env.get("WATCHDOG_USEC", "").isdigit() and (
            not watchdog_pid or watchdog_pid == str(pid if pid is not None else os.getpid())):
        usec = int(env["WATCHDOG_USEC"]) or None
    return SystemdNotifier(address, usec)
