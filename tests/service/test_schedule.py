"""daemon.service.schedule in this process: when the training window is open, and the catch-up
of a start missed while the daemon was down, on an injected clock (never the wall clock)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from daemon.core.config import Settings, TrainingSettings
from daemon.core.paths import Root
from daemon.service.schedule import (
    TrainingSchedule,
    in_window,
    last_start,
    next_start,
    window_end,
)
from tests.conftest import SteppingClock

NIGHTLY = TrainingSettings(schedule="0 23 * * *", until="07:00", catch_up=3600)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute).astimezone()


@pytest.mark.parametrize(
    ("now", "open_"),
    [
        (at(2, 22, 59), False),  # a minute before the start
        (at(2, 23, 0), True),
        (at(3, 3, 0), True),  # after midnight, same window
        (at(3, 6, 59), True),
        (at(3, 7, 0), False),  # `until` itself is outside
        (at(3, 12, 0), False),
    ],
)
def test_the_window_runs_from_the_start_over_midnight_to_until(now: datetime, open_: bool) -> None:
    assert in_window(NIGHTLY, now) is open_


def test_last_start_next_start_and_window_end() -> None:
    assert last_start(NIGHTLY, at(3, 3, 0)) == at(2, 23, 0)
    assert next_start(NIGHTLY, at(3, 3, 0)) == at(3, 23, 0)
    assert window_end(NIGHTLY, at(2, 23, 0)) == at(3, 7, 0)
    same_day = TrainingSettings(schedule="0 1 * * *", until="05:30")
    assert window_end(same_day, at(3, 1, 0)) == at(3, 5, 30)
    assert not in_window(same_day, at(3, 5, 30)) and in_window(same_day, at(3, 5, 29))


def schedule_at(
    tmp_path: Path, now: datetime, catch_up: float = 3600
) -> tuple[TrainingSchedule, list[datetime]]:
    fired: list[datetime] = []
    training = TrainingSettings(schedule="0 23 * * *", until="07:00", catch_up=catch_up)
    clock = SteppingClock(now)
    schedule = TrainingSchedule(
        Root.at(tmp_path), Settings(training=training), lambda: fired.append(clock.moment), clock
    )
    return schedule, fired


def test_a_missed_start_is_caught_up_once_and_remembered_across_restarts(tmp_path: Path) -> None:
    (tmp_path / ".voicedrop").mkdir()
    schedule, fired = schedule_at(tmp_path, at(2, 23, 40))
    schedule.catch_up()
    assert len(fired) == 1
    assert schedule.last_fired() == at(2, 23, 40)
    schedule.catch_up()
    restarted, fired_again = schedule_at(tmp_path, at(2, 23, 50))
    restarted.catch_up()
    assert len(fired) == 1 and fired_again == [], "the same missed start fired twice"
    next_night, fired_next = schedule_at(tmp_path, at(3, 23, 10))
    next_night.catch_up()
    assert len(fired_next) == 1, "the next night's missed start is a new one"


def test_a_start_older_than_catch_up_is_not_caught_up(tmp_path: Path) -> None:
    (tmp_path / ".voicedrop").mkdir()
    late, fired = schedule_at(tmp_path, at(3, 0, 1))  # 61 min after the start
    late.catch_up()
    assert fired == []
    never, fired_never = schedule_at(tmp_path, at(2, 23, 1), catch_up=0)
    never.catch_up()
    assert fired_never == []
