"""The one partitions definition: a snapshot per tick (07:00, 14:00, 20:00 Asia/Dubai). The key
names the tick (`2026-11-21-14:00`) and the snapshot is taken as of that tick."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg

from ecm_pipeline.settings import load_settings

KEY_FORMAT = "%Y-%m-%d-%H:%M"
_schedule = load_settings().schedule
TIMEZONE = ZoneInfo(_schedule.timezone)

# end_offset=1: the window that starts at the latest tick is a partition as soon as the tick passes,
# so the 14:00 run can snapshot "now" as partition ...-14:00.
triage_partitions = dg.TimeWindowPartitionsDefinition(
    cron_schedule=_schedule.cron,
    start=_schedule.first_partition,
    fmt=KEY_FORMAT,
    timezone=_schedule.timezone,
    end_offset=1,
)


class PartitionKeyError(ValueError):
    """A partition key that does not name a tick."""


def tick_of(partition_key: str) -> datetime:
    """The tick a partition key names, as an aware datetime in the schedule's timezone."""
    try:
        tick = datetime.strptime(partition_key, KEY_FORMAT).replace(tzinfo=TIMEZONE)
    except ValueError:
        raise PartitionKeyError(f"{partition_key!r} is not a partition key like 2026-11-21-14:00") from None
    if tick.strftime("%H:%M") not in _schedule.ticks:
        raise PartitionKeyError(f"{partition_key!r} is not a tick (ticks are {', '.join(_schedule.ticks)})")
    return tick


def as_of_utc(partition_key: str) -> datetime:
    """The snapshot time of a partition as a naive UTC datetime (the warehouse stores UTC)."""
    return tick_of(partition_key).astimezone(UTC).replace(tzinfo=None)


def current_partition_key(now: datetime | None = None) -> str:
    """The latest tick at or before `now`."""
    local = (now or datetime.now(UTC)).astimezone(TIMEZONE)
    for day in (local.date(), local.date() - timedelta(days=1)):
        for tick in sorted(_schedule.ticks, reverse=True):
            hour, minute = (int(part) for part in tick.split(":"))
            candidate = datetime(day.year, day.month, day.day, hour, minute, tzinfo=TIMEZONE)
            if candidate <= local:
                return candidate.strftime(KEY_FORMAT)
    raise PartitionKeyError(f"no tick in the day before {local.isoformat()}")
