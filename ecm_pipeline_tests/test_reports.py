"""The manager's daily reports (SPEC §9-10): pattern clusters, their trend and the spike test on
known answers; the backlog report's figures; every message type within Slack's limits with a
backlog of 2,000 orders and 40 agents; the daily tick leaving the three reports in order."""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pandas as pd

from ecm_pipeline.cli import main
from ecm_pipeline.domain.alerts import Failure, failure_alert
from ecm_pipeline.domain.announcements import empty_ledger
from ecm_pipeline.domain.assignment import plan_assignments, triage_outcome
from ecm_pipeline.domain.backlog_report import backlog_messages, report_backlog
from ecm_pipeline.domain.briefing import (
    MAIN_LIMIT,
    MAX_BLOCKS,
    GateFailure,
    Message,
    briefing_messages,
    thread_orders,
    thread_plan,
    triage_figures,
    validation_alert,
)
from ecm_pipeline.domain.patterns import (
    GONE,
    NEW,
    UP,
    PatternReport,
    clusters,
    pattern_messages,
    reason_spikes,
    with_trend,
)
from ecm_pipeline.domain.progress import capacity_warning, over_capacity, sla_breach_alert, ticket_sla
from ecm_pipeline.domain.roster import parse_roster
from ecm_pipeline.domain.tickets import AGENT_COLUMNS, ASSIGNMENT_COLUMNS
from ecm_pipeline.partitions import TIMEZONE
from ecm_pipeline.resources.sheet import LocalSheetStore
from ecm_pipeline.settings import load_catalogue, load_settings

SETTINGS = load_settings()
REPORTS = SETTINGS.reports
TICK = datetime(2026, 11, 29, 7, 0, tzinfo=TIMEZONE)


def orders(n: int, *, start: int = 0, reason: str = "stuck_at_lulu", sub_state: str = "FULFILLMENT_PENDING",
           currency: str = "AED", hours: float = 30.0, amount: float = 1000.0, **cells) -> pd.DataFrame:
    """`n` scored orders sharing one signature."""
    created = pd.Timestamp("2026-11-29 03:00") - pd.Timedelta(hours=hours)
    return pd.DataFrame([{
        "order_id": f"{currency}{start + i:08d}", "currency": currency, "status": "PROCESSING_DEAL_IN",
        "sub_state": sub_state, "lulu_status": "PENDING", "ftv_transaction_id": None, "falcon_status": None,
        "payout_status": None, "payout_partner": None, "rfi_status": None, "stuck_reason": reason,
        "amount_aed": amount, "send_amount": amount, "hours_stuck": hours, "created_at": created,
        "category": "critical" if hours > 36 else "action_required" if hours > 24 else "warning",
        "action": "Chase Lulu", **cells} for i in range(n)])


def test_clusters_need_three_orders_and_score_impact_and_flags() -> None:
    scored = pd.concat([orders(4, hours=80, amount=6000), orders(2, start=10, sub_state="MANUAL_REVIEW"),
                        orders(6, start=20, reason="uncategorized", sub_state="PENDING", falcon_status="FAILED")],
                       ignore_index=True)
    found = clusters(scored, REPORTS, SETTINGS.assignment.high_value_aed, SETTINGS.categories.critical)
    assert len(found) == 2                                            # the pair is no pattern
    lulu = found[found["mapped_reason"] == "stuck_at_lulu"].iloc[0]
    assert lulu["impact"] == round(4 * (24000 / 10_000) * (80 / 24), 2)
    assert lulu["flags"] == "high value, majority critical, > 72 h"
    novel = found[found["novel"]].iloc[0]
    assert novel["orders"] == 6 and novel["has_falcon"] == "yes" and novel["mapped_reason"] == "uncategorized"


def test_a_cluster_that_grows_shows_up_and_one_that_went_shows_gone() -> None:
    high, crit = SETTINGS.assignment.high_value_aed, SETTINGS.categories.critical
    first = clusters(pd.concat([orders(3), orders(4, start=10, sub_state="MANUAL_REVIEW")]), REPORTS, high, crit)
    second = clusters(pd.concat([orders(8), orders(3, start=20, currency="GBP")]), REPORTS, high, crit)
    baseline, _ = with_trend(first, None)
    assert set(baseline["trend"]) == {"baseline"}
    trended, gone = with_trend(second, first)
    by_currency = trended.set_index("currency")
    assert by_currency.loc["AED", "trend"] == UP and by_currency.loc["AED", "change"] == 5   # UP +5
    assert by_currency.loc["GBP", "trend"] == NEW
    assert gone["sub_state"].tolist() == ["MANUAL_REVIEW"] and gone["trend"].tolist() == [GONE]
    report = PatternReport(TICK, trended, gone, reason_spikes(pd.Series(dtype=int), pd.DataFrame(), REPORTS),
                           "2026-11-28-07:00")
    assert "UP +5" in pattern_messages(report, REPORTS)[0].text


