"""Schedule ticks: each tick runs the partition named after it, as of that tick."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from ecm_pipeline.definitions import defs
from ecm_pipeline.partitions import PartitionKeyError, as_of_utc, live_tick_key, tick_of

DUBAI = ZoneInfo("Asia/Dubai")


@pytest.mark.parametrize("tick", ["07:00", "14:00", "20:00"])
def test_tick_runs_its_own_partition(tick: str) -> None:
    schedule = defs.resolve_schedule_def("triage_schedule")
    hour, minute = map(int, tick.split(":"))
    when = datetime(2026, 11, 21, hour, minute, tzinfo=DUBAI)
    # An ephemeral instance, not `instance_for_test()`: leaving that context manager leaves Dagster's
    # instance context variable dangling, which breaks later `dg.materialize` calls in this process.
    context = dg.build_schedule_context(instance=dg.DagsterInstance.ephemeral(), scheduled_execution_time=when,
                                        repository_def=defs.get_repository_def())
    requests = schedule.evaluate_tick(context).run_requests
    assert [r.partition_key for r in requests] == [f"2026-11-21-{tick}"]
    assert requests[0].run_key == f"2026-11-21-{tick}"
    assert requests[0].tags["ecm/trigger"] == "schedule"   # as `ecm` tags its runs cli / cli-backfill
    assert schedule.cron_schedule == "0 7,14,20 * * *" and schedule.execution_timezone == "Asia/Dubai"


def test_the_14_00_partition_is_a_snapshot_as_of_14_00_dubai() -> None:
    assert as_of_utc("2026-11-21-14:00") == datetime(2026, 11, 21, 10, 0)
    assert tick_of("2026-11-21-07:00") == datetime(2026, 11, 21, 7, 0, tzinfo=DUBAI)


def test_current_partition_is_the_latest_tick() -> None:
    assert live_tick_key(datetime(2026, 11, 21, 14, 30, tzinfo=DUBAI)) == "2026-11-21-14:00"
    assert live_tick_key(datetime(2026, 11, 21, 6, 59, tzinfo=DUBAI)) == "2026-11-20-20:00"
    assert live_tick_key(datetime(2026, 11, 21, 20, 0, tzinfo=DUBAI)) == "2026-11-21-20:00"


@pytest.mark.parametrize("bad", ["2026-11-21 14:00", "2026-11-21-15:00", "yesterday"])
def test_bad_partition_keys_are_refused_clearly(bad: str) -> None:
    with pytest.raises(PartitionKeyError, match="2026-11-21-14:00|not a tick"):
        tick_of(bad)
