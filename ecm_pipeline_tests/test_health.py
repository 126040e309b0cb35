"""`ecm health` in each state (ok, late, missed, failed, never) with its exit code; the tick it
judges; a backfill of the tick never makes it look done; it imports no Great Expectations."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import timedelta

import dagster as dg
import pytest

from ecm_pipeline.assets import triage_assets
from ecm_pipeline.checks import quality_gates
from ecm_pipeline.cli import main
from ecm_pipeline.health import health, judged_tick, missed_tick_sensor
from ecm_pipeline.partitions import tick_of
from ecm_pipeline.resources import environment_resources
from ecm_pipeline.resources.warehouse import WarehouseResource
from ecm_pipeline_tests.conftest import QUIET
from ecm_pipeline_tests.test_pipeline import materialize

NO_GRACE = timedelta(0)


def test_the_tick_judged_is_the_live_one_once_its_grace_has_passed() -> None:
    grace = timedelta(minutes=45)
    assert judged_tick(tick_of("2026-11-29-14:00") + timedelta(minutes=50), grace) == "2026-11-29-14:00"
    assert judged_tick(tick_of("2026-11-29-14:00") + timedelta(minutes=10), grace) == "2026-11-29-07:00"
    assert judged_tick(tick_of("2026-11-29-07:00") + timedelta(minutes=10), grace) == "2026-11-28-20:00"


def test_every_state_with_its_exit_code(demo_env) -> None:
    _, key = demo_env
    now = tick_of(key) + timedelta(minutes=1)
    instance = dg.DagsterInstance.ephemeral()
    assert (health(instance, now, NO_GRACE).state, health(instance, now, NO_GRACE).exit_code) == ("never", 3)

    earlier = (tick_of(key) - timedelta(days=1)).strftime("%Y-%m-%d-%H:%M")
    assert materialize(earlier, instance).success                                  # yesterday's tick was run
    assert materialize(key, instance, tags={"dagster/backfill": "b1"}).success   # and a backfill of this one
    missed = health(instance, now, NO_GRACE)
    assert (missed.state, missed.exit_code, missed.tick) == ("missed", 1, key) and key in missed.line()

    broken = {**environment_resources(), "warehouse": WarehouseResource(url="postgresql+psycopg2://u:pw@127.0.0.1:1/x")}
    assert not dg.materialize([*triage_assets, *quality_gates], partition_key=key, resources=broken,
                              instance=instance, run_config=QUIET, raise_on_error=False).success
    failed = health(instance, now, NO_GRACE)
    assert (failed.state, failed.exit_code) == ("failed", 2)
    assert "step snapshot" in failed.line() and "127.0.0.1:1" in failed.line() and ":pw@" not in failed.line()

    queued = dg.DagsterRun(job_name="ecm_triage", run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.STARTED,
                           tags={"dagster/partition": key})
    instance.add_run(queued)
    late = health(instance, now, NO_GRACE)
    assert (late.state, late.exit_code, late.run_id) == ("late", 1, queued.run_id) and "STARTED" in late.line()

    ok_run = materialize(key, instance)
    assert ok_run.success
    ok = health(instance, now, NO_GRACE)
    assert (ok.state, ok.exit_code, ok.run_id) == ("ok", 0, ok_run.run_id) and "briefing posted" in ok.line()


@pytest.mark.parametrize("as_json", [False, True])
def test_the_command_prints_one_line_or_json_and_exits_with_the_state(ecm_env, capsys, as_json: bool) -> None:
    assert main(["health", *(["--json"] if as_json else [])]) == 3
    out = capsys.readouterr().out.strip()
    assert "\n" not in out
    if as_json:
        assert json.loads(out)["state"] == "never" and json.loads(out)["exit_code"] == 3
    else:
        assert out.startswith("never: ")


def test_health_imports_no_great_expectations(ecm_env) -> None:
    probe = ("import sys\nfrom ecm_pipeline.cli import main\ncode = main(['health'])\n"
             "assert 'great_expectations' not in sys.modules\nsys.exit(0 if code == 3 else 1)")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=120).returncode == 0


# --- the missed-tick sensor -------------------------------------------------------------------------


def missed_warnings(home) -> list[str]:
    calls = [json.loads(p.read_text()) for p in sorted((home / "outbox").glob("*.json"))] if (
        home / "outbox").exists() else []
    return [c["text"] for c in calls if c["metadata"]["event_payload"]["message"] == "missed_tick"]


def evaluate(instance: dg.DagsterInstance, cursor: str | None = None) -> str | None:
    """One evaluation of the missed-tick sensor, as the daemon runs it; returns the new cursor."""
    context = dg.build_sensor_context(instance=instance, cursor=cursor,
                                      resources={"slack": environment_resources()["slack"]})
    missed_tick_sensor(context)
    return context.cursor


def test_a_missed_tick_is_warned_about_once_and_a_backfill_does_not_count(demo_env, settings_overlay) -> None:
    home, key = demo_env
    settings_overlay("schedule: {grace_minutes: 0}\n")   # the live tick is due at once
    instance = dg.DagsterInstance.ephemeral()
    assert materialize(key, instance, tags={"dagster/backfill": "b1"}).success   # never counts as the tick
    cursor = evaluate(instance)
    [warning] = missed_warnings(home)
    assert warning.startswith(f":warning: ECM triage missed the {key} tick\n")
    assert "no triage run in this Dagster instance yet" in warning   # only a backfill: as if none
    calls = len(list((home / "outbox").glob("*.json")))
    assert evaluate(instance, cursor) == cursor                       # evaluated again: nothing more
    assert len(list((home / "outbox").glob("*.json"))) == calls


def test_no_warning_after_a_successful_or_a_failed_run(demo_env, settings_overlay) -> None:
    home, key = demo_env
    settings_overlay("schedule: {grace_minutes: 0}\n")
    instance = dg.DagsterInstance.ephemeral()
    broken = {**environment_resources(), "warehouse": WarehouseResource(url="postgresql+psycopg2://u:pw@127.0.0.1:1/x")}
    assert not dg.materialize([*triage_assets, *quality_gates], partition_key=key, resources=broken,
                              instance=instance, run_config=QUIET, raise_on_error=False).success
    evaluate(instance)                                                # failed: the failure alert's job
    assert missed_warnings(home) == []
    assert materialize(key, instance).success
    evaluate(instance)
    assert missed_warnings(home) == []