def _days(counts: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"stuck_at_lulu": counts, "refund_pending": [20] * len(counts)})


def test_a_spike_in_one_reason_is_flagged_and_a_steady_one_is_not() -> None:
    rng = np.random.default_rng(3)
    history = _days([int(v) for v in rng.normal(40, 3, 14).round()])
    result = reason_spikes(pd.Series({"stuck_at_lulu": 95, "refund_pending": 21}), history, REPORTS)
    verdicts = result.set_index("stuck_reason")["verdict"]
    assert verdicts["stuck_at_lulu"] == "spike" and verdicts["refund_pending"] == "normal"
    steady = reason_spikes(pd.Series({"stuck_at_lulu": 43, "refund_pending": 20}), history, REPORTS)
    assert set(steady["verdict"]) == {"normal"}


def test_six_days_of_history_are_not_enough() -> None:
    result = reason_spikes(pd.Series({"stuck_at_lulu": 500}), _days([40] * 6), REPORTS)
    assert set(result["verdict"]) == {"not enough history"} and set(result["points"]) == {6}
    report = PatternReport(TICK, clusters(orders(3), REPORTS, 5000, 36), orders(0), result, "")
    assert "not enough history (6 earlier days in the lake, 7 needed)" in pattern_messages(report, REPORTS)[0].text
    assert reason_spikes(pd.Series({"stuck_at_lulu": 500}), _days([40] * 7), REPORTS)["verdict"].iloc[0] == "spike"


def test_backlog_report_figures() -> None:
    scored = pd.concat([orders(5, hours=40), orders(3, start=10, hours=20, currency="GBP"),
                        orders(2, start=20, hours=13)], ignore_index=True)
    recent = pd.concat([scored, orders(4, start=30, hours=2)], ignore_index=True)[["order_id", "currency",
                                                                                  "created_at"]]
    report = report_backlog(scored, scored.head(7), recent, TICK, SETTINGS)
    assert report.backlog == 10 and report.previous == 7 and ":arrow_up: +3" in report.direction
    assert report.severity == {"critical": 5, "action_required": 0, "warning": 5}
    assert report.value_per_currency == {"AED": 7000.0, "GBP": 3000.0}
    assert report.pipeline == 4
    assert report.cohorts["carry_over"] + report.cohorts["yesterday"] + report.cohorts["today"] == 10
    assert len(report.inflow) == REPORTS.inflow_days * 2
    text = backlog_messages(report)[0].text
    assert text.startswith(":bar_chart: *ECM Backlog* — 2026-11-29 07:00 GST") and "*10 actionable orders*" in text


def test_an_inflow_more_than_twice_the_day_before_is_a_spike() -> None:
    created = [pd.Timestamp("2026-11-26 08:00")] * 3 + [pd.Timestamp("2026-11-27 08:00")] * 7 + \
              [pd.Timestamp("2026-11-28 08:00")] * 14
    recent = pd.DataFrame({"order_id": [f"O{i}" for i in range(len(created))], "currency": "AED",
                           "created_at": created})
    report = report_backlog(orders(1), None, recent, TICK, SETTINGS)
    flagged = report.inflow.set_index("day")["spike"]
    assert flagged[pd.Timestamp("2026-11-27").date()]              # 7 > 2 x 3
    assert not flagged[pd.Timestamp("2026-11-28").date()]          # 14 is exactly 2 x 7
    assert "no snapshot of the same tick yesterday" in backlog_messages(report)[0].text


# --- every message type within Slack's limits ----------------------------------------------------------

HOSTILE = "<!channel> & <@U123>"


