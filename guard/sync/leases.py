"""Cross-machine locks over a folder that a sync client replicates (pure decisions).

Several machines share the store through Synology Drive, Syncthing and the like. There is no
atomic shared storage: a host can only write its OWN files (one lease file per resource and
host) and sees the other hosts' files after an unknown delay. Locks therefore work by
claiming, waiting for the other claims to arrive, and then letting every host pick the same
winner from the same records:

    1. look at the visible leases of the resource; a live foreign lease (claim or hold), or a
       live foreign 'waiting' record older than ours -> wait, with a 'waiting' record of ours
    2. otherwise write our 'claiming' lease (claimed_at = our clock, a fresh token)
    3. wait `settle` seconds for the other claims to arrive, and look again
    4. the winner among the live leases: a live 'held' lease beats every claim; otherwise the
       earliest claimed_at, ties broken by host_id, then token. We win -> mark ours 'held';
       we lose -> withdraw (released) and retry later
    5. renew while held (renewed_at/expires_at move forward); release when done

`settle` is not a constant: settle.py derives it for each claim from the sync delay the
heartbeats measure (no live peer: none at all), capped by `locks.settle` (the ceiling); the
proof below only needs what it states about it.

A lease is dead when it is released, past expires_at, or its host's heartbeat is stale. Our
clock is compared with another host's expires_at and heartbeat with a `skew` allowance: a
foreign lease stays live until expires_at + skew. Our own lease gets no allowance (we stop
trusting it first), and it lapses too when our previous heartbeat is older than stale_after:
the host slept or hung, and the others may have written us off meanwhile. A lapsed lease of
ours is withdrawn, never revived (our next heartbeat would make it look live again).

Step 4 has one refinement for clock skew. A host that claimed earlier (in real time) checks
earlier, and may take the lock without having seen a later claim; the later claimer is then
sure to see the first claim, but possibly not yet its 'held' version, and with skewed clocks
the claimed_at order may put the later claim first. That needs the two claimed_at values to
be less than `skew` apart, so a would-be winner that sees a claim ranked after its own by
less than skew waits until that claim shows its outcome ('held' -> we withdraw; released or
dead -> we take), at most settle + 2 * skew longer. Claims only wait for claims ranked after
them, so nobody waits in a circle. With skew = 0 this never happens. An `unannounced` claim
(below) waits so for every claim ranked after it.

Fair hand-over. A host that wants the lock while another holds or claims it writes a
'waiting' record (claimed_at = since when it waits) in its lease file. Waiting records are no
claims (they never win, never block a holder), but a host about to claim yields to a live
foreign waiting record older than its own (or to any, when it has none, such as a host that
just released): so a host registering versions back to back, which releases and claims again
within milliseconds, lets a host that waited meanwhile go first instead of starving it (the
other host, a sync delay behind, would never see the lock free). Waiting records only ever
keep a host from claiming, so they cannot break the safety below; the oldest live one never
waits for another, so nobody waits in a circle. Order between waiters follows claimed_at
(clocks, skew) and what has synced: it is fair, not exact.

Assumptions:
- every write reaches every host within `locks.settle` (the ceiling) seconds; clocks differ
  by at most `skew`;
- settle.py's: the delay of a host's files is bounded by MARGIN * (the highest lag of its
  heartbeats seen in the last RECENT seconds + skew) + EXTRA;
- ttl > renew_every + settle (renewals arrive before the old expiry) and
  ttl > 2 * settle + 2 * skew (or claims are renewed while settling; the shell renews them);
- heartbeats are written every `interval` with stale_after >= interval + settle (a running
  host never looks stale); a heartbeat carries `beating_since`, the start of its series
  (a gap longer than stale_after - settle starts a new one); the shell decides before writing
  a tick's heartbeat, passing its previous one as its own.

What it guarantees under them: once the settle time has passed, two hosts that follow the
protocol never both hold a lock, whatever pauses they take. Take two claims X (first, in real
time) and Y (later; Y did not see X's claim, or it would have waited).
- Y settled for X's host (X's heartbeat was live at Y during Y's claim, so Y's settle covers
  the delay of X's files): Y sees X's claim (or its outcome) when it decides, and both pick
  the same winner as before.
- Y did not know X's host: X's heartbeat had not reached Y, so X's series started less than
  the ceiling before Y decided, and X was `unannounced` when it claimed (claimed before
  beating_since + ceiling, or without a current heartbeat at all). An unannounced claim
  settles until beating_since + 2 * ceiling (2 * ceiling from the claim without a series):
  by then Y's claim, made before X's heartbeat reached Y, has reached X with every version
  Y wrote before it could see X. X sees Y 'held' -> X withdraws; Y 'claiming' (ranked after
  X) -> X waits for its outcome; Y released -> Y no longer holds, and a claim Y makes later
  is a new pair. This is why "no live peer" does not mean "take at once" for a host that
  just started, woke up, or has no daemon writing its heartbeat: nobody may know of it yet.
A lease the other hosts wrote off (our heartbeat stale) lapses on our side first.

What it does not guarantee: a sync delay longer than the ceiling (a client that was offline,
a paused sync), a delay beyond what the heartbeats measured times the margin (a lag spike
right after calm), clocks further apart than skew, or a peer whose guard predates
`beating_since` (it claims right after starting, unannounced, and the others may not settle
for it). Two hosts may then both hold; once each sees the other's 'held' lease the same
winner rule picks one, and the other must step down (`must_step_down`), so the double hold
lasts as long as the sync stays broken plus one poll. The shell keeps the longest settle a
claim has seen (a peer appearing or a lag growing mid-claim lengthens it), which narrows the
lag-spike case. Nor is it free of needless retries: a host back from a long pause looks live
to the others (fresh heartbeat) until its withdrawal arrives, and a new holder may step down
for it.

No clocks or disks here: the I/O shell reads the lease and heartbeat files, passes the time
in and writes what the decisions ask for.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from urllib.parse import quote

from guard.core.timefmt import duration

CLAIMING, HELD, WAITING = "claiming", "held", "waiting"
WAIT, CLAIM, SETTLE, TAKE, WITHDRAW, HOLD = "wait", "claim", "settle", "take", "withdraw", "hold"
QUEUE = "queue"


def resource_name(kind: str, name: str) -> str:
    """A file-name-safe resource id (model names may hold any character)."""
    return f"{kind}-{quote(name, safe='')}"[:200]


@dataclass(frozen=True)
class Lease:
    resource: str
    host_id: str
    claimed_at: float   # the host's clock at its first claim; renewals keep it
    renewed_at: float
    expires_at: float
    token: str          # unique per claim
    state: str = CLAIMING
    released: bool = False


@dataclass(frozen=True)
class Liveness:
    alive: bool
    why: str = ""
    until: float | None = None  # while alive: when it dies unless renewed or a heartbeat is seen

    def __bool__(self) -> bool:
        return self.alive


@dataclass(frozen=True)
class Decision:
    action: str                # queue | wait | claim | settle | take | withdraw | hold
    until: float | None = None  # when the situation may change on its own (look again then)
    why: str = ""
    other: str | None = None   # the other host the decision is about, if any


@dataclass(frozen=True)
class Dead:
    lease: Lease
    why: str


def _rank(lease: Lease) -> tuple[float, str, str]:
    return lease.claimed_at, lease.host_id, lease.token


def live(lease: Lease, now: float, heartbeats: Mapping[str, float] | None = None,
         stale_after: float = math.inf, skew: float = 0.0, *, me: str | None = None) -> Liveness:
    """Is this lease still in force as seen from our clock `now`, and if not, why not.

    `heartbeats` maps host_id -> the last heartbeat time seen from that host (its clock, hence
    the skew allowance too); a host missing from it is judged by expires_at alone. Our own
    lease (host_id == me) gets no skew allowance, and our own entry in `heartbeats` is our
    previous heartbeat: a gap longer than stale_after means the others may already have
    written this lease off.
    """
    own = me is not None and lease.host_id == me
    slack = 0.0 if own else skew
    if lease.released:
        return Liveness(False, "released")
    if now > lease.expires_at + slack:
        return Liveness(False, f"expired {duration(now - lease.expires_at)} ago")
    deadline = lease.expires_at + slack
    beat = (heartbeats or {}).get(lease.host_id)
    if beat is not None:
        if now > beat + stale_after + slack:
            whose = "our own heartbeat" if own else f"heartbeat of {lease.host_id}"
            return Liveness(False, f"{whose} is {duration(now - beat)} old "
                                   f"(stale after {stale_after:g} s)")
        deadline = min(deadline, beat + stale_after + slack)
    return Liveness(True, "live", deadline)


def _same_resource(leases: list[Lease]) -> None:
    if len({lease.resource for lease in leases}) > 1:
        raise ValueError("leases of different resources: "
                         + ", ".join(sorted({lease.resource for lease in leases})))


def winner(leases: Iterable[Lease], now: float, heartbeats: Mapping[str, float] | None = None,
           stale_after: float = math.inf, skew: float = 0.0, *,
           me: str | None = None) -> Lease | None:
    """The lease every host picks from the same records: a live 'held' lease before any claim,
    then the earliest claimed_at, then host_id, then token. None when nothing is live.
    'waiting' records are no claims: they never win."""
    leases = list(leases)
    _same_resource(leases)
    alive = [lease for lease in leases if lease.state != WAITING
             and live(lease, now, heartbeats, stale_after, skew, me=me)]
    held = [lease for lease in alive if lease.state == HELD]
    return min(held or alive, key=_rank, default=None)


def must_step_down(mine: Lease | None, visible: Iterable[Lease], now: float,
                   heartbeats: Mapping[str, float] | None = None, stale_after: float = math.inf,
                   skew: float = 0.0) -> Lease | None:
    """The foreign 'held' lease that outranks our 'held' one, or None.

    Two live 'held' leases only meet when a sync delay exceeded settle (or clocks drifted more
    than skew); both hosts then apply the winner rule to the same pair and the loser stops.
    """
    if mine is None or mine.state != HELD:
        return None
    me = mine.host_id
    if not live(mine, now, heartbeats, stale_after, skew, me=me):
        return None
    helds = [lease for lease in visible if lease.host_id != me and lease.state == HELD]
    top = winner([mine, *helds], now, heartbeats, stale_after, skew, me=me)
    return None if top is None or top.host_id == me else top


def _changes_at(lease: Lease, alive: Liveness, now: float, settle: float, skew: float) -> float:
    """The earliest time a foreign lease may change on its own: its death unless renewed, or
    for a claim the end of its settle time (its outcome shows within one more settle)."""
    times = [alive.until if alive.until is not None else math.inf]
    if lease.state == CLAIMING:
        times += [t for t in (lease.claimed_at + settle, lease.claimed_at + 2 * settle + skew)
                  if t > now]
    return min(times)


def decide_acquire(mine: Lease | None, visible: Iterable[Lease], me: str, now: float,
                   settle: float, heartbeats: Mapping[str, float] | None = None,
                   stale_after: float = math.inf, skew: float = 0.0, *,
                   unannounced: bool = False) -> Decision:
    """The next step for host `me` on one resource.

    `mine` is our own latest lease record (None if we never claimed; after a restart, our own
    file); `visible` the lease files of the resource as we see them now (our own file among
    them is ignored: `mine` is newer). `settle` is our claim's (settle.effective_settle);
    `unannounced`: our claim was made before every host could know we exist, so a later claim
    may have been taken without seeing ours. The actions:

        queue     the lock is taken, or others wait before us: write a 'waiting' record
                  (`queue`), so that a host that just released lets us go first
        wait      a live foreign lease blocks us (our 'waiting' record is out); until: when it
                  may change on its own
        claim     write a fresh 'claiming' lease (`claim`)
        settle    our claim waits for the other claims to arrive; until: when to look again
        take      we won: write ours 'held' (`take`)
        withdraw  we lost, must step down, or our lease lapsed: write it released (`release`)
        hold      ours and in force; until: when it lapses. `renew` it when `renew_due`
    """
    if mine is not None and mine.host_id != me:
        raise ValueError(f"our lease belongs to {mine.host_id}, not {me}")
    foreign = [lease for lease in visible if lease.host_id != me]
    _same_resource(foreign + ([mine] if mine is not None else []))
    args = (now, heartbeats, stale_after, skew)
    rivals = [lease for lease in foreign if live(lease, *args) and lease.state != WAITING]
    waiters = [lease for lease in foreign if live(lease, *args) and lease.state == WAITING]

    own = live(mine, *args, me=me) if mine is not None else Liveness(False)
    if mine is not None and not mine.released and not own:
        # release it for good: a lease lapsed by our heartbeat gap would look live again
        # after our next heartbeat, though the others may have moved on meanwhile
        return Decision(WITHDRAW, why=f"our {mine.state} lease lapsed ({own.why})")
    if mine is None or not own or mine.state == WAITING:
        queued = mine if mine is not None and own else None
        wait = WAIT if queued is not None else QUEUE
        top = winner(rivals, *args)
        if top is not None:
            doing = "holds" if top.state == HELD else "is claiming"
            return Decision(wait, until=_changes_at(top, live(top, *args), now, settle, skew),
                            why=f"{top.host_id} {doing} {top.resource}", other=top.host_id)
        ahead = [lease for lease in waiters if queued is None or _rank(lease) < _rank(queued)]
        if ahead:  # fair hand-over: who waited longer claims first
            first = min(ahead, key=_rank)
            return Decision(wait, until=live(first, *args).until,
                            why=f"{first.host_id} waits for {first.resource} too and goes first",
                            other=first.host_id)
        return Decision(CLAIM, why="no live lease from another host"
                        + (" and nobody waiting before us" if waiters else ""))

    if mine.state == HELD:
        beaten_by = must_step_down(mine, foreign, now, heartbeats, stale_after, skew)
        if beaten_by is not None:
            return Decision(WITHDRAW, why=(f"{beaten_by.host_id} holds {mine.resource} too and "
                                           "claimed it first: step down"),
                            other=beaten_by.host_id)
        others = sorted({lease.host_id for lease in rivals if lease.state == HELD})
        why = "held by us" + (f"; {', '.join(others)} must step down" if others else "")
        return Decision(HOLD, until=own.until, why=why, other=others[0] if others else None)

    held = winner([lease for lease in rivals if lease.state == HELD], *args)
    if held is not None:
        return Decision(WITHDRAW, why=f"{held.host_id} holds {mine.resource}", other=held.host_id)
    ready_at = mine.claimed_at + settle
    if now < ready_at:
        return Decision(SETTLE, until=ready_at,
                        why=f"claimed {duration(now - mine.claimed_at)} ago; waiting {settle:g} s "
                            "for other claims to sync")
    top = winner([mine, *rivals], *args, me=me)
    if top is not None and top.host_id != me:
        return Decision(WITHDRAW, why=f"{top.host_id} claimed {mine.resource} first",
                        other=top.host_id)
    # we rank first; a claim ranked after ours by less than skew may really be older, and
    # then it was decided without seeing ours; unannounced, any later claim may have been
    undecided = [lease for lease in rivals
                 if unannounced or lease.claimed_at < mine.claimed_at + skew]
    if undecided:
        first = min(undecided, key=lambda lease: lease.claimed_at)
        return Decision(SETTLE, until=max(now, first.claimed_at + 2 * settle + skew),
                        why=(f"{first.host_id} claimed {mine.resource} too and may have decided "
                             "without seeing our claim; waiting for its outcome"),
                        other=first.host_id)
    beaten = sorted({lease.host_id for lease in rivals})
    return Decision(TAKE, why="ours is the first live claim"
                    + (f" (before {', '.join(beaten)})" if beaten else ""))


def expired(leases: Iterable[Lease], now: float, heartbeats: Mapping[str, float] | None = None,
            stale_after: float = math.inf, skew: float = 0.0, *,
            me: str | None = None) -> list[Dead]:
    """The foreign leases that no longer count (and may be ignored or cleaned up), with why."""
    out = []
    for lease in leases:
        if me is not None and lease.host_id == me:
            continue
        alive = live(lease, now, heartbeats, stale_after, skew)
        if not alive:
            out.append(Dead(lease, alive.why))
    return out


def renew_due(lease: Lease, now: float, renew_every: float) -> bool:
    """Time to write a fresh renewed_at/expires_at (claims too, if settling runs long)."""
    return not lease.released and now - lease.renewed_at >= renew_every


def holding(mine: Lease | None, now: float) -> bool:
    """May we act on the resource right now: our lease is 'held', not released, not expired."""
    return (mine is not None and mine.state == HELD and not mine.released
            and now <= mine.expires_at)


# ---- the records the shell writes --------------------------------------------------------

def claim(resource: str, me: str, now: float, ttl: float, token: str) -> Lease:
    return Lease(resource, me, claimed_at=now, renewed_at=now, expires_at=now + ttl,
                 token=token)


def queue(resource: str, me: str, now: float, ttl: float, token: str) -> Lease:
    """A 'waiting' record: we want the lock and wait since `now` (claimed_at); no claim."""
    return replace(claim(resource, me, now, ttl, token), state=WAITING)


def take(lease: Lease, now: float, ttl: float) -> Lease:
    return replace(lease, state=HELD, renewed_at=now, expires_at=now + ttl)


def renew(lease: Lease, now: float, ttl: float) -> Lease:
    return replace(lease, renewed_at=now, expires_at=now + ttl)


def release(lease: Lease, now: float) -> Lease:
    """Withdraw a claim or give up a hold (the record stays, marked released)."""
    return replace(lease, released=True, renewed_at=now)


def describe(lease: Lease, now: float) -> str:
    """One line for `guardctl locks`: holder, age, expires in."""
    head = f"{lease.resource}: "
    if lease.released:
        return head + f"released by {lease.host_id} {duration(now - lease.renewed_at)} ago"
    if lease.state == HELD:
        head += f"held by {lease.host_id}, claimed {duration(now - lease.claimed_at)} ago"
    elif lease.state == WAITING:
        head += f"{lease.host_id} waiting for it, {duration(now - lease.claimed_at)} so far"
    else:
        head += f"claimed by {lease.host_id} {duration(now - lease.claimed_at)} ago (settling)"
    left = lease.expires_at - now
    tail = (f"expires in {duration(left)}" if left >= 0
            else f"expired {duration(-left)} ago")
    return f"{head}, renewed {duration(now - lease.renewed_at)} ago, {tail}"
