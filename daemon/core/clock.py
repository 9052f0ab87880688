"""The wall clock in the machine's time zone (the training window is local time). What reads
it takes a `Clock`, so tests step their own instead of waiting for the real one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

Clock = Callable[[], datetime]


def now_local() -> datetime:
    return datetime.now().astimezone()
