"""Is the tick that should be done by now triaged? `ecm health` answers with one line and an exit
code, for an external monitor (a Kubernetes probe, a cron monitor) that must work when the daemon is
down, which no sensor can notice; it reads the Dagster instance only, starts no run and imports no
Great Expectations. `missed_tick_sensor` asks the same question from the daemon and posts one
`:warning: ECM triage missed the {tick} tick` per tick that is late or missed.

The tick judged is the live tick once its grace period (`schedule.grace_minutes`) has passed, else
the tick before it, so a probe does not flap at every tick while the run is still in its window.
Only runs of that tick itself count: a backfill or a range run never makes it look done.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg

from ecm_pipeline.alerts import failure_of, secret_values
from ecm_pipeline.domain.alerts import first_line, missed_tick_warning, redacted
from ecm_pipeline.partitions import TIMEZONE, live_tick_key, previous_key, tick_of
from ecm_pipeline.resources.slack import SlackDestinationResource
from ecm_pipeline.run_context import BACKFILL_TAG, PARTITION_TAG, RANGE_START, run_materialization
from ecm_pipeline.settings import load_settings

EXIT_CODES = {"ok": 0, "late": 1, "missed": 1, "failed": 2, "never": 3}


@dataclass(frozen=True)
class Health:
    state: str          # ok, late, missed, failed, never
    tick: str
    detail: str
    run_id: str = ""

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.state]

    def line(self) -> str:
        return f"{self.state}: {self.detail}"

    def as_dict(self) -> dict:
        return {**asdict(self), "exit_code": self.exit_code}


def judged_tick(now: datetime, grace: timedelta) -> str:
    """The tick whose triage should be done by `now`: the live tick once its grace has passed, else
    the one before it."""
    live = live_tick_key(now)
    if now < tick_of(live) + grace:
        return previous_key(live) or live
    return live


def _local(stamp: float | None) -> str:
    return datetime.fromtimestamp(stamp, UTC).astimezone(TIMEZONE).strftime("%Y-%m-%d %H:%M") if stamp else "?"


def tick_runs(instance: dg.DagsterInstance, tick: str) -> list[dg.RunRecord]:
    """The runs of this tick itself (not backfills, not ranges), newest first."""
    records = instance.get_run_records(dg.RunsFilter(tags={PARTITION_TAG: tick}))
    return [r for r in records if BACKFILL_TAG not in r.dagster_run.tags and RANGE_START not in r.dagster_run.tags]


def _briefing(instance: dg.DagsterInstance, run_id: str) -> str:
    meta = run_materialization(instance, run_id, "slack_briefing")
    if meta is None:
        return "no briefing in that run"
    if meta.get("skipped"):
        return f"briefing not posted: {meta.get('skipped_reason', '')}"
    return "briefing posted" if meta.get("posted") else "briefing updated"


def health(instance: dg.DagsterInstance, now: datetime, grace: timedelta) -> Health:
    tick = judged_tick(now, grace)
    runs = tick_runs(instance, tick)
    done = [r for r in runs if r.dagster_run.status == dg.DagsterRunStatus.SUCCESS]
    if done:
        run = done[0]
        return Health("ok", tick, f"tick {tick} triaged at {_local(run.end_time)} (run {run.dagster_run.run_id[:8]}); "
                                  f"{_briefing(instance, run.dagster_run.run_id)}", run.dagster_run.run_id)
    if runs and not runs[0].dagster_run.is_finished:
        run = runs[0]
        return Health("late", tick, f"tick {tick} not done {grace.total_seconds() / 60:g} min after it: run "
                                    f"{run.dagster_run.run_id[:8]} {run.dagster_run.status.value} since "
                                    f"{_local(run.start_time or run.create_timestamp.timestamp())}",
                      run.dagster_run.run_id)
    if runs:
        run = runs[0].dagster_run
        failure = failure_of(instance, run)
        where = f"step {failure.step}" if failure.step else "the run"
        return Health("failed", tick, f"tick {tick}: run {run.run_id[:8]} failed at {where}: "
                                      f"{first_line(redacted(failure.error, secret_values()))}", run.run_id)
    if not _ever_triaged(instance):
        return Health("never", tick, "no triage run in this Dagster instance yet")
    return Health("missed", tick, f"tick {tick} has no run {grace.total_seconds() / 60:g} min after it "
                                  "(is the daemon running and the schedule on?)")


def _ever_triaged(instance: dg.DagsterInstance) -> bool:
    """Whether any run of a single tick (not a backfill) is in the instance's recent runs."""
    return any(PARTITION_TAG in r.dagster_run.tags and BACKFILL_TAG not in r.dagster_run.tags
               for r in instance.get_run_records(limit=200))


@dg.sensor(name="missed_tick_sensor", minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Posts ':warning: ECM triage missed the {tick} tick' once per tick when the tick due by now "
                       "(schedule.grace_minutes after it) has no successful run: no run at all, or one still queued "
                       "or running. A failed run is the failure alert's; a backfill never counts as the tick.")
def missed_tick_sensor(context: dg.SensorEvaluationContext, slack: SlackDestinationResource) -> dg.SkipReason:
    grace = timedelta(minutes=load_settings().schedule.grace_minutes)
    state = health(context.instance, datetime.now(UTC), grace)
    warned = set(filter(None, (context.cursor or "").split(",")))
    if state.state not in ("late", "missed", "never"):
        return dg.SkipReason(state.line())
    if state.tick in warned:
        return dg.SkipReason(f"already warned about {state.tick}: {state.line()}")
    slack.publish([missed_tick_warning(state.tick, state.detail)], state.tick)
    # The cursor remembers the last few ticks warned about; the message's identity covers the rest.
    context.update_cursor(",".join(sorted(warned | {state.tick})[-9:]))
    return dg.SkipReason(f"warned: {state.line()}")
