"""Cross-machine leases over a synced folder: the pure decisions, with plain float times.

The tables pin single decisions; the scenarios replay two hosts step by step; the last part
simulates 2-3 hosts whose files reach each other after random delays (at most `settle`), with
skewed clocks and hosts that pause, and checks that no two ever hold the lock at once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

import pytest

from guard.sync.leases import (
    CLAIM,
    CLAIMING,
    HELD,
    HOLD,
    QUEUE,
    SETTLE,
    TAKE,
    WAIT,
    WAITING,
    WITHDRAW,
    Lease,
    claim,
    decide_acquire,
    describe,
    expired,
    holding,
    live,
    must_step_down,
    queue,
    release,
    renew,
    renew_due,
    resource_name,
    take,
    winner,
)
from guard.sync.settle import Beat, effective_settle

RES = "store"
S = 5.0        # settle: the worst sync delay
TTL = 30.0
STALE = 15.0   # heartbeat staleness threshold
SKEW = 2.0


def test_resource_names_are_single_safe_file_names():
    assert resource_name("model", "churn") == "model-churn"
    hostile = resource_name("model", "../../etc/passwd\\x:y")
    assert "/" not in hostile and "\\" not in hostile and ":" not in hostile
    assert len(resource_name("model", "a" * 500)) <= 200


def lease(host: str, claimed_at: float = 0.0, *, state: str = HELD, renewed_at: float | None = None,
          expires_at: float | None = None, released: bool = False, token: str | None = None,
          resource: str = RES) -> Lease:
    renewed = claimed_at if renewed_at is None else renewed_at
    return Lease(resource, host, claimed_at, renewed,
                 renewed + TTL if expires_at is None else expires_at,
                 token or f"{host}-{claimed_at:g}", state, released)


def decide(mine, visible, me, now, heartbeats=None, skew=SKEW):
    return decide_acquire(mine, visible, me, now, S, heartbeats, STALE, skew)


# --- live ---------------------------------------------------------------------------------

@pytest.mark.parametrize("rec, now, beats, me, alive, why", [
    (lease("b", 0), 10.0, {}, None, True, "live"),
    (lease("b", 0, released=True), 10.0, {}, None, False, "released"),
    (lease("b", 0), 30.0, {}, None, True, "live"),                 # at expires_at
    (lease("b", 0), 31.5, {}, None, True, "live"),                 # within skew
    (lease("b", 0), 32.0, {}, None, True, "live"),                 # at expires_at + skew
    (lease("b", 0), 32.5, {}, None, False, "expired 2s ago"),
    (lease("a", 0), 31.0, {}, "a", False, "expired"),              # our own: no skew
    (lease("b", 0), 10.0, {"b": 9.0}, None, True, "live"),
    (lease("b", 0), 20.0, {"b": 3.0}, None, True, "live"),         # 17 s old: within 15 + 2
    (lease("b", 0), 20.5, {"b": 3.0}, None, False, "heartbeat of b is 17s old"),
    (lease("b", 0), 20.0, {"c": 0.0}, None, True, "live"),         # no heartbeat seen: expiry only
    (lease("a", 0), 19.0, {"a": 3.0}, "a", False, "our own heartbeat"),  # we slept
])
def test_live_table(rec, now, beats, me, alive, why):
    got = live(rec, now, beats, STALE, SKEW, me=me)
    assert bool(got) is alive and got.alive is alive
    assert why in got.why


def test_live_until_is_the_earlier_of_expiry_and_heartbeat():
    assert live(lease("b", 0), 5.0, {}, STALE, SKEW).until == 32.0
    assert live(lease("b", 0), 5.0, {"b": 4.0}, STALE, SKEW).until == 21.0
    assert live(lease("a", 0), 5.0, {}, STALE, SKEW, me="a").until == 30.0


# --- decide_acquire: one decision each -----------------------------------------------------

@pytest.mark.parametrize("visible, beats, now, action, until, other", [
    ([], {}, 100.0, CLAIM, None, None),
    ([lease("b", 90)], {"b": 99.0}, 100.0, QUEUE, 116.0, "b"),           # heartbeat bounds it
    ([lease("b", 90)], {}, 100.0, QUEUE, 122.0, "b"),                    # expires_at + skew
    ([lease("b", 50)], {}, 100.0, CLAIM, None, None),                    # expired
    ([lease("b", 90)], {"b": 80.0}, 100.0, CLAIM, None, None),           # heartbeat stale
    ([lease("b", 90, released=True)], {}, 100.0, CLAIM, None, None),     # released
    ([lease("b", 98, state=CLAIMING)], {}, 100.0, QUEUE, 103.0, "b"),    # claim: its settle end
    ([lease("a", 95)], {}, 100.0, CLAIM, None, None),                    # our own old file
    ([lease("b", 50), lease("c", 90)], {}, 100.0, QUEUE, 122.0, "c"),    # one dead, one live
])
def test_decide_without_a_lease_of_ours(visible, beats, now, action, until, other):
    d = decide(None, visible, "a", now, beats)
    assert (d.action, d.until, d.other) == (action, until, other)
    if other:
        assert other in d.why


def test_wait_names_the_holder_rather_than_a_claimant():
    d = decide(None, [lease("c", 99, state=CLAIMING), lease("b", 90)], "a", 100.0)
    assert (d.action, d.other) == (QUEUE, "b") and "b holds store" in d.why


def test_our_claim_before_settle_keeps_settling():
    mine = lease("a", 100, state=CLAIMING)
    d = decide(mine, [mine], "a", 103.0)
    assert (d.action, d.until) == (SETTLE, 105.0)
    d = decide(mine, [mine, lease("b", 99, state=CLAIMING)], "a", 104.9)
    assert d.action == SETTLE  # an earlier claim may still withdraw: decide after settle


def test_our_claim_after_settle_alone_is_taken():
    mine = lease("a", 100, state=CLAIMING)
    assert decide(mine, [], "a", 105.0).action == TAKE


def test_a_foreign_held_lease_beats_an_earlier_claim():
    mine = lease("a", 100, state=CLAIMING)
    theirs = lease("b", 101)  # took without seeing us: the sync was slower than settle
    assert winner([mine, theirs], 106.0) == theirs
    for now in (102.0, 106.0):  # withdraw at once, even while settling
        d = decide(mine, [theirs], "a", now)
        assert (d.action, d.other) == (WITHDRAW, "b") and "b holds" in d.why


def test_skew_keeps_a_just_expired_foreign_lease_live():
    theirs = lease("b", 0, renewed_at=70, expires_at=100)
    assert decide(None, [theirs], "a", 101.0).action == QUEUE
    assert decide(None, [theirs], "a", 102.0).action == QUEUE
    assert decide(None, [theirs], "a", 102.5).action == CLAIM
    assert decide(None, [theirs], "a", 100.5, skew=0.0).action == CLAIM


def test_our_lapsed_hold_is_withdrawn_then_claimed_afresh():
    mine = lease("a", 0, renewed_at=60, expires_at=90)
    d = decide(mine, [lease("b", 80)], "a", 91.0)
    assert d.action == WITHDRAW and "our held lease lapsed (expired" in d.why
    gone = release(mine, 91.0)
    assert (decide(gone, [lease("b", 80)], "a", 91.5).action,
            decide(gone, [], "a", 91.5).action) == (QUEUE, CLAIM)


def test_after_a_sleep_longer_than_stale_after_our_hold_lapses_for_good():
    mine = lease("a", 0, renewed_at=60, expires_at=90)
    assert decide(mine, [], "a", 70.0, {"a": 60.0}).action == HOLD
    d = decide(mine, [], "a", 76.0, {"a": 60.0})  # others may have written us off at 75 + skew
    assert d.action == WITHDRAW and "our own heartbeat" in d.why
    # had we kept the record, the next heartbeat would revive it: that is why it is withdrawn
    assert decide(mine, [], "a", 76.5, {"a": 76.0}).action == HOLD


def test_hold_reports_the_lapse_time_and_ignores_claims():
    mine = lease("a", 0, renewed_at=60, expires_at=90)
    d = decide(mine, [lease("b", 70, state=CLAIMING)], "a", 70.0, {"a": 69.0})
    assert (d.action, d.until, d.other) == (HOLD, 84.0, None)


def test_a_released_claim_of_ours_starts_over():
    mine = lease("a", 0, state=CLAIMING, released=True)
    assert decide(mine, [], "a", 10.0).action == CLAIM
    assert decide(mine, [lease("b", 1)], "a", 10.0).action == QUEUE


def test_leases_of_another_resource_are_refused():
    with pytest.raises(ValueError):
        decide(lease("a", 0, state=CLAIMING), [lease("b", 0, resource="other")], "a", 10.0)
    with pytest.raises(ValueError):
        decide(lease("b", 0), [], "a", 10.0)  # not our lease


# --- two claims: every host picks the same winner -------------------------------------------

@pytest.mark.parametrize("a_at, b_at, a_token, b_token, expected", [
    (100.0, 100.4, "t1", "t2", "a"),   # earliest claimed_at
    (100.4, 100.0, "t1", "t2", "b"),
    (100.0, 100.0, "t2", "t1", "a"),   # tie: host_id order ('a' < 'b'), tokens don't matter
])
def test_two_simultaneous_claims_after_settle_agree(a_at, b_at, a_token, b_token, expected):
    a = lease("a", a_at, state=CLAIMING, token=a_token)
    b = lease("b", b_at, state=CLAIMING, token=b_token)
    mine = {"a": a, "b": b}
    loser = "b" if expected == "a" else "a"
    now = max(a_at, b_at) + S
    assert winner([a, b], now) == winner([b, a], now)
    assert winner([a, b], now).host_id == expected
    # same clock on both hosts (skew 0): one takes, the other withdraws, both at once
    got = {h: decide(mine[h], [a, b], h, now, skew=0.0) for h in "ab"}
    assert {h: d.action for h, d in got.items()} == {expected: TAKE, loser: WITHDRAW}
    assert got[loser].other == expected and expected in got[loser].why
    # claims less than `skew` apart: the loser still withdraws, and the winner takes only once
    # it sees that (the other claim may really have been the older one)
    got = {h: decide(mine[h], [a, b], h, now) for h in "ab"}
    assert {h: d.action for h, d in got.items()} == {expected: SETTLE, loser: WITHDRAW}
    assert got[expected].until == mine[loser].claimed_at + 2 * S + SKEW
    gone = release(mine[loser], now)
    assert decide(mine[expected], [gone], expected, now + 1).action == TAKE


def test_tie_on_time_and_host_is_broken_by_token():
    one, two = lease("a", 5, state=CLAIMING, token="x1"), lease("a", 5, state=CLAIMING, token="x0")
    assert winner([one, two], 6.0) == two


def test_among_held_leases_the_earliest_claim_wins_and_dead_ones_do_not_count():
    old, new = lease("b", 10), lease("c", 12)
    assert winner([new, old], 20.0) == old
    assert winner([new, replace(old, released=True)], 20.0) == new
    assert winner([], 20.0) is None


def test_winner_waits_for_a_later_ranked_claim_that_may_have_taken_unseen():
    """Clocks: a runs 1 s ahead, b 1 s behind (skew 2). Real time 0: a claims (claimed_at 1);
    real 0.5: b claims (claimed_at -0.5) before a's file arrived. Real 5: a decides without
    having seen b's claim and takes. Real 5.5: b sees a's claim but not yet the 'held'
    version; by claimed_at b ranks first, yet a may have taken: b must wait for a's outcome."""
    a_claim = claim(RES, "a", 1.0, TTL, "ta")
    b_claim = claim(RES, "b", -0.5, TTL, "tb")
    assert decide(a_claim, [a_claim], "a", 6.0).action == TAKE
    a_held = take(a_claim, 6.0, TTL)
    d = decide(b_claim, [b_claim, a_claim], "b", 4.5)
    assert (d.action, d.other) == (SETTLE, "a") and "outcome" in d.why
    assert d.until == 1.0 + 2 * S + SKEW
    assert decide(b_claim, [a_held], "b", 6.0).action == WITHDRAW
    assert decide(b_claim, [release(a_claim, 6.0)], "b", 6.0).action == TAKE  # a withdrew
    # without skew the same records mean a claimed later and b simply takes
    assert decide(b_claim, [a_claim], "b", 4.5, skew=0.0).action == TAKE


