"""Journals: any name is written so undo finds the same bytes; write-ahead intents; fsync."""

from __future__ import annotations

import json
import os

import pytest

from guard.core import journal as journal_mod
from guard.core.journal import (
    APPLIED,
    CHANGED,
    GONE,
    NOT_APPLIED,
    Journal,
    digest,
    encode_line,
    intent,
    judge,
    old_content,
    portable,
    read_journal,
    text_field,
    transactions,
)
from guard.core.safeio import printable

NAME = os.fsdecode(b"12/run-\xff\xfe/meta.yaml")  # as os.listdir gives a non-UTF-8 name


# --- names that are not valid UTF-8 -----------------------------------------------------------

def test_a_non_utf8_name_is_written_readable_with_its_exact_bytes():
    line = encode_line({"action": "rewrite", "file": NAME, "key": "artifact_uri"})
    text = line.decode("utf-8")  # valid UTF-8: any JSON reader takes it
    record = json.loads(text)
    assert record["file"] == "12/run-\\xff\\xfe/meta.yaml"
    assert text_field(record, "file") == NAME
    assert os.fsencode(text_field(record, "file")) == b"12/run-\xff\xfe/meta.yaml"
    assert record["key"] == "artifact_uri" and "key_b64" not in record


def test_plain_names_are_written_as_they_are():
    record = portable({"file": "0/caf\u00e9/meta.yaml", "n": 3})
    assert record == {"file": "0/caf\u00e9/meta.yaml", "n": 3}
    assert text_field(record, "file") == "0/caf\u00e9/meta.yaml"


def test_strings_no_file_name_can_spell_and_nested_ones_never_raise():
    record = json.loads(encode_line({"odd": "\ud800x", "nested": {"k": [NAME]},
                                     NAME: 1}).decode("utf-8"))
    assert record["odd"] == "\\ud800x" and "odd_b64" not in record
    assert record["nested"] == {"k": ["12/run-\\xff\\xfe/meta.yaml"]}
    assert record["12/run-\\xff\\xfe/meta.yaml"] == 1
    assert printable("\ud800x") == "\\ud800x"


def test_append_never_raises_and_reads_back(tmp_path):
    path = tmp_path / "j" / "rewrites.jsonl"
    Journal(path).append(action="rewrite", file=NAME, old="file:///x", new="y")
    (record,) = list(read_journal(path))
    assert text_field(record, "file") == NAME and record["old"] == "file:///x"
    assert isinstance(record["time"], float)


def test_a_torn_last_line_is_skipped_and_the_next_append_starts_a_new_line(tmp_path):
    path = tmp_path / "j.jsonl"
    Journal(path).append(action="a", n=1)
    with open(path, "ab") as fh:
        fh.write(b'{"action": "b", "n"')  # a crash in mid-line
    assert [r["n"] for r in read_journal(path)] == [1]
    Journal(path).append(action="c", n=3)
    assert [r["n"] for r in read_journal(path)] == [1, 3]


def test_append_returns_only_once_the_lines_are_fsynced(tmp_path, monkeypatch):
    path = tmp_path / "j.jsonl"
    synced: list[bytes] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        if path.exists() and os.path.samestat(os.fstat(fd), path.stat()):
            synced.append(path.read_bytes())  # the journal file itself, not its folder
        real(fd)

    monkeypatch.setattr(journal_mod.os, "fsync", fsync)
    Journal(path).append_many([{"action": "a"}, {"action": "b"}])
    assert len(synced) == 1 and b'"action": "b"' in synced[0]


# --- write-ahead intents ----------------------------------------------------------------------

def test_intent_lines_share_a_txn_and_carry_both_hashes_and_the_whole_old_text():
    old, new = b"artifact_uri: file:///x\nb: 1\n", b"artifact_uri: mlflow-artifacts:/x\nb: 1\n"
    lines = intent({"action": "rewrite", "file": "f"}, [
        {"key": "artifact_uri", "old": "file:///x", "new": "mlflow-artifacts:/x"},
        {"key": "source", "old": "a", "new": "b"}], old, new)
    assert len(lines) == 2 and len({ln["txn"] for ln in lines}) == 1
    assert all(ln["before"] == digest(old) and ln["after"] == digest(new) for ln in lines)
    assert lines[0]["old_text"] == old.decode() and "old_text" not in lines[1]
    assert old_content(lines) == old
    assert [ln["key"] for ln in lines] == ["artifact_uri", "source"]


def test_old_content_that_is_not_utf8_is_kept_as_base64():
    lines = intent({"file": "f"}, [], b"\xff\x00old", b"new")
    assert "old_text" not in lines[0]
    round_trip = json.loads(encode_line(lines[0]))
    assert old_content([round_trip]) == b"\xff\x00old"


def test_old_content_survives_the_journal_byte_for_byte(tmp_path):
    old = "a: 'caf\u00e9'\r\nb:   [1, 2]  # comment\n".encode()
    path = tmp_path / "j.jsonl"
    Journal(path).append_many(intent({"action": "rewrite", "file": NAME}, [], old, b"x"))
    assert old_content(list(read_journal(path))) == old


def test_judge_tells_applied_never_applied_changed_and_gone():
    (line,) = intent({}, [{"key": "k"}], b"old", b"new")
    assert judge(b"new", line) == APPLIED
    assert judge(b"old", line) == NOT_APPLIED
    assert judge(b"other", line) == CHANGED
    assert judge(None, line) == GONE


def test_transactions_group_lines_of_one_write_and_keep_old_lines_single():
    a = intent({"file": "a"}, [{"key": "k1"}, {"key": "k2"}], b"1", b"2")
    b = intent({"file": "b"}, [{"key": "k"}], b"1", b"2")
    legacy = [{"file": "c", "key": "k"}, {"file": "c", "key": "k2"}]
    groups = transactions([*a, *legacy, *b])
    assert [len(g) for g in groups] == [2, 1, 1, 1]
    assert groups[0] == a and groups[3] == b


@pytest.mark.parametrize("bad", ["", "not base64!", None])
def test_a_broken_b64_field_falls_back_to_the_readable_form(bad):
    assert text_field({"file": "x", "file_b64": bad}, "file") == "x"
