"""The Dagster UI serves the project as `make dev` does: `dagster-webserver -w workspace.yaml`
starts in a fresh DAGSTER_HOME with no demo data under ECM_HOME, and its GraphQL API reports the
`ecm_pipeline` code location loaded without error, with its assets and the `triage_schedule`
(07:00, 14:00 and 20:00 Asia/Dubai); and a backfill launched from it, as the asset graph does, is
one harmless run."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from ecm_pipeline.partitions import triage_partitions
from ecm_pipeline.resources.sheet import LocalSheetStore
from ecm_pipeline_tests.conftest import copy_demo

PROJECT_ROOT = Path(__file__).resolve().parents[1]
LOCATION = "ecm_pipeline"
ASSETS = {"stuck_orders", "qualified_orders", "scored_orders", "assignments", "slack_briefing"}
STARTUP_DEADLINE_SECONDS = 120.0

WORKSPACE_QUERY = """
{
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on RepositoryLocation {
            repositories {
              name
              assetNodes { assetKey { path } }
              schedules { name cronSchedule executionTimezone }
            }
          }
          ... on PythonError { message stack }
        }
      }
    }
    ... on PythonError { message stack }
  }
}
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(url, data=json.dumps({"query": query, "variables": variables or {}}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:   # GraphQL answers errors with a body that says what failed
        raise AssertionError(f"HTTP {exc.code}: {exc.read()[:2000]!r}") from None
    assert "errors" not in body, body["errors"]
    return body["data"]


def location_entry(workspace: dict) -> dict:
    assert workspace["__typename"] == "Workspace", workspace
    entries = {entry["name"]: entry for entry in workspace["locationEntries"]}
    assert LOCATION in entries, f"no code location {LOCATION!r} in {sorted(entries)}"
    return entries[LOCATION]


@contextmanager
def started(command: list[str], env: dict[str, str], logs: Path) -> Iterator[subprocess.Popen]:
    """A long-running process from the project root, stopped on the way out."""
    with (logs.with_suffix(".stdout")).open("wb") as stdout, logs.with_suffix(".stderr").open("wb") as stderr:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=stdout, stderr=stderr)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def served(tmp_path: Path, ecm_home: Path) -> tuple[dict[str, str], Path, list[str]]:
    """The environment, DAGSTER_HOME and webserver command `make dev` would use."""
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")  # as `ecm` and `make` seed it
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "ECM_HOME": str(ecm_home)}
    command = [sys.executable, "-m", "dagster_webserver", "-w", "workspace.yaml", "-h", "127.0.0.1",
               "-p", str(free_port())]
    return env, dagster_home, command


@pytest.fixture
def served_workspace(tmp_path: Path) -> Iterator[dict]:
    """The workspace as a dagster-webserver on a free local port reports it over GraphQL."""
    env, _, command = served(tmp_path, tmp_path / "ecm")
    with started(command, env, tmp_path / "webserver") as process:
        yield wait_for_workspace(f"http://127.0.0.1:{command[-1]}/graphql", process,
                                 tmp_path / "webserver.stderr")


def wait_for_workspace(url: str, process: subprocess.Popen, stderr_log: Path) -> dict:
    """The workspace once the server answers and has finished loading the code location."""
    deadline = time.monotonic() + STARTUP_DEADLINE_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"dagster-webserver exited with {process.returncode}:\n{stderr_log.read_text()}")
        try:
            workspace = graphql(url, WORKSPACE_QUERY)["workspaceOrError"]
        except OSError:  # not listening yet, or closed the connection while starting
            time.sleep(0.5)
            continue
        if workspace["__typename"] != "Workspace" or location_entry(workspace)["loadStatus"] != "LOADING":
            return workspace
        time.sleep(0.5)
    pytest.fail(f"dagster-webserver did not answer within {STARTUP_DEADLINE_SECONDS:.0f} s:\n"
                f"{stderr_log.read_text()}")


def test_webserver_loads_the_code_location(served_workspace: dict) -> None:
    location = location_entry(served_workspace)["locationOrLoadError"]
    assert location["__typename"] == "RepositoryLocation", location

    [repository] = location["repositories"]
    asset_keys = ["/".join(node["assetKey"]["path"]) for node in repository["assetNodes"]]
    assert ASSETS.issubset(asset_keys), asset_keys
    assert {"excluded_orders", "disqualified_orders", "assignment_agents", "ticket_announcements"} <= set(asset_keys)

    schedules = {schedule["name"]: schedule for schedule in repository["schedules"]}
    assert "triage_schedule" in schedules, sorted(schedules)
    assert schedules["triage_schedule"]["cronSchedule"] == "0 7,14,20 * * *"
    assert schedules["triage_schedule"]["executionTimezone"] == "Asia/Dubai"


LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionKeysNotFoundError { message }
    ... on UnauthorizedError { message }
  }
}
"""
BACKFILL_RUN_DEADLINE_SECONDS = 240.0


@pytest.mark.slow
def test_a_backfill_launched_as_the_ui_does_is_one_green_run_that_writes_no_ticket(
        tmp_path: Path, small_live_demo) -> None:
    """The asset graph's "Materialize" over three past ticks of the whole ecm_triage group (the
    Sheet and Slack assets included) and the history group, through the webserver's GraphQL API,
    carried out by the daemon as in `make dev`: one run, every partition green, no Sheet row, no
    post, and the two writers' metadata saying why they did nothing."""
    template, live_key = small_live_demo
    home = copy_demo(template, tmp_path / "ecm")
    sheet_before = LocalSheetStore(str(home / "sheet.sqlite")).read_tab("Assignments")
    keys = triage_partitions.get_partition_keys()
    keys = keys[keys.index(live_key) - 6:keys.index(live_key) - 3]
    env, dagster_home, command = served(tmp_path, home)
    url = f"http://127.0.0.1:{command[-1]}/graphql"
    from ecm_pipeline.definitions import defs

    graph = defs.resolve_asset_graph()
    selection = dg.AssetSelection.groups("ecm_triage", "ecm_history").resolve(graph)
    assert {"assignments", "slack_briefing"} <= {k.to_user_string() for k in selection}
    with started(command, env, tmp_path / "webserver") as webserver:
        wait_for_workspace(url, webserver, tmp_path / "webserver.stderr")
        launched = graphql(url, LAUNCH_BACKFILL, {"params": {
            "partitionNames": keys, "assetSelection": [{"path": k.path} for k in sorted(selection)],
        }})["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill_id = launched["backfillId"]
        with (started([str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
                      env, tmp_path / "daemon"),
              dg.DagsterInstance.from_config(str(dagster_home)) as instance):
            deadline = time.monotonic() + BACKFILL_RUN_DEADLINE_SECONDS
            while True:
                runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
                if runs and all(r.is_finished for r in runs):
                    break
                assert time.monotonic() < deadline, (tmp_path / "daemon.stderr").read_text()[-3000:]
                time.sleep(1)
            [run] = runs
            assert run.status == dg.DagsterRunStatus.SUCCESS, (tmp_path / "daemon.stderr").read_text()[-3000:]
            for key in selection:
                records = instance.fetch_materializations(key, limit=10).records
                assert sorted(r.partition_key for r in records) == keys, key
            for asset in ("assignments", "slack_briefing"):
                for record in instance.fetch_materializations(dg.AssetKey(asset), limit=10).records:
                    meta = record.asset_materialization.metadata
                    assert meta["skipped"].value is True
                    assert "never write the Sheet or post" in meta["skipped_reason"].value
    # Nothing about the backfilled ticks was posted. The daemon also runs the missed-tick sensor,
    # which may rightly warn that the live tick (not run here) was missed; nothing else.
    posted = [json.loads(p.read_text())["metadata"]["event_payload"] for p in (home / "outbox").glob("*.json")]
    assert all(p["message"] == "missed_tick" and p["partition"] not in keys for p in posted), posted
    pd.testing.assert_frame_equal(LocalSheetStore(str(home / "sheet.sqlite")).read_tab("Assignments"), sheet_before)


PLOTS_QUERY = """
query Plots($key: AssetKeyInput!) {
  assetOrError(assetKey: $key) {
    __typename
    ... on Asset {
      assetMaterializations(limit: 10) {
        partition
        metadataEntries {
          __typename
          label
          ... on IntMetadataEntry { intValue }
          ... on FloatMetadataEntry { floatValue }
          ... on TableSchemaMetadataEntry { schema { columns { name } } }
        }
      }
    }
  }
}
"""


@pytest.mark.slow
def test_the_plots_tab_finds_numbers_for_every_tick(tmp_path: Path, small_live_demo, monkeypatch) -> None:
    """Two ticks triaged as the schedule would (the earlier one while it was live), then read
    through the webserver's GraphQL API as the asset's Plots tab reads them: per partition, the
    snapshot's backlog and value at risk as numbers with its column schema, and the assignment
    outcome as numbers."""
    from ecm_pipeline_tests.test_pipeline import materialize

    template, live_key = small_live_demo
    home = copy_demo(template, tmp_path / "ecm")
    env, dagster_home, command = served(tmp_path, home)
    monkeypatch.setenv("ECM_HOME", str(home))
    keys = triage_partitions.get_partition_keys()
    earlier = keys[keys.index(live_key) - 1]
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        with monkeypatch.context() as then:
            then.setattr("ecm_pipeline.run_context.live_tick_key", lambda _=None: earlier)
            assert materialize(earlier, instance).success
        assert materialize(live_key, instance).success
    url = f"http://127.0.0.1:{command[-1]}/graphql"
    with started(command, env, tmp_path / "webserver") as webserver:
        wait_for_workspace(url, webserver, tmp_path / "webserver.stderr")

        def numbers(asset: str) -> dict[str, dict]:
            answer = graphql(url, PLOTS_QUERY, {"key": {"path": [asset]}})["assetOrError"]
            out = {}
            for event in answer["assetMaterializations"]:
                entries = event["metadataEntries"]
                out[event["partition"]] = {
                    e["label"]: e.get("intValue", e.get("floatValue", e.get("schema")))
                    for e in entries if e["__typename"] in ("IntMetadataEntry", "FloatMetadataEntry",
                                                            "TableSchemaMetadataEntry")}
            return out

        snapshot = numbers("stuck_orders")
        assert set(snapshot) == {earlier, live_key}
        for tick, entries in snapshot.items():
            assert entries["backlog_count"] > 0 and entries["value_at_risk_aed"] > 0, tick
            assert entries["orders_aed"] + entries["orders_gbp"] + entries["orders_eur"] == entries["backlog_count"]
            assert entries["dagster/partition_row_count"] == entries["backlog_count"]
            assert {c["name"] for c in entries["dagster/column_schema"]["columns"]} >= {"order_id", "amount_aed"}
        outcome = numbers("assignments")
        assert set(outcome) == {earlier, live_key}
        for entries in outcome.values():
            assert {"assigned_this_tick", "already_assigned", "overflow", "monitor_only",
                    "agents_at_capacity", "new_assignments"} <= set(entries)
        assert outcome[earlier]["new_assignments"] > 0