def test_a_later_claim_still_settling_does_not_hold_up_the_winner():
    mine = lease("a", 100, state=CLAIMING)
    theirs = lease("b", 103, state=CLAIMING)  # it will decide after us and see our claim
    d = decide(mine, [theirs], "a", 105.0)
    assert d.action == TAKE and "before b" in d.why


# --- two 'held' leases: the loser steps down ----------------------------------------------

def test_must_step_down_when_two_held_leases_are_visible():
    a, b = lease("a", 10, renewed_at=40), lease("b", 12, renewed_at=40)
    assert must_step_down(b, [a, b], 45.0, {}, STALE, SKEW) == a
    assert must_step_down(a, [a, b], 45.0, {}, STALE, SKEW) is None
    db, da = decide(b, [a, b], "b", 45.0), decide(a, [a, b], "a", 45.0)
    assert (db.action, db.other) == (WITHDRAW, "a") and "step down" in db.why
    assert (da.action, da.other) == (HOLD, "b") and "b must step down" in da.why


def test_no_step_down_for_claims_dead_leases_or_when_not_holding():
    a = lease("a", 10, renewed_at=40)
    assert must_step_down(a, [lease("b", 5, state=CLAIMING)], 45.0) is None
    assert must_step_down(a, [lease("b", 5, expires_at=41)], 45.0, skew=SKEW) is None
    assert must_step_down(lease("a", 10, state=CLAIMING), [lease("b", 5)], 45.0) is None
    assert must_step_down(None, [lease("b", 5)], 45.0) is None


