"""The five triage assets. Each one wires resources, calls the pure domain functions, writes its
partition and records metadata; the business logic lives in `ecm_pipeline.domain`."""


from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd

from ecm_pipeline.domain import summary
from ecm_pipeline.domain.assignment import STICKY_STATES, AssignmentPlan, plan_assignments
from ecm_pipeline.domain.briefing import briefing_messages, triage_figures
from ecm_pipeline.domain.classification import attach_catalogue, classify
from ecm_pipeline.domain.qualification import auto_cancel_warning, flag_already_assigned, qualify
from ecm_pipeline.domain.roster import parse_roster
from ecm_pipeline.domain.scoring import score
from ecm_pipeline.gates import require_gates_passed
from ecm_pipeline.partitions import as_of_utc, tick_of, triage_partitions
from ecm_pipeline.resources.lake import LakeResource
from ecm_pipeline.resources.sheet import AssignmentStoreResource
from ecm_pipeline.resources.slack import SlackDestinationResource, posting_blocked
from ecm_pipeline.resources.warehouse import WarehouseResource
from ecm_pipeline.settings import load_settings
from ecm_pipeline.snapshot import take_snapshot

GROUP = "ecm_triage"
COMMON = {"partitions_def": triage_partitions, "group_name": GROUP, "owners": ["team:ecm-ops"]}
LIVE_TOLERANCE = timedelta(hours=1)


def _md_list(items: list[str], limit: int = 20) -> dg.MetadataValue:
    shown = [f"- {item}" for item in items[:limit]]
    if len(items) > limit:
        shown.append(f"- … and {len(items) - limit} more")
    return dg.MetadataValue.md("\n".join(shown) or "_none_")


def _table_metadata(frame: pd.DataFrame) -> dict:
    return {
        "dagster/row_count": len(frame),
        "currency_mix": dg.MetadataValue.json(summary.currency_mix(frame)),
        "value_at_risk": dg.MetadataValue.json(summary.value_at_risk(frame)),
    }


@dg.asset(kinds={"redshift", "pandas"}, **COMMON)
def stuck_orders(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                 lake: LakeResource) -> dg.MaterializeResult:
    """Every candidate stuck order as of the tick: orders 12 h to 30 days old, in a stuck status and
    an actionable sub-state, in AED/GBP/EUR, one row per order, enriched from every source system
    (payments, Falcon, payouts, Lulu, RFIs, TRM, RDA). The raw material of the triage."""
    settings = load_settings()
    key = context.partition_key
    as_of = as_of_utc(key)
    live = datetime.now(UTC).replace(tzinfo=None) - as_of < LIVE_TOLERANCE
    snap = take_snapshot(warehouse, as_of, settings, live=live)
    lake.write("stuck_orders", key, snap.candidates)
    lake.write("excluded_orders", key, snap.excluded)
    for kind, rows in snap.excluded.groupby("exclusion"):
        by_value = rows.groupby(rows["sub_state" if kind == "unknown_sub_state" else "currency"].fillna("(blank)"))
        detail = "; ".join(f"{value}: {len(g)} ({', '.join(g['order_id'].head(5))})" for value, g in by_value)
        context.log.warning(f"{len(rows)} orders left out of the triage as {kind} — {detail}")
    return dg.MaterializeResult(metadata={
        **_table_metadata(snap.candidates),
        "as_of_utc": as_of.isoformat(),
        "snapshot_mode": snap.mode,
        "snapshot_exact": snap.exact,
        "orders_per_category": dg.MetadataValue.json(summary.counts(snap.candidates, "category")),
        "unknown_sub_states_seen": dg.MetadataValue.json(
            summary.counts(snap.excluded[snap.excluded["exclusion"] == "unknown_sub_state"].fillna("(blank)"),
                           "sub_state")),
        "out_of_scope_currencies": dg.MetadataValue.json(
            summary.counts(snap.excluded[snap.excluded["exclusion"] == "out_of_scope_currency"].fillna("(blank)"),
                           "currency")),
        "preview": dg.MetadataValue.md(summary.preview(
            snap.candidates, ["order_id", "currency", "send_amount", "status", "sub_state", "hours_stuck"])),
    })


