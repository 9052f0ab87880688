"""Log to stderr for the terminal and journald, and to a rotating file under .voicedrop/logs/."""

from __future__ import annotations

import sys
from pathlib import Path

from loguru import logger

from daemon.core.config import LogSettings

FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <7} | {message}"


def setup_logging(settings: LogSettings, log_dir: Path | None) -> None:
    logger.remove()
    logger.add(sys.stderr, level=settings.level, format=FORMAT, backtrace=False)
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        logger.add(
            log_dir / "voicedrop.log",
            level=settings.level,
            format=FORMAT,
            rotation=settings.rotation,
            retention=settings.retention,
            enqueue=True,
        )