# --- expired, renew_due, describe -----------------------------------------------------------

def test_expired_lists_the_foreign_leases_that_no_longer_count():
    recs = [lease("a", 0, expires_at=1),                        # ours: never listed
            lease("b", 0, expires_at=10),                       # expired
            lease("c", 90, released=True),                      # released
            lease("d", 90),                                     # heartbeat stale
            lease("e", 90)]                                     # live
    dead = expired(recs, 100.0, {"d": 50.0, "e": 99.0}, STALE, SKEW, me="a")
    assert [(x.lease.host_id, x.why.split()[0]) for x in dead] == [
        ("b", "expired"), ("c", "released"), ("d", "heartbeat")]


@pytest.mark.parametrize("rec, now, due", [
    (lease("a", 0, renewed_at=50), 59.9, False),
    (lease("a", 0, renewed_at=50), 60.0, True),
    (lease("a", 0, renewed_at=50, state=CLAIMING), 61.0, True),
    (lease("a", 0, renewed_at=50, released=True), 99.0, False),
])
def test_renew_due(rec, now, due):
    assert renew_due(rec, now, 10.0) is due


def test_describe_names_host_and_times():
    text = describe(lease("laptop-b", 1000, renewed_at=1100, expires_at=1130), 1125.0)
    assert text == ("store: held by laptop-b, claimed 2m 05s ago, renewed 25s ago, "
                    "expires in 5s")
    text = describe(lease("gpu-1", 1000, state=CLAIMING), 1003.0)
    assert "claimed by gpu-1 3s ago (settling)" in text and "expires in 27s" in text
    assert "expired 1h 00m ago" in describe(lease("x", 0, expires_at=10), 3610.0)
    assert describe(lease("x", 0, renewed_at=5, released=True), 65.0) == \
        "store: released by x 1m 00s ago"


