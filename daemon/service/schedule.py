"""When fine-tuning may run: a cron start (`training.schedule`) and a time of day it must stop
by (`training.until`). APScheduler fires the starts; a start missed while the machine was off
fires once at start-up if it is no older than `training.catch_up` seconds."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta

from loguru import logger

from daemon.core import atomic
from daemon.core.clock import Clock, now_local
from daemon.core.config import Settings, TrainingSettings
from daemon.core.paths import Root


def trigger(training: TrainingSettings):
    from apscheduler.triggers.cron import CronTrigger

    return CronTrigger.from_crontab(training.schedule)


def last_start(training: TrainingSettings, now: datetime) -> datetime | None:
    """The most recent scheduled start at or before `now` (a window lasts under a day, and
    catch-up looks back `catch_up` seconds at most)."""
    cron = trigger(training)
    look_back = timedelta(seconds=max(86400.0, training.catch_up) + 60)
    moment = cron.get_next_fire_time(None, now - look_back)
    latest = None
    while moment is not None and moment <= now:
        latest = moment
        moment = cron.get_next_fire_time(moment, moment + timedelta(seconds=1))
    return latest


def window_end(training: TrainingSettings, start: datetime) -> datetime:
    """The first `until` time of day after `start`."""
    hours, minutes = (int(part) for part in training.until.split(":"))
    end = start.replace(hour=hours, minute=minutes, second=0, microsecond=0)
    return end if end > start else end + timedelta(days=1)


def in_window(training: TrainingSettings, now: datetime) -> bool:
    start = last_start(training, now)
    return start is not None and now < window_end(training, start)


def next_start(training: TrainingSettings, now: datetime) -> datetime | None:
    return trigger(training).get_next_fire_time(None, now)


class TrainingSchedule:
    """Fires `on_start` at every scheduled start, and once at start-up for a missed one."""

    def __init__(
        self,
        root: Root,
        settings: Settings,
        on_start: Callable[[], None],
        now: Clock = now_local,
    ) -> None:
        self.root = root
        self.training = settings.training
        self.on_start = on_start
        self.now = now  # the wall clock; tests pass their own
        self.state_file = root.state / "schedule.json"
        self.scheduler = None

    def start(self) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        self.catch_up()
        self.scheduler = BackgroundScheduler()
        self.scheduler.add_job(
            self.fire,
            trigger(self.training),
            coalesce=True,
            misfire_grace_time=max(1, int(self.training.catch_up)),
            max_instances=1,
        )
        self.scheduler.start()

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)

    def fire(self) -> None:
        atomic.write_text(self.state_file, json.dumps({"last_fired": self.now().isoformat()}))
        logger.info("training window opens (until {})", self.training.until)
        self.on_start()

    def catch_up(self) -> None:
        """A start missed while the daemon was down runs now, once, if recent enough."""
        now = self.now()
        missed = last_start(self.training, now)
        if missed is None or (now - missed).total_seconds() > self.training.catch_up:
            return
        if self.last_fired() is not None and self.last_fired() >= missed:
            return
        logger.info(
            "catching up the training start missed at {}", missed.isoformat(timespec="minutes")
        )
        self.fire()

    def last_fired(self) -> datetime | None:
        if not self.state_file.exists():
            return None
        return datetime.fromisoformat(json.loads(self.state_file.read_text())["last_fired"])
