"""The Dagster UI serves the project as `make dev` does: `dagster-webserver -w workspace.yaml` starts
in a fresh DAGSTER_HOME with no demo data under ECM_HOME, and its GraphQL API reports the
`ecm_pipeline` code location loaded without error, with exactly the five triage assets and the
`triage_schedule` (07:00, 14:00 and 20:00 Asia/Dubai)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

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


def graphql(url: str, query: str) -> dict:
    request = urllib.request.Request(url, data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        body = json.load(response)
    assert "errors" not in body, body["errors"]
    return body["data"]


def location_entry(workspace: dict) -> dict:
    assert workspace["__typename"] == "Workspace", workspace
    entries = {entry["name"]: entry for entry in workspace["locationEntries"]}
    assert LOCATION in entries, f"no code location {LOCATION!r} in {sorted(entries)}"
    return entries[LOCATION]


@pytest.fixture
def served_workspace(tmp_path: Path) -> Iterator[dict]:
    """The workspace as a dagster-webserver on a free local port reports it over GraphQL."""
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")  # as `ecm` and `make` seed it
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "ECM_HOME": str(tmp_path / "ecm")}
    port = free_port()
    stderr_log = tmp_path / "webserver.stderr"
    with (tmp_path / "webserver.stdout").open("wb") as stdout, stderr_log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "dagster_webserver", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=PROJECT_ROOT, env=env, stdout=stdout, stderr=stderr,
        )
    try:
        yield wait_for_workspace(f"http://127.0.0.1:{port}/graphql", process, stderr_log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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