def test_records_move_forward_and_keep_claimed_at():
    c = claim(RES, "a", 10.0, TTL, "tok")
    assert (c.state, c.claimed_at, c.expires_at, c.released) == (CLAIMING, 10.0, 40.0, False)
    h = take(c, 15.0, TTL)
    assert (h.state, h.claimed_at, h.renewed_at, h.expires_at) == (HELD, 10.0, 15.0, 45.0)
    r = renew(h, 25.0, TTL)
    assert (r.claimed_at, r.renewed_at, r.expires_at, r.token) == (10.0, 25.0, 55.0, "tok")
    assert holding(r, 55.0) and not holding(r, 55.1) and not holding(c, 12.0)
    assert not holding(release(r, 30.0), 31.0) and not holding(None, 0.0)


# --- the whole protocol, two hosts, step by step --------------------------------------------

def test_two_hosts_hand_the_lock_over():
    # a claims; b looks 2 s later, before a's file arrived, and claims too
    a = claim(RES, "a", 0.0, TTL, "a1")
    assert decide(None, [], "a", 0.0).action == CLAIM
    assert decide(None, [], "b", 2.0).action == CLAIM
    b = claim(RES, "b", 2.0, TTL, "b1")
    assert decide(a, [a], "a", 3.0).action == SETTLE          # b's claim not there yet
    assert decide(a, [a, b], "a", 5.0).action == TAKE         # it arrived: ours is earlier
    a = take(a, 5.0, TTL)
    assert decide(b, [b, a], "b", 7.0).action == WITHDRAW
    b = release(b, 7.0)
    d = decide(b, [b, a], "b", 8.0)
    assert (d.action, d.until, d.other) == (QUEUE, 37.0, "a")
    a = renew(a, 15.0, TTL)
    assert decide(a, [a, b], "a", 16.0).action == HOLD
    a = release(a, 20.0)
    assert decide(b, [b, a], "b", 21.0).action == CLAIM
    b = claim(RES, "b", 21.0, TTL, "b2")
    assert decide(b, [b, a], "b", 26.0).action == TAKE


# --- randomized: 2-3 hosts, delays <= settle, skewed clocks, pauses -------------------------

DT, RENEW, BEAT = 0.5, 10.0, 5.0


class Channel:
    """One host's file as the others see it: each write reaches each reader after its own
    random delay; a reader sees the newest write that has reached it."""

    def __init__(self) -> None:
        self.writes: list[tuple[float, object, dict[str, float]]] = []

    def write(self, t: float, value: object, delays: dict[str, float]) -> None:
        self.writes.append((t, value, delays))

    def seen(self, reader: str, t: float) -> object | None:
        got = self.seen_at(reader, t)
        return None if got is None else got[0]

    def seen_at(self, reader: str, t: float) -> tuple[object, float] | None:
        """The newest write that reached `reader` by real time t, and when it arrived."""
        for written, value, delays in reversed(self.writes):
            if written + delays[reader] <= t:
                return value, written + delays[reader]
        return None


@dataclass
class Host:
    name: str
    offset: float                       # its clock minus real time
    want_at: float
    leases: Channel = field(default_factory=Channel)
    beats: Channel = field(default_factory=Channel)
    mine: Lease | None = None
    last_beat: float | None = None      # its clock
    paused_until: float = -1.0
    release_at: float = 0.0
    holder: bool = False
    claims: int = 0
    start_at: float = 0.0               # real time its guard starts (adaptive runs)
    since: float | None = None          # its heartbeat series' start (its clock)
    seen: dict = field(default_factory=dict)  # (host, written) -> Beat: its lag samples
    claim_settle: float = 0.0           # the settle of its current claim (highest seen)
    unannounced: bool = False


