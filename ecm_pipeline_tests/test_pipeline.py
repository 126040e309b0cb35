"""Whole-chain runs with `dg.materialize` against a generated warehouse: numbers agree across the
briefing, the sheet and the lake; re-runs assign nothing twice and update the one briefing; bad
input is reported and nothing is dropped; backfills and old ticks never post."""

from __future__ import annotations

import json
import re
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd

from ecm_pipeline.assets import triage_assets
from ecm_pipeline.checks import quality_gates
from ecm_pipeline.partitions import as_of_utc
from ecm_pipeline.resources import environment_resources
from ecm_pipeline.resources.sheet import LocalSheetStore
from ecm_pipeline_tests.conftest import QUIET


def materialize(key: str, instance: dg.DagsterInstance | None = None, **kwargs) -> dg.ExecuteInProcessResult:
    return dg.materialize([*triage_assets, *quality_gates], partition_key=key, resources=environment_resources(),
                          instance=instance or dg.DagsterInstance.ephemeral(), run_config=QUIET, **kwargs)


def metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    for event in result.get_asset_materialization_events():
        if event.materialization.asset_key.to_user_string() == asset:
            return {k: v.value for k, v in event.materialization.metadata.items()}
    raise AssertionError(f"{asset} was not materialized")


def lake(home: Path, asset: str, key: str) -> pd.DataFrame:
    return pd.read_parquet(home / "lake" / asset / f"{key}.parquet")


def outbox_calls(home: Path) -> list[tuple[str, dict]]:
    return [(p.name.split("-")[1], json.loads(p.read_text())) for p in sorted((home / "outbox").glob("*.json"))]


def test_whole_chain_numbers_match_sheet_and_lake(demo_env) -> None:
    home, key = demo_env
    result = materialize(key)
    assert result.success

    stuck, qualified = lake(home, "stuck_orders", key), lake(home, "qualified_orders", key)
    disqualified, scored = lake(home, "disqualified_orders", key), lake(home, "scored_orders", key)
    assert 200 <= len(qualified) <= 600
    assert sorted(qualified["order_id"].tolist() + disqualified["order_id"].tolist()) == sorted(stuck["order_id"])
    assert len(scored) == len(qualified)

    sheet = LocalSheetStore(str(home / "sheet.sqlite")).read_tab("Assignments")
    mine = sheet[sheet["Triage Run"] == key]
    assert len(mine) == metadata(result, "assignments")["new_assignments"] > 0
    assert not mine["Order ID"].duplicated().any()
    assert set(mine["Order ID"]) <= set(scored["order_id"])

    text = metadata(result, "slack_briefing")["briefing"]
    assert text.startswith(":dart: *ECM Triage* — ")
    assert f"*{len(scored)} actionable orders* · {len(mine)} assigned this tick" in text
    assert f"Disqualified: {len(disqualified)} " in text
    for agent, count in mine["Assigned Agent"].value_counts().items():
        name = re.escape(agent.split("@")[0].replace(".", " ").title())
        assert re.search(rf"\*{name}\* — {count} tickets", text), agent
    high_value = int((scored["amount_aed"] >= 5000).sum())
    assert f"{high_value} high value" in text

    posts = [args for method, args in outbox_calls(home) if method == "chat.postMessage"
             and args["metadata"]["event_payload"]["message"].startswith("triage")]   # not the progress alerts
    assert posts[0]["text"] == text and "thread_ts" not in posts[0]
    assert len(posts) == 1 + mine["Assigned Agent"].nunique()
    assert all(p["thread_ts"] for p in posts[1:])
    thread_orders = sum(len(re.findall(r"^• `", p["text"], re.M)) for p in posts[1:])
    assert thread_orders == len(mine)
    # The field commands, named in the briefing and at the end of each agent's thread (SPEC §11).
    assert "*Getting started:* `ecm tickets` your queue · `ecm order ID`" in text
    for post in posts[1:]:
        first = re.search(r"^• `([^`]+)`", post["text"], re.M).group(1)
        assert post["text"].endswith(f"Start with `ecm order {first}` for its diagnosis and runbook.")


