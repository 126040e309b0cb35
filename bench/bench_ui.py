"""How fast the Dagster UI's asset graph answers as ticks accumulate. Prints figures; asserts nothing.

Writes synthetic history into a fresh SQLite instance — per tick, a materialization of every asset
(with the numeric metadata a real run records) and an evaluation of every quality gate — for a
month, a year and two years of ticks, and after each times the queries the asset graph page sends
through a real `dagster-webserver` (`AssetGraphLiveQuery` as the UI bundle of this Dagster version
writes it, and the asset nodes' partition stats), median of 5 warm calls.

Run from the project root: `.venv/bin/python bench/bench_ui.py [--days 30 365 730]`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import print_machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

LIVE_QUERY = """
query AssetGraphLiveQuery($assetKeys: [AssetKeyInput!]!) {
  assetNodes(assetKeys: $assetKeys, loadMaterializations: true) { id ...AssetNodeLiveFragment }
  assetsLatestInfo(assetKeys: $assetKeys) { id ...AssetLatestInfoFragment }
}
fragment AssetLatestInfoFragment on AssetLatestInfo {
  id assetKey { path } unstartedRunIds inProgressRunIds latestRun { id ...AssetLatestInfoRun }
}
fragment AssetLatestInfoRun on Run { status startTime endTime id }
fragment AssetNodeLiveFragment on AssetNode {
  id opNames repository { id } assetKey { path }
  assetMaterializations(limit: 1) { ...AssetNodeLiveMaterialization }
  assetObservations(limit: 1) { ...AssetNodeLiveObservation }
  assetChecksOrError { ... on AssetChecks { checks { ...AssetCheckLiveFragment } } }
  partitionStats { numMaterialized numMaterializing numPartitions numFailed }
}
fragment AssetNodeLiveMaterialization on MaterializationEvent { timestamp runId stepKey }
fragment AssetNodeLiveObservation on ObservationEvent { timestamp runId stepKey }
fragment AssetCheckLiveFragment on AssetCheck {
  name canExecuteIndividually
  executionForLatestMaterialization { id runId status timestamp stepKey evaluation { severity } }
  partitionDefinition { name description }
  partitionStatuses {
    ... on AssetCheckDefaultPartitionStatuses { succeededPartitions failedPartitions inProgressPartitions
                                                skippedPartitions executionFailedPartitions }
    ... on AssetCheckTimePartitionStatuses { ranges { startKey endKey status } }
  }
}
"""
FRESHNESS_QUERY = """
query AssetsFreshnessInfoQuery($assetKeys: [AssetKeyInput!]!) {
  assetNodes(assetKeys: $assetKeys) { id assetKey { path } freshnessInfo { currentMinutesLate } }
}
"""


def graphql(url: str, query: str, variables: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps({"query": query, "variables": variables}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as response:
        answer = json.loads(response.read())
    if answer.get("errors"):
        raise RuntimeError(answer["errors"][0].get("message"))
    return answer["data"]


def write_history(instance, keys: list[str], assets: list, checks: list) -> float:
    """One materialization per asset and one evaluation per check for each tick, as a run records
    them (runless events, written in batches); returns the seconds it took."""
    import dagster as dg
    from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
    from dagster._core.events.log import EventLogEntry
    from dagster._core.instance.utils import RUNLESS_JOB_NAME, RUNLESS_RUN_ID

    from ecm_pipeline.partitions import tick_of

    started = time.perf_counter()
    batch = []
    for n, key in enumerate(keys):
        stamp = tick_of(key).timestamp()
        for asset in assets:
            event = dg.AssetMaterialization(asset, partition=key, metadata={
                "backlog_count": 400 + n % 50, "value_at_risk_aed": 1.4e6 + n, "dagster/partition_row_count": 400})
            batch.append(EventLogEntry(None, logging.INFO, "", RUNLESS_RUN_ID, stamp, job_name=RUNLESS_JOB_NAME,
                                       dagster_event=DagsterEvent(DagsterEventType.ASSET_MATERIALIZATION.value,
                                                                  RUNLESS_JOB_NAME,
                                                                  event_specific_data=StepMaterializationData(event))))
        for check in checks:
            evaluation = dg.AssetCheckEvaluation(asset_key=check.asset_key, check_name=check.name, passed=True,
                                                 metadata={"partitions_checked": 1, "partition": key})
            batch.append(EventLogEntry(None, logging.INFO, "", RUNLESS_RUN_ID, stamp + 1, job_name=RUNLESS_JOB_NAME,
                                       dagster_event=DagsterEvent(DagsterEventType.ASSET_CHECK_EVALUATION.value,
                                                                  RUNLESS_JOB_NAME, event_specific_data=evaluation)))
        if len(batch) >= 2000:
            instance.event_log_storage.store_event_batch(batch)
            batch = []
    if batch:
        instance.event_log_storage.store_event_batch(batch)
    return time.perf_counter() - started


def timed(url: str, query: str, variables: dict, runs: int = 5) -> float:
    graphql(url, query, variables)   # warm
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        graphql(url, query, variables)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, nargs="+", default=[30, 365, 730])
    args = parser.parse_args()
    print_machine()

    # On tmpfs when there is one: SQLite's fsync per event would make writing two years of history
    # take most of an hour; the queries read what the page cache holds either way.
    shm = Path("/dev/shm")
    work = Path(tempfile.mkdtemp(prefix="ecm-bench-ui-", dir=shm if shm.is_dir() else None))
    dagster_home, ecm_home = work / "dagster", work / "ecm"
    dagster_home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    last_day = max(args.days)
    go_live = datetime.fromtimestamp(time.time() - (last_day + 1) * 86400, UTC).strftime("%Y-%m-%d-07:00")
    (ecm_home).mkdir()
    (ecm_home / "settings.yaml").write_text(f"schedule: {{go_live: '{go_live}'}}\n")
    os.environ.update({"DAGSTER_HOME": str(dagster_home), "ECM_HOME": str(ecm_home)})

    import dagster as dg

    from ecm_pipeline.definitions import defs
    from ecm_pipeline.partitions import triage_partitions

    graph = defs.resolve_asset_graph()
    assets = sorted(graph.get_all_asset_keys())
    checks = sorted(graph.asset_check_keys)
    keys = triage_partitions.get_partition_keys()
    print(f"== setup\n{len(assets)} assets, {len(checks)} quality gates (unpartitioned checks), "
          f"{len(keys)} partitions from {go_live}; SQLite instance in {dagster_home}")

    port = 3400 + os.getpid() % 500
    url = f"http://127.0.0.1:{port}/graphql"
    variables = {"assetKeys": [{"path": k.path} for k in assets]}
    log = (work / "webserver.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "dagster_webserver", "-w", "workspace.yaml", "-h", "127.0.0.1",
                               "-p", str(port)], cwd=ROOT, env=os.environ.copy(), stdout=log, stderr=log)
    try:
        for _ in range(240):
            try:
                graphql(url, "{ version }", {})
                break
            except OSError:
                time.sleep(0.5)
        print("\n== asset graph queries (median of 5 warm calls)")
        print(f"{'history':>10} {'ticks':>6} {'events':>8} {'write s':>8} {'live query s':>13} {'freshness s':>12}")
        written = 0
        with dg.DagsterInstance.get() as instance:
            print(f"{'fresh':>10} {0:>6} {0:>8} {'':>8} {timed(url, LIVE_QUERY, variables):>13.2f} "
                  f"{timed(url, FRESHNESS_QUERY, variables):>12.2f}")
            for days in sorted(args.days):
                upto = keys[:days * 3]
                seconds = write_history(instance, upto[written:], assets, checks)
                written = len(upto)
                events = written * (len(assets) + len(checks))
                print(f"{f'{days} days':>10} {written:>6} {events:>8} {seconds:>8.1f} "
                      f"{timed(url, LIVE_QUERY, variables):>13.2f} {timed(url, FRESHNESS_QUERY, variables):>12.2f}",
                      flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
