import io

from guard.core.words import Progress, count, plural, said


def test_counts_take_the_right_noun():
    assert count(1, "file") == "1 file"
    assert count(2, "file") == "2 files"
    assert count(0, "copy") == "0 copies"
    assert count(3, "process") == "3 processes"
    assert count(2, "day") == "2 days"
    assert plural("entry") == "entries"


def test_absent_values_are_said_in_words():
    assert said(None) == "unknown"
    assert said(None, "none") == "none"
    assert said(True) == "yes" and said(False) == "no"
    assert said(5050) == "5050"


def test_progress_is_silent_when_piped():
    out = io.StringIO()  # not a terminal
    p = Progress("waiting", stream=out, after=0.0, every=0.0)
    p.update("1 of 2")
    p.done()
    assert out.getvalue() == ""


def test_progress_on_a_terminal_is_shown_then_cleared():
    out = io.StringIO()
    with Progress("waiting", stream=out, after=0.0, every=0.0, force=True) as p:
        p.update("1 of 2")
    text = out.getvalue()
    assert "waiting: 1 of 2" in text
    assert text.endswith("\r")
