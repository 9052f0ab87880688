"""Log to stderr for the terminal and journald, and to a rotating file under .voicedrop/logs/."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Any

from loguru import logger

from daemon.core.config import ConfigError, LogSettings, shorten

FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <7} | {message}"
MAX_MESSAGE = 20_000  # characters of one log line, traceback included


def setup_logging(settings: LogSettings, log_dir: Path | None) -> None:
    logger.remove()
    logger.configure(patcher=cap_message)
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


def cap_message(record: Any) -> None:
    """No line in the log outgrows MAX_MESSAGE, whatever user data a message quotes."""
    record["message"] = shorten(record["message"], MAX_MESSAGE)


def bounded_traceback(exc: BaseException) -> str:
    """The traceback of `exc` for the log, its middle cut when an exception's text is huge
    (a message quoting a whole input): the frames at both ends are what a bug report needs."""
    text = "".join(traceback.format_exception(exc)).rstrip()
    budget = MAX_MESSAGE - 2000  # the rest of the line fits beside it under the cap
    if len(text) <= budget:
        return text
    half = budget // 2
    return f"{text[:half]}\n… ({len(text) - 2 * half} characters cut) …\n{text[-half:]}"