def simulate(seed: int, n: int, max_delay: float = S, horizon: float = 300.0,
             pause_rate: float = 0.002, adaptive: bool = False, skew: float = SKEW) -> dict:
    """Step real time by DT. Each host, with its own clock, wants the lock from time to time,
    follows decide_acquire (renewing while it settles or holds), keeps it for a while, then
    releases it; now and then it pauses (no decisions, no writes) for up to a minute. A host
    decides before writing the tick's heartbeat. Returns counters and every moment at which
    two hosts held the lock together.

    adaptive: claims settle for the delay measured from the heartbeats
    (settle.effective_settle), hosts start at random times (unannounced at first) and each
    pair of hosts has its own delay d (0.1 s to max_delay), every write taking d/2 to d, as
    settle.py assumes; a pause longer than STALE - S starts a new heartbeat series."""
    rng = random.Random(seed)
    hosts = [Host(f"h{i}", rng.uniform(-skew / 2, skew / 2), rng.uniform(0, 20))
             for i in range(n)]
    if adaptive:  # starts close together, wanting the lock early: young claims meet
        for h in hosts:
            h.start_at = rng.uniform(0.0, 20.0)
            h.want_at = h.start_at + rng.uniform(0.0, 3.0)
    names = [h.name for h in hosts]
    base = {(w, r): rng.uniform(0.1, max_delay) for w in names for r in names}
    stats = {"overlaps": [], "takes": 0, "withdraws": 0, "outcome_waits": 0, "step_downs": 0,
             "lapses": 0, "pauses": 0, "queued": 0, "fast": 0, "unannounced": 0}

    def delay(w: str, r: str) -> float:
        if w == r:
            return 0.0
        if adaptive:
            return rng.uniform(base[w, r] / 2, base[w, r])
        return rng.uniform(0, max_delay)

    def send(h: Host, channel: Channel, t: float, value: object) -> None:
        channel.write(t, value, {r: delay(h.name, r) for r in names})

    def settle_of(h: Host, t: float, now: float) -> tuple[float, bool]:
        if not adaptive:
            return S, False
        for o in hosts:
            got = o.beats.seen_at(h.name, t) if o is not h else None
            if got is not None:
                (written, since, running), arrived = got  # type: ignore[misc]
                h.seen[o.name, written] = Beat(o.name, written, arrived + h.offset, running,
                                               since)
        own = [Beat(h.name, h.last_beat, h.last_beat, True, h.since)] \
            if h.last_beat is not None else []
        at = h.mine.claimed_at if h.mine is not None and h.mine.state == CLAIMING else now
        got_settle = effective_settle([*h.seen.values(), *own], h.name, now, S, STALE, skew,
                                      claimed_at=at)
        return got_settle.seconds, got_settle.unannounced

    t = 0.0
    while t < horizon:
        order = hosts[:]
        rng.shuffle(order)
        for h in order:
            if t < h.paused_until or t < h.start_at:
                continue
            if rng.random() < pause_rate:  # laptop lid, hung process: no writes, no decisions
                h.paused_until, h.holder = t + rng.uniform(1.0, 60.0), False
                stats["pauses"] += 1
                continue
            now = t + h.offset
            visible = [v for o in hosts if (v := o.leases.seen(h.name, t)) is not None]
            beats = {o.name: b[0] for o in hosts  # type: ignore[index]
                     if o is not h and (b := o.beats.seen(h.name, t)) is not None}
            if h.last_beat is not None:
                beats[h.name] = h.last_beat  # our previous heartbeat, before this tick's
            active = h.mine is not None and not h.mine.released
            h.holder = False
            if active or t >= h.want_at:
                settle, unannounced = settle_of(h, t, now)
                if h.mine is not None and h.mine.state == CLAIMING:
                    h.claim_settle = settle = max(h.claim_settle, settle)
                    unannounced = h.unannounced
                d = decide_acquire(h.mine, visible, h.name, now, settle, beats, STALE, skew,
                                   unannounced=unannounced)
                if "lapsed" in d.why:
                    stats["lapses"] += 1
                if d.action == QUEUE and t >= h.want_at:
                    stats["queued"] += 1
                    h.claims += 1
                    h.mine = queue(RES, h.name, now, TTL, f"{h.name}-{h.claims}")
                    send(h, h.leases, t, h.mine)
                elif d.action == WAIT and h.mine is not None and renew_due(h.mine, now, RENEW):
                    h.mine = renew(h.mine, now, TTL)
                    send(h, h.leases, t, h.mine)
                elif d.action == CLAIM and t >= h.want_at:
                    h.claims += 1
                    h.mine = claim(RES, h.name, now, TTL, f"{h.name}-{h.claims}")
                    h.claim_settle, h.unannounced = settle_of(h, t, now)
                    stats["fast"] += h.claim_settle < S
                    stats["unannounced"] += h.unannounced
                    send(h, h.leases, t, h.mine)
                elif d.action == TAKE:
                    stats["takes"] += 1
                    h.mine, h.holder = take(h.mine, now, TTL), True
                    h.release_at = t + rng.uniform(2.0, 60.0)
                    send(h, h.leases, t, h.mine)
                elif d.action == WITHDRAW:
                    stats["withdraws"] += 1
                    stats["step_downs"] += "step down" in d.why
                    h.mine, h.want_at = release(h.mine, now), t + rng.uniform(0.0, 10.0)
                    send(h, h.leases, t, h.mine)
                elif d.action == HOLD:
                    if t >= h.release_at:
                        h.mine, h.want_at = release(h.mine, now), t + rng.uniform(0.0, 40.0)
                        send(h, h.leases, t, h.mine)
                    else:
                        h.holder = holding(h.mine, now)
                        if renew_due(h.mine, now, RENEW):
                            h.mine = renew(h.mine, now, TTL)
                            send(h, h.leases, t, h.mine)
                elif d.action == SETTLE:
                    stats["outcome_waits"] += d.other is not None
                    if renew_due(h.mine, now, RENEW):
                        h.mine = renew(h.mine, now, TTL)
                        send(h, h.leases, t, h.mine)
            if h.last_beat is None or now - h.last_beat >= BEAT:
                if h.last_beat is None or now - h.last_beat > STALE - S:
                    h.since = now  # a new series: after a start or a long pause
                h.last_beat = now
                send(h, h.beats, t, (now, h.since, True))
        holders = [h.name for h in hosts if h.holder]
        if len(holders) > 1:
            stats["overlaps"].append((t, holders))
        t = round(t + DT, 6)
    return stats