@dg.asset(deps=[stuck_orders], kinds={"pandas"}, **COMMON)
def qualified_orders(context: dg.AssetExecutionContext, lake: LakeResource,
                     sheet: AssignmentStoreResource) -> dg.MaterializeResult:
    """The actionable backlog: stuck orders classified into a stuck reason (with its team, SLA,
    runbook and next action), with dead, abandoned, unpaid and unusable orders set aside in
    `disqualified_orders` with a code and a reason. Orders already with an agent stay in, flagged."""
    settings = load_settings()
    key = context.partition_key
    require_gates_passed(lake, key, ("stuck_orders",), "qualify orders")
    classified = attach_catalogue(classify(lake.read("stuck_orders", key)))
    qualified, disqualified = qualify(classified, settings.qualification)
    qualified = flag_already_assigned(qualified, sheet.store().read_tab("Assignments"))
    lake.write("qualified_orders", key, qualified)
    lake.write("disqualified_orders", key, disqualified)

    quarantined = disqualified[disqualified["disqualification_code"] == "invalid_amount"]
    quarantine_notes = [f"{r.order_id}: {r.disqualification_reason}" for r in quarantined.itertuples()]
    for note in quarantine_notes:
        context.log.warning(f"quarantined (not triaged): {note}")
    warning = auto_cancel_warning(disqualified, settings.qualification)
    if warning:
        context.log.warning(warning)
    return dg.MaterializeResult(metadata={
        **_table_metadata(qualified),
        "candidates": len(classified),
        "disqualified": len(disqualified),
        "disqualified_per_code": dg.MetadataValue.json(summary.counts(disqualified, "disqualification_code")),
        "quarantined_bad_input": _md_list(quarantine_notes),
        "auto_cancel_warning": warning or "",
        "orders_per_reason": dg.MetadataValue.json(summary.counts(qualified, "stuck_reason")),
        "orders_per_rule": dg.MetadataValue.json(summary.counts(qualified.fillna({"rule_id": "(none)"}), "rule_id")),
        "orders_per_team": dg.MetadataValue.json(summary.counts(qualified, "team")),
        "already_assigned": int(qualified["already_assigned"].sum()),
        "monitor_only": int(qualified["no_action"].sum()),
        "preview": dg.MetadataValue.md(summary.preview(qualified)),
    })