def _backlog_of_2000() -> pd.DataFrame:
    """2,000 scored orders over many signatures, some data text trying to ping the channel."""
    rng = np.random.default_rng(11)
    n = 2000
    reasons = ["stuck_at_lulu", "refund_pending", "uncategorized", "status_sync_issue", "brn_issue"]
    hours = rng.uniform(12, 700, n)
    frame = pd.DataFrame({
        "order_id": [f"AE{i:010d}" for i in range(n)], "currency": rng.choice(["AED", "GBP", "EUR"], n),
        "status": "PROCESSING_DEAL_IN", "sub_state": rng.choice(["FULFILLMENT_PENDING", "MANUAL_REVIEW",
                                                                 f"PENDING {HOSTILE}"], n),
        "lulu_status": rng.choice(["PENDING", "CANCELLATION_COMPLETED", None], n),
        "ftv_transaction_id": None, "falcon_status": rng.choice(["FAILED", None], n),
        "payout_status": rng.choice(["COMPLETED", "FAILED", None], n),
        "payout_partner": rng.choice([f"PARTNER_{i}" for i in range(12)] + [HOSTILE], n),
        "rfi_status": rng.choice(["OPEN", None], n), "stuck_reason": rng.choice(reasons, n),
        "amount_aed": rng.uniform(50, 40000, n).round(2), "hours_stuck": hours,
        "created_at": pd.Timestamp("2026-11-29 03:00") - pd.to_timedelta(hours, unit="h"),
        "action": f"Chase it {HOSTILE}", "score": rng.uniform(0, 1, n), "priority": rng.choice(["P1", "P2", "P3"], n),
        "team": "Ops", "no_action": False, "already_assigned": False,
    })
    frame["send_amount"] = frame["amount_aed"]
    frame["category"] = np.select([hours > 36, hours > 24], ["critical", "action_required"], default="warning")
    return frame


def _within_limits(messages: list[Message]) -> None:
    head, rest = thread_plan(messages)
    assert len(head.text) <= MAIN_LIMIT, head.text[:200]
    for message in [head, *rest]:
        assert len(message.blocks) <= MAX_BLOCKS
        assert all(len(b["text"]["text"]) <= 3000 for b in message.blocks)
        assert "<!channel>" not in message.text and "<@U123>" not in message.text
        assert "<!channel>" not in json.dumps(message.blocks)


def test_every_message_type_respects_the_slack_limits_with_2000_orders_and_40_agents() -> None:
    scored = _backlog_of_2000()
    agent_rows = pd.DataFrame([[f"agent{i}@x.example", f"Agent {i} {HOSTILE}", "Ops", "", "TRUE", "60"]
                               for i in range(40)], columns=list(AGENT_COLUMNS))
    roster, _ = parse_roster(agent_rows, SETTINGS.assignment)
    key = "2026-11-29-07:00"
    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in ASSIGNMENT_COLUMNS})
    plan = plan_assignments(scored, roster, empty, SETTINGS.assignment, triage_run=key,
                            assigned_at="2026-11-29 07:00:05+0400")
    outcome = triage_outcome(scored, plan.new_rows, key, SETTINGS.assignment.high_value_aed)
    announced = thread_orders(outcome, empty_ledger(), key)
    disqualified = pd.DataFrame({"disqualification_code": ["dead"] * 30})
    figures = triage_figures(outcome, disqualified, roster, TICK, key, SETTINGS.assignment.high_value_aed, announced,
                             len(plan.new_rows), tuple(f"roster row {i}: {HOSTILE}" for i in range(30)))
    briefing = briefing_messages(figures, announced, key, "", SETTINGS.categories.critical)
    assert len(briefing) == 41 and briefing[0].text.startswith(":dart: *ECM Triage*")

    report = report_backlog(scored, scored.head(1500), scored[["order_id", "currency", "created_at"]], TICK, SETTINGS)
    backlog = backlog_messages(report, "chart")
    found, gone = with_trend(clusters(scored, REPORTS, 5000, 36), None)
    history = pd.DataFrame([scored["stuck_reason"].value_counts()] * 14)
    patterns = pattern_messages(PatternReport(TICK, found, gone, reason_spikes(
        scored["stuck_reason"].value_counts(), history, REPORTS), ""), REPORTS)
    assert len(found) > 20 and patterns[0].text.startswith(":microscope: *ECM Patterns*")

    tab = plan.new_rows.assign(**{"Assigned At": "2026-11-20 07:00:05+0400"})
    sla = ticket_sla(tab, load_catalogue(), pd.Timestamp("2026-11-29 03:00"), SETTINGS.progress)
    breach = sla_breach_alert(sla, roster, "2026-11-29 07:00 GST", SETTINGS.progress)
    capacity = capacity_warning(over_capacity(tab, roster, SETTINGS.progress), "t", SETTINGS.progress)
    failure = failure_alert(Failure("ecm_triage", "0123456789abcdef", key, ("stuck_orders",), "snapshot",
                                    f"WarehouseError: {HOSTILE} " + "x" * 5000), "http://127.0.0.1:3000/runs/0123")
    gate = validation_alert(TICK, [GateFailure("stuck_orders", f"check {i}", HOSTILE) for i in range(30)],
                            {"orders": 2000})
    titles = []
    for messages in (briefing, backlog, patterns, [breach], [capacity], [failure], [gate]):
        _within_limits(messages)
        titles.append(messages[0].text.split("\n")[0].split(" — ")[0])
    assert titles[:3] == [":dart: *ECM Triage*", ":bar_chart: *ECM Backlog*", ":microscope: *ECM Patterns*"]
    assert titles[3:6] == [":hourglass: *ECM SLA breaches*", ":warning: *ECM Capacity*",
                           ":rotating_light: ECM Manager Error"]