def test_random_hosts_with_delays_within_settle_never_hold_together():
    totals: dict[str, int] = {}
    for seed in range(100):
        stats = simulate(seed, n=2 + seed % 2)
        assert stats["overlaps"] == [], f"seed {seed}: {stats['overlaps'][:5]}"
        for key, value in stats.items():
            if key != "overlaps":
                totals[key] = totals.get(key, 0) + value
    # the runs did exercise contention, pauses and the skew rule, not just idle hosts
    assert totals["takes"] > 500 and totals["withdraws"] > 50 and totals["pauses"] > 100
    assert totals["outcome_waits"] > 0 and totals["lapses"] > 0 and totals["queued"] > 100


def test_without_pauses_two_held_leases_never_even_meet():
    for seed in range(20):
        stats = simulate(seed, n=3, pause_rate=0.0, horizon=200.0)
        assert stats["overlaps"] == [] and stats["step_downs"] == 0, seed
        assert stats["takes"] > 0


def test_the_simulation_does_catch_delays_beyond_settle():
    """The assumption matters: with sync delays up to 4 x settle hosts do hold together,
    and the loser of the two 'held' leases steps down."""
    runs = [simulate(seed, n=3, max_delay=4 * S, pause_rate=0.0) for seed in range(20)]
    assert any(r["overlaps"] for r in runs)
    assert sum(r["step_downs"] for r in runs) > 0


def test_adaptive_settle_with_hosts_starting_late_never_holds_together():
    """The same, with settles from the measured delay: hosts start at random times (their
    first claims are unannounced), pause now and then (new heartbeat series), and most
    claims settle far below the ceiling."""
    totals: dict[str, int] = {}
    for seed in range(60):  # skew small next to the delays: the measured part decides
        stats = simulate(seed, n=2 + seed % 2, max_delay=4.0, adaptive=True, skew=0.2)
        assert stats["overlaps"] == [], f"seed {seed}: {stats['overlaps'][:5]}"
        for key, value in stats.items():
            if key != "overlaps":
                totals[key] = totals.get(key, 0) + value
    assert totals["takes"] > 300 and totals["pauses"] > 50 and totals["unannounced"] > 20
    assert totals["fast"] > totals["unannounced"] and totals["outcome_waits"] > 0


def test_adaptive_settle_does_catch_delays_beyond_the_measured_ones():
    """The margin matters: with delays of up to 4 x settle hosts do hold together."""
    runs = [simulate(seed, n=3, max_delay=4 * S, pause_rate=0.0, adaptive=True)
            for seed in range(20)]
    assert any(r["overlaps"] for r in runs)


# --- the effective settle: the sync delay as measured from the heartbeats -----------------

def beat(host: str, written: float, lag: float = 0.5, *, running: bool = True,
         since: float | None = 0.0, interval: float = 0.0) -> Beat:
    return Beat(host, written, written + lag, running, since, interval)


ME = beat("a", 99.0, 0.0)  # our own heartbeat: a series since 0, announced long ago


