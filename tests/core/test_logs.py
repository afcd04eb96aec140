"""The one logging setup: rotating files sized by config, a level per component, and stderr
lines that carry their syslog priority when stderr is systemd's journal stream."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from guard.core.config import ConfigError, LogConfig, load_config
from guard.core.logs import setup_logging


@pytest.fixture(autouse=True)
def restore_guard_logger():
    yield
    logger = logging.getLogger("guard")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.propagate = True


def test_a_level_per_component_over_the_default(tmp_path):
    path = tmp_path / "guard.log"
    setup_logging(path, LogConfig("WARNING", 1 << 20, 2, {"vault": "DEBUG"}))
    logging.getLogger("guard.vault").debug("vault detail")
    logging.getLogger("guard.fixer").info("fixer chatter")
    logging.getLogger("guard.fixer").warning("fixer warning")
    text = path.read_text()
    assert "DEBUG guard.vault: vault detail" in text
    assert "fixer chatter" not in text and "WARNING guard.fixer: fixer warning" in text
    setup_logging(path, LogConfig("INFO", 1 << 20, 2, {}))  # levels are reset, not inherited
    logging.getLogger("guard.vault").debug("second detail")
    assert "second detail" not in path.read_text()


def test_files_rotate_at_the_configured_size_and_count(tmp_path):
    path = tmp_path / "guard.log"
    setup_logging(path, LogConfig("INFO", 2048, 2, {}))
    for i in range(200):
        logging.getLogger("guard.daemon").info("line %03d %s", i, "x" * 40)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["guard.log", "guard.log.1", "guard.log.2"]
    assert all((tmp_path / f).stat().st_size <= 2048 for f in files)
    assert "line 199" in path.read_text()


@pytest.mark.integration
def test_stderr_to_the_journal_carries_syslog_priorities(tmp_path):
    """systemd sets JOURNAL_STREAM to stderr's device:inode; a log file stands in here."""
    script = (
        "import logging, os, sys; from pathlib import Path\n"
        "from guard.core.config import LogConfig; from guard.core.logs import setup_logging\n"
        "st = os.fstat(2); os.environ['JOURNAL_STREAM'] = f'{st.st_dev}:{st.st_ino}'\n"
        "setup_logging(Path(sys.argv[1]), LogConfig('INFO', 1 << 20, 1, {}))\n"
        "logging.getLogger('guard.daemon').error('server exited')\n"
        "logging.getLogger('guard.daemon').info('started')\n"
        "os.environ['JOURNAL_STREAM'] = '1:2'\n"
        "setup_logging(Path(sys.argv[1]), LogConfig('INFO', 1 << 20, 1, {}))\n"
        "logging.getLogger('guard.daemon').warning('on a terminal')\n")
    err = tmp_path / "stderr"
    with err.open("w") as stream:
        subprocess.run([sys.executable, "-c", script, str(tmp_path / "g.log")], stderr=stream,
                       check=True, timeout=60)
    lines = err.read_text().splitlines()
    assert lines[0] == "<3>ERROR guard.daemon: server exited"
    assert lines[1] == "<6>INFO guard.daemon: started"
    assert not lines[2].startswith("<") and lines[2].endswith("WARNING guard.daemon: on a terminal")
    assert "server exited" in (tmp_path / "g.log").read_text()


@pytest.mark.parametrize("levels, message", [
    ("{vualt: DEBUG}", "unknown component 'vualt'; did you mean 'vault'?"),
    ("{vault: LOUD}", "the level of 'vault' is 'LOUD'"),
    ("[vault]", "must be a mapping of component to level"),
])
def test_bad_component_levels_are_refused_with_the_fix(tmp_path, levels, message):
    cfg = tmp_path / "g.yaml"
    cfg.write_text(f"log:\n  levels: {levels}\n")
    with pytest.raises(ConfigError, match="log.levels") as err:
        load_config(str(cfg))
    assert message in str(err.value)


def test_component_levels_load(tmp_path: Path):
    cfg = tmp_path / "g.yaml"
    cfg.write_text("log:\n  levels: {vault: debug, app: warning}\n")
    assert load_config(str(cfg)).log.levels == {"vault": "DEBUG", "app": "WARNING"}


def test_a_name_that_is_not_utf8_is_logged_escaped_not_dropped(tmp_path, capsys):
    """Linux file names are any bytes; Python hands them over with lone surrogates, which a
    strict UTF-8 handler refuses (the line was lost, with a traceback on stderr)."""
    import os

    path = tmp_path / "guard.log"
    setup_logging(path, LogConfig("INFO", 1 << 20, 2, {}))
    name = os.fsdecode(b"1234/run-\xff\xfe/meta.yaml")
    logging.getLogger("guard.vault").warning("cannot keep %s", name)
    logging.getLogger("guard.fixer").warning("after it")
    text = path.read_text(encoding="utf-8")
    assert "cannot keep 1234/run-\\xff\\xfe/meta.yaml" in text
    assert "after it" in text
    err = capsys.readouterr().err
    assert "Logging error" not in err and "run-\\xff\\xfe" in err


def test_credentials_never_reach_the_log_file_and_it_is_private(tmp_path, capsys):
    """The safety net: a credential in a message (or its arguments) is masked in guard.log and
    on stderr; the file is 0600 whatever the umask."""
    import os
    import stat

    path = tmp_path / "logs" / "guard.log"
    old = os.umask(0)
    try:
        setup_logging(path, LogConfig("INFO", 1 << 20, 2, {}))
    finally:
        os.umask(old)
    logging.getLogger("guard.daemon").error("gc running: %s",
                                            "mlflow gc --tracking-uri http://u:hunter2@h:1 "
                                            "--password hunter2 AWS_SECRET_ACCESS_KEY=hunter2")
    text = path.read_text()
    assert "gc running: mlflow gc --tracking-uri http://u:***@h:1 --password ***" in text
    assert "hunter2" not in text and "hunter2" not in capsys.readouterr().err
    if sys.platform != "win32":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_lines_logged_before_setup_reach_the_file(tmp_path):
    from guard.core.logs import log_early

    log_early(logging.getLogger("guard.state"), logging.WARNING, "made the state folder 0700")
    setup_logging(tmp_path / "guard.log", LogConfig("INFO", 1 << 20, 2, {}))
    assert "WARNING guard.state: made the state folder 0700" in (tmp_path / "guard.log").read_text()