# --- the daily tick, end to end ---------------------------------------------------------------------------

def test_the_daily_tick_leaves_backlog_triage_and_patterns_in_order(demo_env, settings_overlay, capsys) -> None:
    home, key = demo_env
    settings_overlay(f"reports: {{daily_tick: '{key[-5:]}'}}\n")
    assert main(["triage"]) == 0
    assert main(["triage"]) == 0          # a re-run updates the reports; nothing is posted or appended twice
    out = capsys.readouterr().out
    assert "Backlog report posted (3 messages), chart " in out and "Patterns report posted" in out
    calls = [(path, json.loads(path.read_text())) for path in sorted((home / "outbox").glob("*.json"))]
    parents = [(path, args) for path, args in calls
               if "-chat.postMessage-" in path.name and not args.get("thread_ts")]
    reports = [":bar_chart: *ECM Backlog*", ":dart: *ECM Triage*", ":microscope: *ECM Patterns*"]
    titles = [args["text"].split(" — ")[0] for _, args in parents]
    assert [t for t in titles if t in reports] == reports     # the SLA and capacity alerts may come between
    backlog_ts = parents[titles.index(reports[0])][0].stem.rsplit("-", 1)[-1]
    uploads = [(path, args) for path, args in calls if "-files.upload_v2-" in path.name]
    assert len(uploads) == 1 and uploads[0][1]["thread_ts"] == backlog_ts
    chart = uploads[0][0].with_suffix(".png")
    assert chart.exists() and chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    replies = [args["text"] for path, args in calls if args.get("thread_ts") == backlog_ts and "chat.post" in path.name]
    assert any("Inflow by created date" in text for text in replies)
    assert any("Sub-states" in text for text in replies)
    rows = LocalSheetStore(home / "sheet.sqlite").read_tab("Pattern Intelligence")
    assert len(rows) > 0 and set(rows["Triage Run"]) == {key}
    assert not rows.duplicated(["Triage Run", "Signature"]).any()
    assert set(rows["Trend"]) == {"baseline"}
    assert (home / "lake" / "backlog_report" / f"{key}.parquet").exists()
    assert (home / "lake" / "pattern_report" / f"{key}.parquet").exists()


def test_a_failing_backlog_report_does_not_stop_the_triage(demo_env, settings_overlay, monkeypatch, capsys) -> None:
    home, key = demo_env
    settings_overlay(f"reports: {{daily_tick: '{key[-5:]}'}}\n")

    def broken(*_args, **_kwargs):
        raise RuntimeError("the backlog report broke")

    monkeypatch.setattr("ecm_pipeline.assets.reports.report_backlog", broken)
    assert main(["triage"]) == 1        # the run failed: someone must look at it
    capsys.readouterr()
    texts = [json.loads(p.read_text())["text"] for p in sorted((home / "outbox").glob("*chat.postMessage*.json"))]
    titles = [t.split(" — ")[0].split("\n")[0] for t in texts]
    assert ":bar_chart: *ECM Backlog*" not in titles
    assert ":dart: *ECM Triage*" in titles and ":microscope: *ECM Patterns*" in titles
    alert = next(t for t in texts if t.startswith(":rotating_light: ECM Manager Error"))
    assert "`backlog_report`" in alert and "the backlog report broke" in alert
    assert LocalSheetStore(home / "sheet.sqlite").read_tab("Assignments")["Triage Run"].eq(key).any()