@pytest.mark.parametrize("beats, seconds, why", [
    ([ME], 0.0, "no live peer"),
    ([ME, beat("b", -520.0)], 0.0, "no live peer"),                     # older than RECENT
    ([ME, beat("b", 80.0)], 1.5, "lag 0.5 s (b)"),     # 20 s old > stale_after: still counts
    # its next heartbeat (due at 45) has not arrived 55 s later: the sync holds files back
    ([ME, beat("b", 40.0, interval=5.0)], S, "lag 55.0 s (b)"),
    ([ME, beat("b", 97.0, 1.0, interval=5.0)], 2 * 1.0 + 0.5, "lag 1.0 s (b)"),  # not overdue
    ([ME, beat("b", 99.0, running=False)], 0.0, "no live peer"),        # stopped cleanly
    ([ME, beat("b", 99.0, 1.0)], 2 * 1.0 + 0.5, "lag 1.0 s (b)"),
    ([ME, beat("b", 99.0, 0.1)], 1.0, "lag 0.1 s (b)"),                 # the floor
    ([ME, beat("b", 99.0, 9.0)], S, "lag 9.0 s (b)"),                   # the ceiling
    ([ME, beat("b", 99.0, 0.2), beat("c", 98.0, 1.5)], 3.5, "(c)"),     # the slowest peer
    ([ME, beat("b", 99.0, 0.5), beat("b", 60.0, 2.0)], 4.5, "lag 2.0 s"),  # a recent sample
    ([ME, beat("b", 99.0, 0.5), beat("b", -600.0, 2.0)], 1.5, "lag 0.5"),  # too old to count
    ([ME, beat("b", 99.0, -0.5)], S, "clock is off"),                   # beyond skew 0
])
def test_effective_settle_table(beats, seconds, why):
    got = effective_settle(beats, "a", 100.0, S, STALE, 0.0)
    assert (got.seconds, got.unannounced) == (pytest.approx(seconds), False)
    assert why in got.why


def test_effective_settle_counts_the_skew_a_lag_may_hide():
    # lag = delay + (our clock - theirs): the delay may be lag + skew
    got = effective_settle([ME, beat("b", 99.0, -0.5)], "a", 100.0, 10.0, STALE, SKEW)
    assert got.seconds == pytest.approx(2 * (-0.5 + SKEW) + 0.5)
    got = effective_settle([ME, beat("b", 99.0, 1.0)], "a", 100.0, 10.0, STALE, SKEW)
    assert got.seconds == pytest.approx(2 * (1.0 + SKEW) + 0.5)
    # a peer is live until its heartbeat is older than stale_after + skew, as for leases
    assert effective_settle([ME, beat("b", 83.5)], "a", 100.0, S, STALE, SKEW).seconds > 0


@pytest.mark.parametrize("own, at, seconds, unannounced", [
    (beat("a", 99.0, 0.0, since=0.0), 100.0, 0.0, False),       # announced long ago
    (beat("a", 99.0, 0.0, since=96.0), 100.0, 6.0, True),       # until since + 2 * settle
    (beat("a", 99.0, 0.0, since=95.0), 100.0, 0.0, False),      # since + settle: announced
    (beat("a", 99.0, 0.0, since=None), 100.0, 10.0, True),      # an older guard's heartbeat
    (beat("a", 99.0, 0.0, running=False), 100.0, 10.0, True),   # stopped
    (beat("a", 90.0, 0.0, since=0.0), 100.0, 0.0, False),       # 10 s old: within 15 - 5
    (beat("a", 89.0, 0.0, since=0.0), 100.0, 10.0, True),       # 11 s: the series broke
    (None, 100.0, 10.0, True),                                  # no heartbeat of ours
])
def test_a_host_not_yet_known_to_the_others_settles_until_their_claims_arrived(
        own, at, seconds, unannounced):
    got = effective_settle([own] if own else [], "a", at, S, STALE, 0.0)
    assert (got.seconds, got.unannounced) == (pytest.approx(seconds), unannounced)
    if unannounced:
        assert "this host" in got.why


def test_the_settle_of_a_claim_is_counted_from_the_claim():
    young = beat("a", 99.0, 0.0, since=96.0)
    later = effective_settle([young], "a", 103.0, S, STALE, 0.0, claimed_at=100.0)
    assert (later.seconds, later.unannounced) == (6.0, True)
    assert effective_settle([young], "a", 103.0, S, STALE, 0.0).unannounced is False


