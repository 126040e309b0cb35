"""Ticket progress (SPEC §9–10): SLA bands at their exact boundaries, the capacity warning at 81 %
and not at 80 %, the SLA breach alert within the Slack limits, and on the demo one alert of each
kind per tick however often the tick is run."""

from __future__ import annotations

import json
import re

import duckdb
import pandas as pd
import pytest

from ecm_pipeline.domain.briefing import MAIN_LIMIT
from ecm_pipeline.domain.progress import (
    SELF_HEALED,
    capacity_warning,
    over_capacity,
    resolution_rows,
    sla_band,
    sla_breach_alert,
    ticket_sla,
)
from ecm_pipeline.domain.tickets import ASSIGNMENT_COLUMNS
from ecm_pipeline.partitions import as_of_utc, previous_key
from ecm_pipeline.resources.sheet import LocalSheetStore
from ecm_pipeline.settings import load_catalogue, load_settings
from ecm_pipeline_tests.test_pipeline import materialize, metadata

TICK = pd.Timestamp("2026-11-29 10:00")   # naive UTC, the 14:00 GST tick
SETTINGS = load_settings().progress


def tickets(*rows: tuple[str, str, float, str]) -> pd.DataFrame:
    """Assignments rows: (order id, agent, hours before the tick it was assigned, reason)."""
    return pd.DataFrame([{
        "Order ID": order, "Assigned Agent": agent, "Status": "OPEN", "Diagnosis": reason,
        "Triage Run": "2026-11-28-07:00",
        "Assigned At": (TICK - pd.Timedelta(hours=hours)).tz_localize("UTC").strftime("%Y-%m-%d %H:%M:%S%z"),
        "Priority": "P2", "Currency": "AED", "Amount": "100.00", "Hours Stuck": "20.0", "Notes": "",
    } for order, agent, hours, reason in rows], columns=list(ASSIGNMENT_COLUMNS))


@pytest.mark.parametrize(("share", "band"), [
    (0.0, "OK"), (0.5, "OK"), (0.5001, "WARNING"), (0.75, "WARNING"), (0.7501, "CRITICAL"),
    (1.0, "CRITICAL"), (1.0001, "BREACHED"), (float("nan"), "UNKNOWN"),
])
def test_sla_bands_at_their_boundaries(share: float, band: str) -> None:
    assert sla_band([share], SETTINGS)[0] == band


def test_ticket_sla_measures_from_assigned_at_with_the_catalogue_hours() -> None:
    catalogue = load_catalogue()
    reason, sla_hours = next((name, r.sla_hours) for name, r in catalogue.reasons.items() if r.sla_hours == 24)
    tab = tickets(("A1", "a@x.example", 12.0, reason), ("A2", "a@x.example", 18.0, reason),
                  ("A3", "b@x.example", 24.0, reason), ("A4", "b@x.example", 24.5, reason),
                  ("A5", "b@x.example", 5.0, "typed by hand"))
    tab.loc[len(tab)] = {**tab.iloc[0].to_dict(), "Order ID": "A6", "Assigned At": "yesterday"}
    sla = ticket_sla(tab, catalogue, TICK, SETTINGS).set_index("order_id")
    assert sla.loc[["A1", "A2", "A3", "A4"], "sla_band"].tolist() == ["OK", "WARNING", "CRITICAL", "BREACHED"]
    assert sla.loc["A4", "hours_open"] == 24.5 and sla.loc["A4", "sla_hours"] == sla_hours
    assert sla.loc[["A5", "A6"], "sla_band"].tolist() == ["UNKNOWN", "UNKNOWN"]   # kept, never dropped
    assert sla.index[0] == "A4"   # longest overdue first


def roster(*agents: tuple[str, int]) -> pd.DataFrame:
    return pd.DataFrame([{"key": email, "email": email, "name": email.split("@")[0].title(), "team": "Ops",
                          "slack_handle": "", "active": True, "excluded": False, "max_tickets": cap}
                         for email, cap in agents])


def test_a_capacity_warning_at_81_percent_and_none_at_80() -> None:
    tab = tickets(*[(f"O{i}", "full@x.example", 1.0, "r") for i in range(81)],
                  *[(f"P{i}", "busy@x.example", 1.0, "r") for i in range(80)])
    full = over_capacity(tab, roster(("full@x.example", 100), ("busy@x.example", 100)), SETTINGS)
    assert full["agent"].tolist() == ["full@x.example"] and full["share"].iloc[0] == 0.81
    message = capacity_warning(full, "2026-11-29 14:00 GST", SETTINGS)
    assert "Full — 81 of 100 (81%)" in message.text
    assert capacity_warning(full.iloc[0:0], "t", SETTINGS) is None


def test_the_breach_alert_needs_three_breaches_and_stays_within_slack_limits() -> None:
    catalogue = load_catalogue()
    reason = next(name for name, r in catalogue.reasons.items() if r.sla_hours == 24)
    agents = roster(*[(f"agent{i}@x.example", 10) for i in range(40)])
    two = ticket_sla(tickets(*[(f"B{i}", "agent1@x.example", 30.0, reason) for i in range(2)]), catalogue, TICK,
                     SETTINGS)
    assert sla_breach_alert(two, agents, "t", SETTINGS) is None
    many = tickets(*[(f"B{i:04d}<!channel>", f"agent{i % 40}@x.example", 25.0 + i, reason) for i in range(2000)])
    alert = sla_breach_alert(ticket_sla(many, catalogue, TICK, SETTINGS), agents, "2026-11-29 14:00 GST", SETTINGS)
    assert alert.text.startswith(":hourglass: *ECM SLA breaches*")
    assert "*2000 open tickets are past their SLA*" in alert.text
    assert alert.text.count("\n• ") == 10 and "B1999" in alert.text   # the longest overdue first
    assert "<!channel>" not in alert.text and "&lt;!channel&gt;" in alert.text
    assert len(alert.text) <= MAIN_LIMIT and len(alert.blocks) <= 50


