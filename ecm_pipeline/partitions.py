"""The one partitions definition: a snapshot per tick (07:00, 14:00, 20:00 Asia/Dubai) from the
go-live date on. The key names the tick (`2026-11-21-14:00`) and the snapshot is taken as of it.

Every path that brings a key in (the CLI, a run tag, the launchpad, a backfill) goes through
`validated_key`: a key is parsed and formatted again, and only one that round-trips to an existing
partition is accepted; everything else gets one line naming the valid range."""

from __future__ import annotations

from collections.abc import Sequence
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
    start=_schedule.go_live,
    fmt=KEY_FORMAT,
    timezone=_schedule.timezone,
    end_offset=1,
)


class PartitionKeyError(ValueError):
    """A partition key that does not name a tick of this deployment; the message is one line."""


def _parse(key: str) -> datetime:
    try:
        tick = datetime.strptime(key, KEY_FORMAT).replace(tzinfo=TIMEZONE)
    except (TypeError, ValueError):
        raise PartitionKeyError(f"{key!r} is not a partition key like 2026-11-21-14:00") from None
    if tick.strftime(KEY_FORMAT) != key:
        raise PartitionKeyError(f"{key!r} is not written as a partition key: did you mean {tick.strftime(KEY_FORMAT)}?")
    if tick.strftime("%H:%M") not in _schedule.ticks:
        raise PartitionKeyError(f"{key!r} is not a tick (ticks are {', '.join(_schedule.ticks)} "
                                f"{_schedule.timezone})")
    return tick


def tick_of(partition_key: str) -> datetime:
    """The tick a canonical partition key names, as an aware datetime in the schedule's timezone."""
    return _parse(partition_key)


def as_of_utc(partition_key: str) -> datetime:
    """The snapshot time of a partition as a naive UTC datetime (the warehouse stores UTC)."""
    return tick_of(partition_key).astimezone(UTC).replace(tzinfo=None)


def live_tick_key(now: datetime | None = None) -> str:
    """The live tick (SPEC §12): the latest tick at or before `now`."""
    local = (now or datetime.now(UTC)).astimezone(TIMEZONE)
    for day in (local.date(), local.date() - timedelta(days=1)):
        for tick in sorted(_schedule.ticks, reverse=True):
            hour, minute = (int(part) for part in tick.split(":"))
            candidate = datetime(day.year, day.month, day.day, hour, minute, tzinfo=TIMEZONE)
            if candidate <= local:
                return candidate.strftime(KEY_FORMAT)
    raise PartitionKeyError(f"no tick in the day before {local.isoformat()}")


def valid_range(now: datetime | None = None) -> str:
    return f"{_schedule.go_live} to {live_tick_key(now)}"


def validated_key(key: str, now: datetime | None = None) -> str:
    """`key` if it names an existing partition: a tick from the go-live date to the live tick."""
    tick = _parse(key)
    if tick < _parse(_schedule.go_live):
        raise PartitionKeyError(f"{key} is before the first partition (valid ticks: {valid_range(now)})")
    if tick > _parse(live_tick_key(now)):
        raise PartitionKeyError(f"{key} is in the future (valid ticks: {valid_range(now)})")
    return key


def keys_between(first: str, last: str, now: datetime | None = None) -> list[str]:
    """Every tick from `first` to `last`, both validated; a reversed range is an error."""
    first, last = validated_key(first, now), validated_key(last, now)
    if _parse(first) > _parse(last):
        raise PartitionKeyError(f"the range {first} to {last} is reversed: the first tick comes after the last")
    return triage_partitions.get_partition_keys_in_range(dg.PartitionKeyRange(first, last))


def previous_key(key: str) -> str | None:
    """The tick before `key`, or None for the first partition."""
    window = triage_partitions.time_window_for_partition_key(key)
    earlier = triage_partitions.get_prev_partition_window(window.start)
    return triage_partitions.get_partition_key_for_timestamp(earlier.start.timestamp()) if earlier else None


def is_live(keys: Sequence[str], now: datetime | None = None) -> bool:
    return list(keys) == [live_tick_key(now)]
