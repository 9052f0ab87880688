"""Log to stderr for the terminal and journald, and to a rotating file under .voicedrop/logs/."""

from __future__ import annotations

import sys
from pathlib import Path

from loguru import logger

from daemon.core.config import ConfigError, LogSettings

FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <7} | {message}"


def setup_logging(settings: LogSettings, log_dir: Path | None) -> None:
    logger.remove()
    logger.add(sys.stderr, level=settings.level, format=FORMAT, backtrace=False)
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        try:
            logger.add(
                log_dir / "voicedrop.log",
                level=settings.level,
                format=FORMAT,
                rotation=settings.rotation,
                retention=settings.retention,
                enqueue=True,
            )
        except ValueError as exc:  # loguru parses rotation only here
            raise ConfigError(
                f'logging.rotation: {settings.rotation[:80]!r} is neither a size ("10 MB") '
                f'nor an interval ("1 day"): {exc}'
            ) from exc
