"""History (SPEC §10): a past tick rebuilt on today's warehouse tells what a live run told then;
a range of ticks is one run that writes one lake file per tick and asset, again and again the same,
and never a ticket or a post, from `ecm backfill` and from `dagster asset materialize
--partition-range` (the UI's path is in test_webserver.py); the backlog history and its flows add up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from ecm_pipeline.cli import main
from ecm_pipeline.demo import as_of, generate_world, seed_sheet, write_warehouse
from ecm_pipeline.domain.history import backlog_breakdown, backlog_flow, daily_flow
from ecm_pipeline.domain.scoring import score
from ecm_pipeline.domain.tickets import first_ticket_at
from ecm_pipeline.gates import gate_problems
from ecm_pipeline.partitions import as_of_utc, triage_partitions
from ecm_pipeline.resources.lake import LakeResource
from ecm_pipeline.resources.sheet import LocalSheetStore
from ecm_pipeline.settings import load_catalogue, load_settings
from ecm_pipeline_tests.conftest import copy_demo
from ecm_pipeline_tests.test_demo import triage_at

PROJECT_ROOT = Path(__file__).resolve().parents[1]
LAKE_ASSETS = ("stuck_orders", "excluded_orders", "qualified_orders", "disqualified_orders", "scored_orders",
               "backlog_history", "backlog_flows")


def lake_files(home: Path, asset: str) -> list[str]:
    return sorted(p.stem for p in (home / "lake" / asset).glob("*.parquet"))


def tick_keys(live_key: str, days_back: float, count: int) -> list[str]:
    """`count` consecutive ticks starting `days_back` days before the live tick."""
    start = pd.Timestamp(as_of_utc(live_key)) - pd.Timedelta(days=days_back)
    keys = triage_partitions.get_partition_keys()
    first = next(k for k in keys if pd.Timestamp(as_of_utc(k)) >= start)
    return keys[keys.index(first):keys.index(first) + count]


# --- truthful past snapshots --------------------------------------------------------------------------


SEED, SCALE, DAYS = 5, 0.2, 9.0


def live_view(path: Path, tick: str) -> pd.DataFrame:
    """What a live run on this warehouse at this tick scores: order ids, reasons and priorities."""
    qualified, _ = triage_at(path, as_of_utc(tick))
    scored = score(qualified, pd.Timestamp(as_of_utc(tick)), load_settings().scoring)
    return scored.set_index("order_id")[["stuck_reason", "priority"]].sort_index()


@pytest.mark.slow
def test_a_backfill_on_a_later_warehouse_tells_what_live_runs_told(tmp_path: Path, live_demo, monkeypatch,
                                                                     capsys) -> None:
    """One world (seed 5, a third of the volume): the warehouse as it is at T2, and as it was at
    each tick of the 7 days before T2. A backfill of those ticks on the T2 warehouse gives, tick by
    tick, the live run's scored orders, except for orders its snapshot calls approximate."""
    t2 = tick_keys(live_demo[1], days_back=3, count=1)[0]
    ticks = [k for k in triage_partitions.get_partition_keys()
             if pd.Timedelta(0) < pd.Timestamp(as_of_utc(t2)) - pd.Timestamp(as_of_utc(k)) <= pd.Timedelta(days=7)]
    end = np.datetime64(as_of_utc(t2), "s")
    start = end - np.timedelta64(int(DAYS * 86400), "s")
    world = generate_world(SEED, start.astype("datetime64[D]").astype("datetime64[s]"),
                           end.astype("datetime64[D]").astype("datetime64[s]"), SCALE)
    home = tmp_path / "ecm"
    monkeypatch.setenv("ECM_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    tables = as_of(world, end, start)
    write_warehouse(tables, home / "warehouse.duckdb")
    seed_sheet(LocalSheetStore(str(home / "sheet.sqlite")), tables["_meta"], as_of_utc(t2), SEED)
    assert main(["backfill", "--from", ticks[0], "--to", ticks[-1]]) == 0, capsys.readouterr().err
    capsys.readouterr()

    then = tmp_path / "then.duckdb"
    compared = 0
    for tick in ticks:
        write_warehouse(as_of(world, np.datetime64(as_of_utc(tick), "s"), start), then)
        live = live_view(then, tick)
        rebuilt = (pd.read_parquet(home / "lake" / "scored_orders" / f"{tick}.parquet")
                   .set_index("order_id")[["stuck_reason", "priority"]].sort_index())
        stuck = pd.read_parquet(home / "lake" / "stuck_orders" / f"{tick}.parquet")
        approximate = set(stuck.loc[stuck["approximate_fields"] != "", "order_id"])
        common = live.index.intersection(rebuilt.index)
        differing = (set(live.index) ^ set(rebuilt.index)) | set(live.loc[common].compare(rebuilt.loc[common]).index)
        assert differing <= approximate, (tick, sorted(differing - approximate)[:5])
        assert len(live) > 15
        compared += len(live)
    assert compared > 500

    # Each rebuilt tick says exact or approximate, and for how many orders.
    records = dg.DagsterInstance.get().fetch_materializations(dg.AssetKey("stuck_orders"), limit=len(ticks)).records
    metadata = {r.partition_key: r.asset_materialization.metadata for r in records}
    for tick in ticks:
        stuck = pd.read_parquet(home / "lake" / "stuck_orders" / f"{tick}.parquet")
        approximate_orders = int((stuck["approximate_fields"] != "").sum())
        assert metadata[tick]["approximate_orders"].value == approximate_orders
        if approximate_orders:
            assert metadata[tick]["snapshot_mode"].value == "approximate"


# --- one run per range, harmless, idempotent -------------------------------------------------------------


@pytest.mark.slow
def test_a_range_of_ticks_is_one_run_that_writes_no_ticket_and_repeats_identically(
        ecm_env: Path, small_live_demo, settings_overlay, capsys) -> None:
    template, live_key = small_live_demo
    home = copy_demo(template, ecm_env)
    settings_overlay("reports: {daily_tick: '07:00'}\n")
    keys = tick_keys(live_key, days_back=8, count=20)
    sheet_before = LocalSheetStore(str(home / "sheet.sqlite")).read_tab("Assignments")

    assert main(["backfill", "--from", keys[0], "--to", keys[-1]]) == 0
    out = capsys.readouterr().out
    assert "20 ticks backfilled in one run" in out and "nothing written to the Sheet or Slack" in out
    assert "Backlog per tick" in out and keys[-1] in out
    chart = home / "charts" / "backlog_history.png"
    assert f"Chart: {chart}" in out and chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    instance = dg.DagsterInstance.get()
    [run] = instance.get_runs()
    assert run.tags["dagster/asset_partition_range_start"] == keys[0]
    for asset in LAKE_ASSETS:
        assert lake_files(home, asset) == keys, asset
    first = {asset: pd.read_parquet(home / "lake" / asset / f"{keys[5]}.parquet") for asset in LAKE_ASSETS}

    # Part of the range again, as `dagster asset materialize --partition-range` runs it over the whole
    # triage group (the Sheet and Slack assets included): one more run, every partition green, its
    # files replaced by the same content, never duplicated, and the two writers skipped with a reason.
    env = {**os.environ, "ECM_HOME": str(home), "DAGSTER_HOME": os.environ["DAGSTER_HOME"]}
    done = subprocess.run(
        [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "ecm_pipeline.definitions",
         "--select", "group:ecm_triage or group:ecm_history", "--partition-range", f"{keys[4]}...{keys[6]}"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = instance.get_runs()
    assert len(runs) == 2 and runs[0].status == dg.DagsterRunStatus.SUCCESS
    for asset in LAKE_ASSETS:
        assert lake_files(home, asset) == keys, asset
        pd.testing.assert_frame_equal(pd.read_parquet(home / "lake" / asset / f"{keys[5]}.parquet"), first[asset])
    for asset in ("assignments", "slack_briefing"):
        records = instance.fetch_materializations(dg.AssetKey(asset), limit=10).records
        assert sorted(r.partition_key for r in records) == keys[4:7]
        for record in records:
            meta = record.asset_materialization.metadata
            assert meta["skipped"].value is True and "never writes the Sheet or posts" in meta["skipped_reason"].value
    # Every tick's gate verdicts are recorded, per partition, on the version of its lake file.
    for asset in ("stuck_orders", "qualified_orders"):   # the gated assets a backfill builds
        versions = {k: LakeResource(url=str(home / "lake")).read(asset, k).version for k in keys}
        assert gate_problems(instance, asset, versions) == {}, asset

    assert not (home / "outbox").exists()
    pd.testing.assert_frame_equal(LocalSheetStore(str(home / "sheet.sqlite")).read_tab("Assignments"), sheet_before)

    flows = pd.concat(pd.read_parquet(home / "lake" / "backlog_flows" / f"{k}.parquet") for k in keys)
    assert flows["compared_with"].iloc[1:].tolist() == keys[:-1]
    assert (flows["backlog"].iloc[1:].to_numpy() == (flows["backlog"].shift(1) + flows["entered"]
                                                     - flows["left"]).iloc[1:].to_numpy()).all()
    history = pd.concat(pd.read_parquet(home / "lake" / "backlog_history" / f"{k}.parquet") for k in keys)
    assert history.groupby("partition_key")["orders"].sum().tolist() == flows["backlog"].tolist()

    # The daily reports of the range's 07:00 ticks are computed and kept, never posted; each patterns
    # report compares with the one before it.
    daily = [k for k in keys if k.endswith("07:00")]
    assert lake_files(home, "backlog_report") == daily and lake_files(home, "pattern_report") == daily
    backlog = pd.concat(pd.read_parquet(home / "lake" / "backlog_report" / f"{k}.parquet") for k in daily)
    assert backlog["backlog"].tolist() == flows.set_index("partition_key").loc[daily, "backlog"].tolist()
    assert backlog["previous_day"].iloc[1:].tolist() == backlog["backlog"].iloc[:-1].tolist()
    first_patterns, second = (pd.read_parquet(home / "lake" / "pattern_report" / f"{k}.parquet") for k in daily[:2])
    assert set(first_patterns["trend"]) == {"baseline"} and set(second["trend"]) <= {"UP", "DOWN", "SAME", "NEW"}
    reports = {r.partition_key: r.asset_materialization.metadata for r in instance.fetch_materializations(
        dg.AssetKey("pattern_report"), limit=100).records}
    assert reports[daily[1]]["compared_with"].value == daily[0]
    assert all(reports[k]["posted"].value is False for k in daily)
    assert all(reports[k]["skipped"].value is True for k in set(keys) - set(daily))


@pytest.mark.parametrize(("args", "says"), [
    (["--from", "2026-11-40-07:00", "--to", "2026-11-21-07:00"], "2026-11-40-07:00"),
    (["--from", "2026-11-21-20:00", "--to", "2026-11-21-07:00"], "is reversed"),
    (["--from", "2026-01-02-07:00", "--to", "2026-01-03-07:00"], "ends before the warehouse's first order"),
])
def test_a_range_the_warehouse_cannot_describe_is_a_one_line_error(ecm_env, small_live_demo, capsys, args,
                                                                   says) -> None:
    copy_demo(small_live_demo[0], ecm_env)
    assert main(["backfill", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and "\n" not in err and "Traceback" not in err


def test_a_backfill_without_a_warehouse_says_what_is_missing(ecm_env, capsys) -> None:
    assert main(["backfill", "--from", "2026-11-20-07:00", "--to", "2026-11-21-07:00"]) == 1
    err = capsys.readouterr().err.strip()
    assert "ecm demo" in err and "\n" not in err


# --- the history's arithmetic ---------------------------------------------------------------------------


def scored(*rows: tuple[str, str, float]) -> pd.DataFrame:
    return pd.DataFrame({"order_id": [r[0] for r in rows], "stuck_reason": [r[1] for r in rows],
                         "currency": "AED", "priority": "P2", "amount_aed": [r[2] for r in rows],
                         "hours_stuck": 30.0, "approximate_fields": ""})


def test_a_flow_tells_self_healed_orders_from_worked_ones() -> None:
    tick = pd.Timestamp("2026-11-21 10:00")
    before = scored(("A", "refund_pending", 100.0), ("B", "stuck_at_lulu", 200.0), ("C", "stuck_at_lulu", 300.0))
    now = scored(("C", "stuck_at_lulu", 300.0), ("D", "refund_pending", 50.0))
    tickets = pd.DataFrame({"Order ID": ["B", "A"], "Assigned At": ["2026-11-21 09:00:00+00:00",
                                                                    "2026-11-21 11:00:00+00:00"]})
    first_ticket = first_ticket_at(tickets)
    [flow] = backlog_flow("2026-11-21-14:00", tick, now, before, "2026-11-21-07:00", first_ticket).to_dict("records")
    # A and B left; B had a ticket by the tick, A's ticket came after it: A healed by itself.
    assert (flow["entered"], flow["left"], flow["self_healed"], flow["self_heal_rate"]) == (1, 2, 1, 0.5)
    assert flow["backlog"] == 2 and flow["value_at_risk_aed"] == 350.0

    [first] = backlog_flow("2026-11-21-14:00", tick, now, None, None, first_ticket).to_dict("records")
    assert pd.isna(first["entered"]) and first["compared_with"] == ""

    breakdown = backlog_breakdown(now.assign(partition_key="2026-11-21-14:00"), {"2026-11-21-14:00": tick},
                                  load_catalogue())
    assert breakdown["orders"].sum() == 2 and set(breakdown["stuck_reason"]) == {"stuck_at_lulu", "refund_pending"}
    assert breakdown["family"].notna().all()

    days = daily_flow(pd.DataFrame([flow, first]), "Asia/Dubai")
    assert days[["entered", "left", "self_healed"]].iloc[0].tolist() == [1.0, 2.0, 1.0]