@dg.asset(deps=[qualified_orders], kinds={"pandas"}, **COMMON)
def scored_orders(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """The backlog ranked by urgency: a 0-1 score from age, value, severity, RFI, payment and
    attempts (each factor kept, so a score can be explained) and a priority P1-P4."""
    settings = load_settings()
    key = context.partition_key
    require_gates_passed(lake, key, ("stuck_orders", "qualified_orders"), "score orders")
    scored = score(lake.read("qualified_orders", key), pd.Timestamp(as_of_utc(key)), settings.scoring)
    scored = scored.sort_values(["score", "hours_stuck", "order_id"], ascending=[False, False, True])
    lake.write("scored_orders", key, scored)
    return dg.MaterializeResult(metadata={
        **_table_metadata(scored),
        "orders_per_priority": dg.MetadataValue.json(summary.counts(scored, "priority")),
        "mean_score": round(float(scored["score"].mean()), 4) if len(scored) else 0.0,
        "top_orders": dg.MetadataValue.md(summary.preview(
            scored, ["order_id", "priority", "score", "amount_aed", "hours_stuck", "stuck_reason"])),
    })


def _triage_outcome(scored: pd.DataFrame, tab: pd.DataFrame, plan: AssignmentPlan, key: str,
                    high_value_aed: float) -> pd.DataFrame:
    """One row per actionable order: what this tick did with it, and who has it."""
    sticky = tab[tab["Status"].str.strip().str.upper().isin(STICKY_STATES)]
    owner = sticky.drop_duplicates("Order ID", keep="last").set_index("Order ID")
    out = scored.copy()
    out["high_value"] = out["amount_aed"] >= high_value_aed
    out["agent_email"] = out["order_id"].map(owner["Assigned Agent"])
    out["agent_key"] = out["agent_email"].str.strip().str.lower()
    earlier_this_tick = out["order_id"].map(owner["Triage Run"]).eq(key)
    new = out["order_id"].isin(plan.assigned["order_id"])
    out["assignment"] = "overflow"
    out.loc[out["no_action"].astype(bool), "assignment"] = "monitor_only"
    out.loc[out["already_assigned"], "assignment"] = "already_assigned"
    out.loc[out["already_assigned"] & earlier_this_tick, "assignment"] = "assigned_earlier"
    out.loc[new, "assignment"] = "assigned"
    return out


@dg.asset(deps=[scored_orders], kinds={"googlesheets", "pandas"}, **COMMON)
def assignments(context: dg.AssetExecutionContext, lake: LakeResource,
                sheet: AssignmentStoreResource) -> dg.MaterializeResult:
    """Who works what: new tickets appended to the Assignments tab, high value first in one fair
    rotation across active agents, never above an agent's Max Tickets, never re-assigning an order
    that already has an open ticket. Orders nobody had room for are reported as overflow."""
    settings = load_settings()
    key = context.partition_key
    require_gates_passed(lake, key, ("stuck_orders", "qualified_orders"), "assign orders")
    store = sheet.store()
    roster, roster_problems = parse_roster(store.read_tab("Agents"), settings.assignment)
    for problem in roster_problems:
        context.log.warning(problem)
    tab_before = store.read_tab("Assignments")
    scored = flag_already_assigned(lake.read("scored_orders", key), tab_before)
    assigned_at = datetime.now(UTC).astimezone(tick_of(key).tzinfo).strftime("%Y-%m-%d %H:%M:%S%z")
    plan = plan_assignments(scored, roster, tab_before, settings.assignment, triage_run=key,
                            assigned_at=assigned_at)
    written = store.append_rows("Assignments", plan.new_rows)
    outcome = _triage_outcome(scored, store.read_tab("Assignments"), plan, key, settings.assignment.high_value_aed)
    lake.write("assignment_agents", key, plan.agents)
    lake.write("assignments", key, outcome)
    if written == 0:
        context.log.info(f"nothing new to assign for {key}: "
                         f"{int((outcome['assignment'] == 'assigned_earlier').sum())} already assigned by this tick")
    agents = plan.agents.assign(load_after=plan.agents["load_before"] + plan.agents["assigned_now"])
    return dg.MaterializeResult(metadata={
        "dagster/row_count": written,
        "new_assignments": written,
        "assigned_this_tick": int(outcome["assignment"].isin(["assigned", "assigned_earlier"]).sum()),
        "already_assigned": plan.already_assigned,
        "monitor_only": plan.monitored,
        "overflow": len(plan.overflow),
        "per_agent": dg.MetadataValue.md(summary.preview(
            agents, ["email", "team", "load_before", "assigned_now", "high_value_now", "load_after",
                     "max_tickets"], rows=100)),
        "roster_problems": _md_list(roster_problems),
        "new_rows": dg.MetadataValue.md(summary.preview(
            plan.new_rows, ["Order ID", "Assigned Agent", "Priority", "Currency", "Amount", "Diagnosis"])),
    })


@dg.asset(deps=[assignments], kinds={"slack"}, **COMMON)
def slack_briefing(context: dg.AssetExecutionContext, lake: LakeResource, sheet: AssignmentStoreResource,
                   slack: SlackDestinationResource) -> dg.MaterializeResult:
    """The triage briefing for the ops channel: backlog, value at risk, currency mix, disqualified
    and monitored counts, overflow and who got what, with one thread reply per agent listing their
    orders. Re-running a tick updates its briefing instead of posting a second one."""
    settings = load_settings()
    key = context.partition_key
    require_gates_passed(lake, key, ("stuck_orders", "qualified_orders", "assignments"), "brief")
    outcome = lake.read("assignments", key)
    roster, _ = parse_roster(sheet.store().read_tab("Agents"), settings.assignment)
    figures = triage_figures(outcome, lake.read("disqualified_orders", key), roster, tick_of(key),
                             settings.assignment.high_value_aed)
    messages = briefing_messages(figures, outcome, settings.slack.sheet_url)
    blocked = posting_blocked(context.run.tags, tick_of(key), settings.slack.post_max_age_hours)
    deliveries = [] if blocked else slack.publish(messages, key)
    if blocked:
        context.log.info(f"briefing not posted: {blocked}")
    return dg.MaterializeResult(metadata={
        "posted": not blocked,
        "not_posted_reason": blocked or "",
        "destination": slack.describe(),
        "deliveries": dg.MetadataValue.json([d.__dict__ for d in deliveries]),
        "thread_replies": len(messages) - 1,
        "briefing": dg.MetadataValue.md(messages[0].text),
    })


triage_assets = [stuck_orders, qualified_orders, scored_orders, assignments, slack_briefing]
