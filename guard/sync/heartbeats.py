"""The heartbeats part: this host's heartbeat published into the store every interval, the
other hosts' read, and a host_id shared by two machines noticed. peers.py decides; this part
does the reading and writing, ticked by the daemon's loop."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from guard.core import tempfiles
from guard.core.layout import COORDINATION
from guard.core.parts import TickPart
from guard.core.records import key
from guard.core.store import inspect_store
from guard.core.writefaults import hold_reason, retry_delay
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


def series_start(last: peers.Heartbeat | None, now: float, max_gap: float) -> float:
    """`beating_since` for a heartbeat written now (pure): the previous one's, unless there
    was none, it said stopped, or it is older than max_gap (the others may have written this
    host off meanwhile: a new series starts, and settle.py waits until it is known)."""
    if last is None or last.state != "running" or last.beating_since is None \
            or now - last.last_seen > max_gap:
        return now
    return last.beating_since


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

    def __init__(self, store: Path, mine: peers.Heartbeat, stale_after: float,
                 max_gap: float | None = None, settle: float = float("inf")) -> None:
        """max_gap: a longer pause between two heartbeats starts a new series
        (stale_after - locks.settle; one interval when not given). settle: locks.settle,
        the sync delay the locks allow (peers.slow_sync_warning)."""
        super().__init__(every=mine.interval)
        self.store = store
        self.mine = mine
        self.stale_after = stale_after
        self.max_gap = mine.interval if max_gap is None else max_gap
        self.last_beat: peers.Heartbeat | None = None
        self.report = PeerReport()
        self.refused = 0      # refused writes in a row while held
        self.retry_at = 0.0   # when a held part tries to write again
        self.swept = False    # the coordination folder's stale temp files, once at start
        self.settle = settle
        self.seen: dict[str, float] = {}  # each host's newest last_seen seen here
        self.jumps: list[tuple[float, str, float, float]] = []  # peers.slow_sync_warning's

    def round(self, now: float) -> None:
        if not self.swept:  # at start: what a killed daemon left in the coordination folder
            self.swept = True
            tempfiles.sweep(self.store / COORDINATION, now, recursive=True)
        self.beat(now)

    def stop(self) -> None:
        """A last heartbeat saying "stopped", so peers see a clean stop at once (only once
        this part has run, and only into a store that is there)."""
        if self.ran and inspect_store(self.store).ok:
            self.beat(time.time(), state="stopped")

    def beat(self, now: float, state: str = "running") -> None:
        host_id = self.mine.host_id
        beat = replace(self.mine, last_seen=now, state=state,
                       beating_since=series_start(self.last_beat, now, self.max_gap))
        beats = peers.read_all(self.store)
        found = next((b for b in beats if b.host_id == host_id), None)
        try:
            copies = peers.clash_copies(os.listdir(peers.peers_dir(self.store)), host_id)
        except OSError:
            copies = []
        clash = clash_warning(found, self.last_beat, copies, host_id)
        if clash and clash != self.report.clash:
            log.error("%s", clash)
        self.publish(beat, now)
        views = peers.assess(beats, host_id, now, self.stale_after)
        self._note_arrivals(beats, host_id, now)
        warnings = [w for w in (peers.version_warning(beat.mlflow_version, views),
                                peers.slow_sync_warning(self.jumps, now, self.settle)) if w]
        self.report = PeerReport(tuple(views), clash, "; ".join(warnings) or None)

    def _note_arrivals(self, beats: list[peers.Heartbeat], me: str, now: float) -> None:
        for b in beats:
            previous = self.seen.get(b.host_id)
            if b.host_id == me or b.state != "running" or (previous is not None
                                                           and b.last_seen <= previous):
                continue
            if previous is not None:
                self.jumps.append((now, b.host_id, b.last_seen - previous, b.interval))
            self.seen[b.host_id] = b.last_seen
        self.jumps = [j for j in self.jumps if j[0] >= now - peers.SLOW_WINDOW]

    def publish(self, beat: peers.Heartbeat, now: float) -> None:
        """Write the heartbeat, unless a refused write holds the part and its retry is not due
        (a last "stopped" beat is always tried). A full, read-only or unwritable store holds
        the part with the reason; the first write that works again clears it."""
        if self.held is not None and now < self.retry_at and beat.state == "running":
            return
        try:
            peers.publish(self.store, beat)
        except OSError as exc:
            reason = hold_reason(exc, "store")
            if reason is None:
                log.warning("cannot publish the heartbeat into the store: %s", exc)
                return
            self.refused += 1
            self.retry_at = now + retry_delay(self.refused)
            if reason != self.held:
                log.warning("heartbeats held: %s", reason)
            self.held = reason
            return
        if self.held is not None:
            log.info("heartbeats resume: the store accepts writes again")
        self.held = None
        self.refused = 0
        self.last_beat = beat

    def hosts(self) -> list[str]:
        """This host and every host seen: whose conflict copies may appear in the store."""
        return [self.mine.host_id] + [p.host_id for p in self.report.hosts]

    def snapshot(self) -> PeerReport:
        return replace(self.report, error=self.error)