def test_rerun_assigns_nothing_twice_and_updates_the_briefing(demo_env) -> None:
    home, key = demo_env
    instance = dg.DagsterInstance.ephemeral()
    first = materialize(key, instance)
    second = materialize(key, instance)
    assert first.success and second.success
    assert metadata(second, "assignments")["new_assignments"] == 0
    assert metadata(second, "assignments")["assigned_this_tick"] == metadata(first, "assignments")["new_assignments"]
    assert "Re-run of this tick: nothing new assigned" in metadata(second, "slack_briefing")["briefing"]

    sheet = LocalSheetStore(str(home / "sheet.sqlite")).read_tab("Assignments")
    open_rows = sheet[sheet["Status"].isin(["OPEN", "IN_PROGRESS", "ESCALATED"])]
    assert not open_rows["Order ID"].duplicated().any()

    calls = outbox_calls(home)
    briefings = [(m, a) for m, a in calls if a["metadata"]["event_payload"] == {"message": "triage", "partition": key}]
    assert [m for m, _ in briefings] == ["chat.postMessage", "chat.update"]
    posted_ts = [p.name.split("-")[2][:-5] for p in sorted((home / "outbox").glob("*chat.postMessage*.json"))]
    assert briefings[1][1]["ts"] == posted_ts[0]
    assert sum(m == "chat.postMessage" for m, _ in calls) == sum(m == "chat.update" for m, _ in calls)


def test_backfill_runs_and_old_ticks_never_write_the_sheet_or_post(demo_env) -> None:
    home, key = demo_env
    sheet_before = LocalSheetStore(str(home / "sheet.sqlite")).read_tab("Assignments")
    backfill = materialize(key, tags={"dagster/backfill": "b1"})
    assert backfill.success
    for asset in ("assignments", "slack_briefing"):
        meta = metadata(backfill, asset)
        assert meta["skipped"] is True and "backfill runs never write the Sheet or post" in meta["skipped_reason"]
    old_key = (pd.Timestamp(as_of_utc(key)) - pd.Timedelta(days=3)).tz_localize("UTC").tz_convert(
        "Asia/Dubai").strftime("%Y-%m-%d-%H:%M")
    old = materialize(old_key)
    assert old.success
    assert "is not the live tick" in metadata(old, "slack_briefing")["skipped_reason"]
    assert "is not the live tick" in metadata(old, "assignments")["skipped_reason"]
    assert len(lake(home, "scored_orders", old_key)) > 200   # the history is still rebuilt
    assert not (home / "outbox").exists()
    sheet_after = LocalSheetStore(str(home / "sheet.sqlite")).read_tab("Assignments")
    pd.testing.assert_frame_equal(sheet_after, sheet_before)


def _add_bad_orders(home: Path, key: str) -> None:
    created = pd.Timestamp(as_of_utc(key)) - pd.Timedelta(days=2)
    with duckdb.connect(str(home / "warehouse.duckdb")) as con:
        for order_id, currency, amount in [("AEBADNULL000", "AED", None), ("AEBADNEG0000", "AED", -50.0),
                                           ("XXBADCUR0000", "XYZ", 100.0)]:
            con.execute("INSERT INTO orders_goms VALUES (?, 'U1', 'PROCESSING_DEAL_IN', 'FULFILLMENT_PENDING', ?, ?, "
                        "1000, 'CHECKOUT', ?, ?)", [order_id, currency, amount, created, created])
            con.execute("INSERT INTO orders_goms_history VALUES (?, 'PROCESSING_DEAL_IN', 'FULFILLMENT_PENDING', ?)",
                        [order_id, created])
            con.execute("INSERT INTO payments_goms VALUES (?, 'COMPLETED', ?, ?)", [order_id, created, created])
            con.execute("INSERT INTO lulu_data VALUES (?, 'PENDING', 'TXN_TRANSMITTED', 'LULU', ?, ?)",
                        [order_id, created, created])


def _add_bad_agents(home: Path) -> None:
    LocalSheetStore(str(home / "sheet.sqlite")).append_rows("Agents", pd.DataFrame(
        [["", "No Email", "Ops", "", "TRUE", "10"],
         ["AMIRA.HADDAD@aspora.example", "Amira Again", "Ops", "", "TRUE", "10"],
         ["lots.agent@aspora.example", "Lots Agent", "Ops", "", "TRUE", "lots"],
         ["new.agent@aspora.example", "New Agent", "Ops", "", "TRUE", "3"]],
        columns=["Email", "Name", "Team", "Slack Handle", "Active", "Max Tickets"]))


