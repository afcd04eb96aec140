"""`guardctl restart`'s account of the parts it resumed (pure: the status documents)."""

from __future__ import annotations

from guard.commands.restart import failed_parts, parts_line
from guard.core.parts import PartPhase, PartState
from guard.daemon.statusdoc import StatusDoc


def parts_doc(**states: PartPhase) -> StatusDoc:
    return StatusDoc(parts={name: PartState(state=s) for name, s in states.items()})


def test_the_parts_in_backoff_or_a_crash_loop_are_the_ones_resumed():
    before = parts_doc(server=PartPhase.RUNNING, rewrite=PartPhase.CRASH_LOOP,
                       vault=PartPhase.BACKOFF, peers=PartPhase.HELD, gc=PartPhase.STUCK)
    assert failed_parts(before) == ["rewrite", "vault"]


def test_the_line_says_which_came_back_and_which_failed_again():
    stopped = ["rewrite", "vault"]
    after = parts_doc(rewrite=PartPhase.RUNNING, vault=PartPhase.BACKOFF)
    assert parts_line(stopped, after) == "resumed path rewriting; vault failed again"
    assert parts_line(stopped, parts_doc(rewrite=PartPhase.RUNNING, vault=PartPhase.RUNNING)) \
        == "resumed path rewriting, vault"
    assert parts_line([], after) == ""
