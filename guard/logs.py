"""One logging setup for the daemon: a rotating file in the state folder plus stderr."""

from __future__ import annotations

import logging
import sys
from logging.handlers import RotatingFileHandler
from pathlib import Path

from .config import LogConfig

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(path: Path, cfg: LogConfig) -> None:
    """Send the `guard` loggers to `path` (rotating) and to stderr (for journald or a console)."""
    logger = logging.getLogger("guard")
    logger.setLevel(cfg.level)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    file_handler = RotatingFileHandler(path, maxBytes=cfg.max_bytes, backupCount=cfg.backups,
                                       encoding="utf-8")
    stream_handler = logging.StreamHandler(sys.stderr)
    for handler in (file_handler, stream_handler):
        handler.setFormatter(logging.Formatter(FORMAT))
        logger.addHandler(handler)