def test_the_live_tick_posts_each_progress_alert_once(demo_env) -> None:
    home, key = demo_env
    assert materialize(previous_key(key)).success      # the previous tick's backlog, for "self-healed"
    first = materialize(key)
    again = materialize(key)
    assert first.success and again.success
    meta = metadata(again, "ticket_progress")
    briefing = metadata(again, "slack_briefing")["briefing"]
    assert re.search(r"• \d+ self-healed since the last tick", briefing)
    assert (f":hourglass: {meta['sla_breached']} open tickets past their SLA" in briefing) == (meta["sla_breached"] > 0)
    assert meta["open_tickets"] == sum(meta[f"sla_{b}"] for b in ("breached", "critical", "warning", "ok", "unknown"))
    lake = pd.read_parquet(home / "lake" / "ticket_progress" / f"{key}.parquet")
    assert len(lake) == meta["open_tickets"] > 0
    posted = {}
    for path in (home / "outbox").glob("*.json"):
        payload = json.loads(path.read_text())["metadata"]["event_payload"]
        posted.setdefault(payload["message"], set()).add(path.name.split("-")[1])
    expected = {"sla_breach"} if meta["sla_breached"] >= 3 else set()
    assert set(meta["alerts_posted"]) - {"capacity_warning"} == expected
    for message in meta["alerts_posted"]:
        assert posted[message] == {"chat.postMessage", "chat.update"}   # posted once, then updated


def test_a_past_tick_computes_no_progress(demo_env) -> None:
    home, key = demo_env
    result = materialize(key, tags={"dagster/backfill": "b2"})
    assert metadata(result, "ticket_progress")["skipped"] is True
    assert not (home / "lake" / "ticket_progress").exists()


def _complete(home, order_ids: list[str], at: pd.Timestamp) -> None:
    """These orders reached COMPLETED in GOMS at `at` (naive UTC), as the warehouse records it."""
    with duckdb.connect(str(home / "warehouse.duckdb")) as con:
        for order_id in order_ids:
            con.execute("UPDATE orders_goms SET status = 'COMPLETED', sub_state = 'COMPLETED', updated_at = ? "
                        "WHERE order_id = ?", [at, order_id])
            con.execute("INSERT INTO orders_goms_history VALUES (?, 'COMPLETED', 'COMPLETED', ?)", [order_id, at])


def test_an_order_completed_after_assignment_is_self_healed_exactly_once(demo_env) -> None:
    home, key = demo_env
    assert materialize(key).success
    store = LocalSheetStore(home / "sheet.sqlite")
    tab = store.read_tab("Assignments")
    mine = tab[(tab["Triage Run"] == key) & (tab["Status"] == "OPEN")]
    done = mine["Order ID"].head(3).tolist()
    _complete(home, done, pd.Timestamp(as_of_utc(key)) - pd.Timedelta(minutes=5))
    # A run that died between recording the first resolution and closing its ticket.
    first = mine[mine["Order ID"] == done[0]]
    catalogue = load_catalogue()
    store.append_rows("Resolutions", resolution_rows(first, pd.Timestamp(as_of_utc(key)), "t", "earlier run",
                                                     SELF_HEALED, catalogue))

    healed = materialize(key)
    again = materialize(key)
    assert healed.success and again.success
    assert metadata(healed, "self_healed_tickets")["tickets_self_healed"] == 3
    assert metadata(healed, "self_healed_tickets")["resolutions_appended"] == 2
    assert metadata(again, "self_healed_tickets")["tickets_self_healed"] == 0
    tabs = store.read_tabs(["Assignments", "Resolutions"])
    after = tabs["Assignments"].set_index("Order ID")
    assert (after.loc[done, "Status"] == "RESOLVED").all()
    resolutions = tabs["Resolutions"]
    assert sorted(resolutions["Order ID"]) == sorted(done)          # one row per ticket, none twice
    assert set(resolutions["Resolution Type"]) == {SELF_HEALED}
    row = resolutions[resolutions["Order ID"] == done[1]].iloc[0]
    assert row["Triage Run"] == key and row["SLA Status"] in ("MET", "MISSED") and int(row["Resolution Minutes"]) >= 0
    assert int(row["SLA Target Minutes"]) == catalogue.reasons[row["Stuck Reason"]].sla_hours * 60
    # A freed order is not handed out again: it is no longer stuck.
    assert not any(tabs["Assignments"]["Order ID"].isin(done) & (tabs["Assignments"]["Status"] == "OPEN"))


def test_resolution_rows_say_met_or_missed_against_the_reason_sla() -> None:
    catalogue = load_catalogue()
    reason = next(name for name, r in catalogue.reasons.items() if r.sla_hours == 24)
    tab = tickets(("M1", "a@x.example", 24.0, reason), ("M2", "a@x.example", 24.1, reason),
                  ("M3", "a@x.example", 1.0, "typed by hand"))
    rows = resolution_rows(tab, TICK, "stamp", "n", SELF_HEALED, catalogue).set_index("Order ID")
    assert rows.loc["M1", "SLA Status"] == "MET" and rows.loc["M1", "Resolution Minutes"] == "1440"
    assert rows.loc["M2", "SLA Status"] == "MISSED"
    assert rows.loc["M3", "SLA Status"] == "" and rows.loc["M3", "SLA Target Minutes"] == ""
