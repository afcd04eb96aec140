"""One logging setup for the daemon and everything it runs.

- `guard.log` in the state folder, rotating at log.max_bytes with log.backups old files;
- stderr, which systemd hands to the journal: there each line carries its syslog priority
  (`<3>` for errors) and no timestamp of its own, so `journalctl -p err` works;
- a level per component (log.levels, e.g. `vault: DEBUG`) over the default log.level;
- `server.log`, the MLflow server's own output verbatim, rotating by the same settings.

A file name that is not UTF-8 (any bytes on Linux; Python hands it over with lone surrogates)
is written as `\\xNN` escapes: a strict UTF-8 handler would fail on it and drop the line.
Log files are created 0600 (the state folder is private), and every line passes through
`guard.core.redact` on its way out: command lines are redacted where they are captured, this
is the safety net for a credential that reaches a message some other way.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Mapping
from logging.handlers import RotatingFileHandler
from pathlib import Path

from guard.core.config import LOG_COMPONENTS, LogConfig
from guard.core.redact import redact
from guard.core.safeio import printable

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL_FORMAT = "%(levelname)s %(name)s: %(message)s"
PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
            logging.CRITICAL: 2}


class Formatter(logging.Formatter):
    """Lines with the bytes of non-UTF-8 names escaped (safeio.printable), so they can be
    written to any UTF-8 file or stream and still name the same file."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))


class JournalFormatter(Formatter):
    """journald reads a leading `<N>` on a stream line as the line's syslog priority."""

    def format(self, record: logging.LogRecord) -> str:
        return f"<{PRIORITY.get(record.levelno, 6)}>" + super().format(record)


def stderr_is_journal(env: Mapping[str, str] | None = None) -> bool:
    """True when stderr is the journal stream systemd connected (JOURNAL_STREAM=dev:inode)."""
    stream = (os.environ if env is None else env).get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return stream == f"{st.st_dev}:{st.st_ino}"


def _reset(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


class Redact(logging.Filter):
    """Masks credentials in a line before any handler writes it (the record is rewritten, so
    each handler after this one sees the masked text too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: the handler reports it (handleError), not us
            return True
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def _private_opener(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


class LogFile(RotatingFileHandler):
    """A rotating log file, 0600, that stays quiet when the state folder is full or read-only:
    the same line still reaches stderr (the journal), and logging's default of printing a
    traceback to stderr for every line that cannot be written would bury it."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        super().__init__(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8",
                         errors="backslashreplace", delay=False)
        self.addFilter(Redact())

    def _open(self):  # logging's hook that opens the file
        return open(self.baseFilename, self.mode, encoding=self.encoding, errors=self.errors,
                    opener=_private_opener)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        return


# Lines logged before setup_logging (e.g. the state folder tightened by `StateDir.create`),
# replayed into the log once it exists.
_early: list[logging.LogRecord] = []


def log_early(logger: logging.Logger, level: int, message: str) -> None:
    """Log now when the guard's log is set up, else keep the line for `setup_logging`."""
    if logging.getLogger("guard").handlers:
        logger.log(level, message)
    else:
        _early.append(logger.makeRecord(logger.name, level, "", 0, message, (), None))


def setup_logging(path: Path, cfg: LogConfig, extra: Iterable[logging.Handler] = ()) -> None:
    """Send the `guard` loggers to `path`, to stderr and to `extra` handlers (the Windows
    Event Log keeps its own level)."""
    logger = logging.getLogger("guard")
    logger.setLevel(cfg.level)
    logger.propagate = False
    _reset(logger)
    for component in LOG_COMPONENTS:
        logging.getLogger(f"guard.{component}").setLevel(cfg.levels.get(component, logging.NOTSET))
    path.parent.mkdir(parents=True, exist_ok=True)
    file_handler = LogFile(path, cfg.max_bytes, cfg.backups)
    file_handler.setFormatter(Formatter(FORMAT))
    stream_handler = logging.StreamHandler(sys.stderr)
    stream_handler.addFilter(Redact())
    stream_handler.setFormatter(JournalFormatter(JOURNAL_FORMAT) if stderr_is_journal()
                                else Formatter(FORMAT))
    handlers: list[logging.Handler] = [file_handler, stream_handler, *extra]
    for handler in handlers:
        logger.addHandler(handler)
    while _early:
        record = _early.pop(0)
        if logging.getLogger(record.name).isEnabledFor(record.levelno):
            logger.handle(record)


def server_output_logger(path: Path, cfg: LogConfig) -> logging.Logger:
    """A logger that writes the server's own output, verbatim, to a rotating file."""
    logger = logging.getLogger("guard.server.output")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    _reset(logger)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = LogFile(path, cfg.max_bytes, cfg.backups)
    handler.setFormatter(Formatter("%(message)s"))
    logger.addHandler(handler)
    return logger
