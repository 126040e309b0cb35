"""The failure alert (SPEC §9): a failed run of the live tick, started by the schedule or by
`ecm triage`, gets exactly one `:rotating_light: ECM Manager Error` naming the failed asset, with
no secret and no stack trace, however often the sensor looks at it; backfills get none."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import dagster as dg

from ecm_pipeline.alerts import failure_alert_sensor
from ecm_pipeline.assets import triage_assets
from ecm_pipeline.checks import quality_gates
from ecm_pipeline.domain.alerts import ALERT_LIMIT, ALERT_TITLE, Failure, failure_alert
from ecm_pipeline.jobs import triage_schedule
from ecm_pipeline.partitions import triage_partitions
from ecm_pipeline.resources import environment_resources
from ecm_pipeline_tests.conftest import QUIET

SECRET = "Top-Secret-Pw-9"


def unreachable_warehouse_url() -> str:
    with socket.socket() as sock:          # a port nothing listens on: the connection is refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"postgresql+psycopg2://ecm_reader:{SECRET}@127.0.0.1:{port}/warehouse"


def alerts(home: Path) -> list[dict]:
    """The alert messages in the outbox as they stand now: one per (message, run), latest text."""
    latest: dict[tuple[str, str], dict] = {}
    for path in sorted((home / "outbox").glob("*.json")) if (home / "outbox").exists() else []:
        call = json.loads(path.read_text())
        payload = (call.get("metadata") or {}).get("event_payload") or {}
        if payload.get("message") == "failure_alert":
            latest[(payload["message"], payload["partition"])] = call
    return list(latest.values())


def posts(home: Path) -> list[str]:
    return [p.name for p in (home / "outbox").glob("*chat.postMessage*.json")] if (home / "outbox").exists() else []


def run_triage(key: str, instance: dg.DagsterInstance, tags: dict[str, str]) -> dg.ExecuteInProcessResult:
    """The triage job's assets for one tick with this environment's resources (read now)."""
    return dg.materialize([*triage_assets, *quality_gates], partition_key=key, instance=instance,
                          resources=environment_resources(), run_config=QUIET, raise_on_error=False, tags=tags)


def evaluate_sensor(instance: dg.DagsterInstance, run_id: str) -> None:
    """The daemon's evaluation of the run-failure sensor for one failed run."""
    run = instance.get_run_by_id(run_id)
    [failure] = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
    context = dg.build_run_status_sensor_context(
        sensor_name="failure_alert_sensor", dagster_event=failure.event_log_entry.dagster_event,
        dagster_instance=instance, dagster_run=run, resources={"slack": environment_resources()["slack"]},
    ).for_run_failure()
    failure_alert_sensor(context)


def test_the_alert_is_short_escaped_and_holds_no_secret() -> None:
    failure = Failure("ecm_triage", "0123456789abcdef", "2026-11-29-14:00", ("stuck_orders", "excluded_orders"),
                      "snapshot", f"could not connect to postgresql://u:{SECRET}@db:5439/wh <!channel>\n"
                      "Traceback (most recent call last):\n  File ...")
    message = failure_alert(failure, "http://dagster.internal/runs/0123456789abcdef", secrets=["xoxb-secret-token"])
    assert message.text.startswith(ALERT_TITLE + "\n")
    assert "`stuck_orders`" in message.text and "tick 2026-11-29-14:00" in message.text
    assert SECRET not in message.text and "u:***@db" in message.text
    assert "&lt;!channel&gt;" in message.text and "Traceback" not in message.text
    assert "<http://dagster.internal/runs/0123456789abcdef|Open run 01234567 in Dagster>" in message.text
    assert len(message.text) <= ALERT_LIMIT and len(message.blocks) == 1
    many = failure_alert(Failure("ecm_triage", "r", "", tuple(f"asset_{i:03d}" for i in range(80)), "s", "boom"),
                         "http://x/runs/r")
    assert len(many.text) <= ALERT_LIMIT and "80 assets" in many.text


def test_a_failed_ecm_triage_posts_one_alert_and_the_sensor_adds_none(demo_env, monkeypatch) -> None:
    home, key = demo_env
    # A fresh process, as a user runs it: the code location reads the warehouse URL when it loads.
    env = {**os.environ, "ECM_WAREHOUSE_URL": unreachable_warehouse_url()}
    done = subprocess.run([sys.executable, "-m", "ecm_pipeline.cli", "triage"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 1
    assert "FAILED" in done.stderr and "Failure alert chat.postMessage" in done.stderr
    assert SECRET not in done.stderr + done.stdout and "Traceback" not in done.stderr
    monkeypatch.setenv("ECM_WAREHOUSE_URL", env["ECM_WAREHOUSE_URL"])

    [alert] = alerts(home)
    assert alert["text"].startswith(ALERT_TITLE)
    assert "`stuck_orders`" in alert["text"] and SECRET not in json.dumps(alert)
    assert "/runs/" in alert["text"] and key in alert["text"]

    # The daemon's sensor sees the same run later, twice: still one alert, never a second post.
    instance = dg.DagsterInstance.get()
    [run] = instance.get_runs(limit=1)
    evaluate_sensor(instance, run.run_id)
    evaluate_sensor(instance, run.run_id)
    assert len(alerts(home)) == 1 and len(posts(home)) == 1


def test_a_failed_scheduled_run_gets_one_alert_however_often_the_sensor_runs(demo_env, monkeypatch) -> None:
    home, key = demo_env
    monkeypatch.setenv("ECM_WAREHOUSE_URL", unreachable_warehouse_url())
    instance = dg.DagsterInstance.ephemeral()
    tick = dg.build_schedule_context(instance=instance,
                                     scheduled_execution_time=triage_partitions.time_window_for_partition_key(key).start)
    [request] = triage_schedule.evaluate_tick(tick).run_requests
    assert request.partition_key == key
    result = run_triage(key, instance, {**request.tags, "dagster/schedule_name": "triage_schedule"})
    assert not result.success
    for _ in range(3):
        evaluate_sensor(instance, result.run_id)
    [alert] = alerts(home)
    assert "`stuck_orders`" in alert["text"] and SECRET not in json.dumps(alert)
    assert len(posts(home)) == 1


def test_a_failed_backfill_gets_no_alert(demo_env, monkeypatch) -> None:
    home, key = demo_env
    monkeypatch.setenv("ECM_WAREHOUSE_URL", unreachable_warehouse_url())
    instance = dg.DagsterInstance.ephemeral()
    result = run_triage(key, instance, {"dagster/backfill": "b1"})
    assert not result.success
    evaluate_sensor(instance, result.run_id)
    assert alerts(home) == []
