"""The heartbeats part: this host's heartbeat published into the store every interval, the
other hosts' read, and a host_id shared by two machines noticed. peers.py decides; this part
does the reading and writing, ticked by the daemon's loop."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from guard.core.parts import TickPart
from guard.core.records import key
from guard.core.store import inspect_store
from guard.sync import peers

log = logging.getLogger("guard.daemon")


def clash_warning(found: peers.Heartbeat | None, mine: peers.Heartbeat | None,
                  copies: list[str], host_id: str) -> str | None:
    """Why this host's host_id looks shared with another machine, or None (pure): our own
    heartbeat file rewritten by someone else, or the sync client's conflict copies of it."""
    clash = peers.clash(found, mine)
    if copies and not clash:
        clash = (f"the sync client made conflict copies of this host's heartbeat "
                 f"({copies[0]}): another machine also uses host_id "
                 f"'{host_id}'; give each machine its own host_id in its config")
    return clash


@dataclass(frozen=True)
class PeerReport:
    """The heartbeats' figures: the other hosts as seen now, a version warning, a host_id
    clash (the "peers" section of the status)."""

    hosts: tuple[peers.PeerView, ...] = field(default=(), metadata=key("list"))
    clash: str | None = None
    warning: str | None = None
    error: str | None = None


class Heartbeats(TickPart):
    """Publishes `mine` (with the time and state filled in) every `mine.interval` seconds and
    keeps `report`: the other hosts as seen now, a version warning and a host_id clash."""

    name = "peers"

    def __init__(self, store: Path, mine: peers.Heartbeat, stale_after: float) -> None:
        super().__init__(every=mine.interval)
        self.store = store
        self.mine = mine
        self.stale_after = stale_after
        self.last_beat: peers.Heartbeat | None = None
        self.report = PeerReport()

    def round(self, now: float) -> None:
        self.beat(now)

    def stop(self) -> None:
        """A last heartbeat saying "stopped", so peers see a clean stop at once (only once
        this part has run, and only into a store that is there)."""
        if self.ran and inspect_store(self.store).ok:
            self.beat(time.time(), state="stopped")

    def beat(self, now: float, state: str = "running") -> None:
        host_id = self.mine.host_id
        beat = replace(self.mine, last_seen=now, state=state)
        beats = peers.read_all(self.store)
        found = next((b for b in beats if b.host_id == host_id), None)
        try:
            copies = peers.clash_copies(os.listdir(peers.peers_dir(self.store)), host_id)
        except OSError:
            copies = []
        clash = clash_warning(found, self.last_beat, copies, host_id)
        if clash and clash != self.report.clash:
            log.error("%s", clash)
        try:
            peers.publish(self.store, beat)
            self.last_beat = beat
        except OSError as exc:
            log.warning("cannot publish the heartbeat into the store: %s", exc)
        views = peers.assess(beats, host_id, now, self.stale_after)
        self.report = PeerReport(tuple(views), clash,
                                 peers.version_warning(beat.mlflow_version, views))

    def hosts(self) -> list[str]:
        """This host and every host seen: whose conflict copies may appear in the store."""
        return [self.mine.host_id] + [p.host_id for p in self.report.hosts]

    def snapshot(self) -> PeerReport:
        return replace(self.report, error=self.error)