def test_a_host_that_just_started_is_not_overlooked():
    """Skew 0, sync a -> b 0.1 s, b -> a 1.5 s. a runs alone; b starts at 100 and claims at
    once. a claims at 101, before b's heartbeat or claim arrived: no live peer, no settle, a
    takes. Had b settled for a's lag alone (1 s, the floor), it would take at 101 too; being
    unannounced it settles until 110 and meets a's 'held' lease."""
    a_beats = [beat("a", 100.5, 0.0)]
    b_beats = [beat("a", 99.0, 0.1), beat("b", 100.0, 0.0, since=100.0)]
    b = claim(RES, "b", 100.0, TTL, "b1")
    b_settle = effective_settle(b_beats, "b", 100.0, S, STALE, 0.0)
    assert (b_settle.seconds, b_settle.unannounced) == (10.0, True)
    a_settle = effective_settle(a_beats, "a", 101.0, S, STALE, 0.0)
    assert a_settle.seconds == 0.0
    a = claim(RES, "a", 101.0, TTL, "a1")
    assert decide_acquire(a, [], "a", 101.0, a_settle.seconds).action == TAKE
    a_held = take(a, 101.0, TTL)
    # the hole the rule closes: settled for the measured lag only, b takes at 101 too
    assert decide_acquire(b, [], "b", 101.0, 1.0, skew=0.0).action == TAKE
    # b waits: at 101.1 a's 'held' lease is there, and b withdraws
    assert decide_acquire(b, [], "b", 101.0, b_settle.seconds, skew=0.0,
                          unannounced=True).action == SETTLE
    d = decide_acquire(b, [a_held], "b", 101.1, b_settle.seconds, skew=0.0, unannounced=True)
    assert (d.action, d.other) == (WITHDRAW, "a")
    # had only a's claim arrived (its 'held' version still on its way), b ranks first yet
    # waits for the outcome: a may have taken without seeing b
    d = decide_acquire(b, [a], "b", 110.0, b_settle.seconds, skew=0.0, unannounced=True)
    assert (d.action, d.other) == (SETTLE, "a") and "outcome" in d.why
    assert decide_acquire(b, [a], "b", 110.0, b_settle.seconds, skew=0.0).action == TAKE
    assert decide_acquire(b, [release(a_held, 102.0)], "b", 110.0, b_settle.seconds,
                          skew=0.0, unannounced=True).action == TAKE


# --- fair hand-over: 'waiting' records ----------------------------------------------------

def test_waiting_records_never_win_and_queue_in_order():
    b_waits = queue(RES, "b", 50.0, TTL, "bw")
    c_waits = queue(RES, "c", 60.0, TTL, "cw")
    assert b_waits.state == WAITING and winner([b_waits, c_waits], 70.0) is None
    # the lock is free: the host that waited longest claims, the others wait behind it
    assert decide(b_waits, [b_waits, c_waits], "b", 70.0).action == CLAIM
    d = decide(c_waits, [b_waits, c_waits], "c", 70.0)
    assert (d.action, d.other) == (WAIT, "b") and "goes first" in d.why
    # a host that did not wait (it just released, say) queues behind them
    d = decide(None, [b_waits, c_waits], "a", 70.0)
    assert (d.action, d.other) == (QUEUE, "b")
    # a dead waiting record holds nobody up
    assert decide(None, [replace(b_waits, released=True)], "a", 70.0).action == CLAIM
    assert decide(None, [b_waits], "a", 70.0, {"b": 40.0}).action == CLAIM  # b is stale
    # a claim or a hold still comes first: the waiting host waits for it
    held = lease("a", 65.0)
    assert decide(b_waits, [held, b_waits], "b", 70.0).action == WAIT
    assert "store: b waiting for it, 20s so far, renewed 20s ago" in describe(b_waits, 70.0)


def hand_over(queueing: bool, delay: float = 1.0, settle: float = 2.5) -> list[str]:
    """Host a registers three versions back to back (hold 0.2 s, release, claim again at
    once); b wants the lock from 1.2 s on. Files take `delay` seconds each way. Returns who
    held the lock, in order. Without queueing b only ever sees a's next claim or hold."""
    chans = {h: Channel() for h in "ab"}
    mine: dict[str, Lease | None] = {"a": None, "b": None}
    wants = {"a": 3, "b": 1}
    held_until: dict[str, float] = {}
    order: list[str] = []
    t, n = 0.0, 0
    while t < 60.0 and any(wants.values()):
        for h in "ab":
            if not wants[h] or (h == "b" and t < 1.2):
                continue
            other = "b" if h == "a" else "a"
            visible = [v for v in (chans[other].seen(h, t),) if v is not None]
            m = mine[h]
            if m is not None and m.state == HELD and not m.released:
                if t < held_until[h]:
                    continue
                m = mine[h] = release(m, t)  # and at once on to the next version
                chans[h].write(t, m, {other: delay, h: 0.0})
                wants[h] -= 1
                if not wants[h]:
                    continue
            d = decide_acquire(m, visible, h, t, settle)
            if d.action == QUEUE and queueing:
                n += 1
                mine[h] = queue(RES, h, t, TTL, f"{h}{n}")
            elif d.action == CLAIM:
                n += 1
                mine[h] = claim(RES, h, t, TTL, f"{h}{n}")
            elif d.action == TAKE:
                mine[h] = take(m, t, TTL)
                held_until[h] = t + 0.2
                order.append(h)
            elif d.action == WITHDRAW:
                mine[h] = release(m, t)
            else:
                continue
            chans[h].write(t, mine[h], {other: delay, h: 0.0})
        t = round(t + 0.05, 6)
    return order


def test_a_host_registering_back_to_back_does_not_starve_the_other():
    assert hand_over(queueing=True) == ["a", "b", "a", "a"]
    # what issue 14 measured: b never sees the lock free and waits out a's whole series
    assert hand_over(queueing=False) == ["a", "a", "a", "b"]
