"""How long a lease claim waits for the other claims to arrive: the sync delay as measured (pure).

leases.py's protocol needs the later of two claimers to see the earlier claim before it
decides; `locks.settle` is the worst sync delay a person expects (seconds to minutes), while a
healthy Syncthing delivers in about a second. Every heartbeat tells us how late the sync
brings that host's files: it arrived here (its file's ctime, our clock) `lag` seconds after
it was written (its last_seen, its clock). The lag of a host's heartbeat bounds the delay of
its lease files, which travel the same way (the same folder, the same sync client), up to the
clock difference: lag = delay + (our clock - its clock), so delay <= lag + skew.

The effective settle of a claim made now (`effective_settle`):

- this host announced (see below), no live peer (no running heartbeat of another host fresher
  than stale_after + skew): 0. Nobody else can hold or claim.
- live peers are those with a running heartbeat within max(stale_after, RECENT): a peer
  whose heartbeats arrive only every minute (Syncthing's default watcher delay holds back a
  file that keeps changing) must not look absent between arrivals.
- announced, live peers: MARGIN * (the highest lag seen from any live peer within the last
  RECENT seconds + skew) + EXTRA, clamped to [FLOOR, ceiling]; ceiling = `locks.settle`. A
  lag below -skew (a clock out of its bound) cannot be trusted: the ceiling. With a lag of
  1 s and skew 2 s that is 6.5 s; with clocks kept by NTP set locks.skew to 0.5: 3.5 s.
- not announced: at least until `beating_since + 2 * ceiling` (2 * ceiling without a series).

Announced: another host can only take our claim into account if it knows we exist. Our
heartbeat series (`Heartbeat.beating_since`: the first heartbeat written after a start, a
clean stop or a gap longer than `max_gap` = stale_after - ceiling) reaches every host within
the ceiling and, with gaps of at most max_gap, stays fresher than stale_after there. So from
beating_since + ceiling on, every host that claims sees us as a live peer and settles for our
lag. A host that just started, or comes back from a sleep, a crash or an unmounted store, is
not announced: a claim that another host made without seeing us and without settling for us
was written before beating_since + ceiling (later ones see our heartbeat), so it reaches us by
beating_since + 2 * ceiling; until then we settle, and a claim of that kind ranked after ours
may already have been taken unseen, so we wait for its outcome too (leases.decide_acquire,
`unannounced`). Without a heartbeat of our own (no daemon running, as for `guardctl gc` on a
machine whose daemon is stopped) the same holds with 2 * ceiling from the claim.

Assumptions, on top of leases.py's: the next sync delay from a host is at most MARGIN times
the longest delay seen from it within the last RECENT seconds, plus EXTRA (a sample's delay is
at most its lag + skew; for its latest heartbeat also how long its next one is overdue,
`Beat.behind`), lease files travelling like heartbeats; every host runs a guard
that follows this (an older guard announces nothing: a just-started old guard may claim
unseen). When they
break (a lag spike beyond the margin), two hosts may both hold; leases.py's step-down rule
picks one as soon as each sees the other's 'held' lease, exactly as for a sync delay beyond
locks.settle. The shell re-computes the settle at every look and keeps the highest value of a
claim, so a peer that appears or a lag that grows while we settle lengthens the wait.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

MARGIN = 2.0    # the next delay may be this many times (the highest recent lag + skew)
EXTRA = 0.5     # s: plus this much (the sync client's scan and write, our poll)
FLOOR = 1.0     # s: never less with a live peer (ceiling permitting)
RECENT = 600.0  # s: the lag samples that count
SLACK = 0.1     # s: file times are coarse (a heartbeat from this machine may "arrive" early)


@dataclass(frozen=True)
class Beat:
    """One heartbeat of a host as seen here: written on its clock, arrived on ours."""
    host_id: str
    written: float          # its last_seen
    arrived: float          # its file's ctime here (our clock)
    running: bool = True    # False after a clean stop
    since: float | None = None  # its beating_since: the start of its unbroken series
    interval: float = 0.0   # how often it writes one (0: unknown)

    @property
    def lag(self) -> float:
        return self.arrived - self.written

    def behind(self, now: float) -> float:
        """How far the sync is behind this host right now: it wrote a newer heartbeat
        `interval` after this one, which has not arrived by `now`. A sync client that holds
        back a file that keeps changing (Syncthing's watcher delay) shows here, not in `lag`:
        the version it finally sends is fresh, but a claim written meanwhile waited as long."""
        if self.interval <= 0:
            return self.lag
        return max(self.lag, now - self.written - self.interval)


@dataclass(frozen=True)
class Settle:
    seconds: float
    unannounced: bool   # our claim may be unseen: wait for every later claim's outcome too
    why: str


def announced_at(own: Beat | None, ceiling: float) -> float | None:
    """When our heartbeat series is known to every host (beating_since + ceiling), None when
    there is no current series (no heartbeat, a stopped one, or an older guard's)."""
    if own is None or not own.running or own.since is None:
        return None
    return own.since + ceiling


def effective_settle(beats: Iterable[Beat], me: str, now: float, ceiling: float,
                     stale_after: float, skew: float = 0.0, *, claimed_at: float | None = None,
                     max_gap: float | None = None, recent: float = RECENT) -> Settle:
    """The settle of our claim made at `claimed_at` (default now), as seen at `now`: seconds
    from the claim (see the module docstring). `beats`: heartbeats as seen here, several per
    host allowed (a host's latest says whether it is live, all that arrived within `recent`
    give lag samples); ours among them gives our series."""
    beats = list(beats)
    at = now if claimed_at is None else claimed_at
    gap = stale_after - ceiling if max_gap is None else max_gap
    latest: dict[str, Beat] = {}
    for beat in beats:
        if beat.host_id not in latest or beat.written > latest[beat.host_id].written:
            latest[beat.host_id] = beat
    own = latest.get(me)
    if own is not None and at - own.written > gap:
        own = None  # our series broke: the next heartbeat starts a new one
    known_at = announced_at(own, ceiling)
    unannounced = known_at is None or at < known_at
    alone = 2 * ceiling if known_at is None else max(0.0, known_at + ceiling - at)

    # A peer counts while any running heartbeat of it is recent, not only while it is fresher
    # than stale_after: a sync client that holds back a changing file can make a running peer
    # look stale between arrivals, and "no live peer" must never be such a gap.
    live = {h: b for h, b in latest.items()
            if h != me and b.running and now <= b.written + max(stale_after, recent) + skew}
    samples = [b for b in beats if b.host_id in live and b.arrived >= now - recent]
    samples += [live[h] for h in live if not any(b.host_id == h for b in samples)]
    if not live:
        measured, why = 0.0, "no live peer"
    elif any(b.lag < -skew - SLACK or not math.isfinite(b.lag) for b in samples):
        measured = ceiling
        why = "a peer's heartbeat arrived before it was written: its clock is off by more " \
              "than locks.skew, so its lag says nothing"
    else:
        delay = {b: b.behind(now) if b is live[b.host_id] else b.lag for b in samples}
        top = max(samples, key=lambda b: (delay[b], b.host_id))
        measured = min(ceiling, max(FLOOR, MARGIN * max(0.0, delay[top] + skew) + EXTRA))
        why = f"highest recent lag {delay[top]:.1f} s ({top.host_id})"
    if unannounced:
        what = ("no current heartbeat of this host" if known_at is None
                else "this host's heartbeat may not have reached the others yet")
        return Settle(max(alone, measured), True, f"{what}; {why}")
    return Settle(measured, False, why)
