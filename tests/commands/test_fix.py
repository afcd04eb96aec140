"""`guardctl fix --undo` accepts only a journal of this guard (no process is started)."""

from __future__ import annotations

from guard.commands.fix import is_journal, is_journal_line
from guard.core.journal import Journal


def test_a_journal_the_guard_wrote_is_one(tmp_path):
    journal = Journal(tmp_path / "rewrites.jsonl")
    journal.append(action="rewrite", file="1/meta.yaml", key="artifact_location",
                   old="file:///x", new="mlflow-artifacts:/1")
    assert is_journal(journal.path)


def test_a_journal_whose_first_line_was_torn_by_a_crash_is_one(tmp_path):
    path = tmp_path / "rewrites.jsonl"
    path.write_bytes(b'{"action": "rewr')
    Journal(path).append(action="rewrite", file="1/meta.yaml")  # ends the torn line first
    assert is_journal(path)


def test_other_files_are_not_journals(tmp_path):
    for name, content in (("empty", b""), ("notes.txt", b"hello\nworld\n"),
                          ("list.json", b"[1, 2]\n"), ("other.jsonl", b'{"a": 1}\n' * 10),
                          ("binary", bytes(range(256)) * 100), ("blank", b"\n" * 10)):
        path = tmp_path / name
        path.write_bytes(content)
        assert not is_journal(path), name
    assert not is_journal(tmp_path / "missing")
    assert not is_journal(tmp_path)  # a folder


def test_a_journal_line_has_an_action_and_a_time():
    assert is_journal_line(b'{"action": "undo", "time": 1.5}')
    assert not is_journal_line(b'{"action": "undo"}')
    assert not is_journal_line(b'{"action": 3, "time": 1.5}')
    assert not is_journal_line(b'{"time": 1.5}')
    assert not is_journal_line(b"\xff\xfe")
