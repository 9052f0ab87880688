"""daemon.core.logs: the log stays readable and bounded whatever a message quotes."""

from __future__ import annotations

from loguru import logger

from daemon.core.config import LogSettings
from daemon.core.logs import MAX_MESSAGE, setup_logging


def test_no_log_line_outgrows_the_cap(tmp_path):
    setup_logging(LogSettings(), tmp_path)
    try:
        logger.error("refusing {}", "y" * 3_000_000)
        logger.complete()
    finally:
        logger.remove()
    text = (tmp_path / "voicedrop.log").read_text(encoding="utf-8")
    assert "refusing yyy" in text
    assert len(text) < MAX_MESSAGE + 200