def test_bad_input_is_reported_specifically_and_nothing_is_dropped(demo_env) -> None:
    home, key = demo_env
    _add_bad_orders(home, key)
    _add_bad_agents(home)
    instance = dg.DagsterInstance.ephemeral()
    result = materialize(key, instance)
    assert result.success

    quarantine = metadata(result, "qualified_orders")["quarantined_bad_input"]
    assert "AEBADNULL000: send amount is missing" in quarantine
    assert "AEBADNEG0000: send amount -50.00 is negative" in quarantine
    assert metadata(result, "excluded_orders")["out_of_scope_currencies"]["XYZ"] == 1
    roster_problems = metadata(result, "assignments")["roster_problems"]
    for expected in ("Email is empty; row set aside", "duplicate agent AMIRA.HADDAD@aspora.example",
                     "Max Tickets 'lots' is not a whole number from 0 to 200; row set aside"):
        assert expected in roster_problems
    assert "Max Tickets 'lots'" in metadata(result, "slack_briefing")["briefing"]   # named in the briefing too

    logs = "\n".join(entry.user_message for entry in instance.all_logs(result.run_id))
    assert "quarantined (not triaged): AEBADNULL000: send amount is missing" in logs
    assert "as out_of_scope_currency" in logs and "XYZ: 1 (XXBADCUR0000)" in logs
    assert "Max Tickets 'lots' is not a whole number" in logs

    disqualified = lake(home, "disqualified_orders", key).set_index("order_id")
    assert disqualified.loc["AEBADNULL000", "disqualification_code"] == "invalid_amount"
    assert "XXBADCUR0000" in set(lake(home, "excluded_orders", key)["order_id"])
    stuck = lake(home, "stuck_orders", key)
    kept = lake(home, "qualified_orders", key)["order_id"].tolist() + disqualified.index.tolist()
    assert sorted(kept) == sorted(stuck["order_id"])
    assignments = LocalSheetStore(str(home / "sheet.sqlite")).read_tab("Assignments")
    assert "new.agent@aspora.example" in set(assignments["Assigned Agent"])  # the rest proceeds
    assert "lots.agent@aspora.example" not in set(assignments["Assigned Agent"])


def test_a_quiet_tick_runs_green_and_the_briefing_says_so(demo_env) -> None:
    home, key = demo_env
    with duckdb.connect(str(home / "warehouse.duckdb")) as con:   # nothing is stuck today
        con.execute("DELETE FROM orders_goms_history WHERE status <> 'COMPLETED'")
        con.execute("DELETE FROM orders_goms WHERE status <> 'COMPLETED'")
    result = materialize(key)
    assert result.success
    assert len(lake(home, "stuck_orders", key)) == 0
    assert metadata(result, "stuck_orders")["backlog_count"] == 0
    assert metadata(result, "assignments")["new_assignments"] == 0
    briefing = metadata(result, "slack_briefing")["briefing"]
    assert "*0 actionable orders*" in briefing and "No assignments this tick." in briefing
    warned = {e.check_name for e in result.get_asset_check_evaluations() if not e.passed}
    assert warned <= {"backlog_count_in_expected_range", "aed_share_in_expected_band", "gbp_share_in_expected_band",
                      "eur_share_in_expected_band"}   # warnings only: a quiet day is not an error


def test_a_duplicate_people_typed_is_a_warning_and_never_assigned_again(demo_env) -> None:
    home, key = demo_env
    store = LocalSheetStore(str(home / "sheet.sqlite"))
    tab = store.read_tab("Assignments")
    typed = tab[tab["Status"] == "OPEN"].iloc[[0]].drop(columns="_row").assign(**{"Triage Run": "manual"})
    store.append_rows("Assignments", typed)                     # the same open ticket typed twice
    result = materialize(key)
    assert result.success
    order = typed["Order ID"].iloc[0]
    assert order in metadata(result, "assignments")["sheet_duplicates"]
    warning = next(e for e in result.get_asset_check_evaluations() if e.check_name == "no_duplicate_open_rows")
    assert not warning.passed and warning.severity == dg.AssetCheckSeverity.WARN
    assert "typed by people" in metadata(result, "slack_briefing")["briefing"]
    again = store.read_tab("Assignments")
    assert (again["Order ID"] == order).sum() == 2              # left for people to fix, nothing added
