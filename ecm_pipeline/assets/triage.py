"""The triage: snapshot, qualify, score, assign, brief. Each step wires resources, calls the pure
domain functions, writes its partitions to the lake and records metadata per partition.

Every step covers one tick, or a whole range of ticks in one run (`BackfillPolicy.single_run`): the
snapshot of a month is one query, classification one vectorised pass, each partition one lake file.
The steps that write the Sheet or post to Slack act for the live tick only (see `run_context.py`);
for any other tick they record why they did nothing and succeed, so a backfill stays green."""


import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd

from ecm_pipeline.archive import every_ticket
from ecm_pipeline.domain import summary
from ecm_pipeline.domain.announcements import ANNOUNCED, PENDING, carried_over, empty_ledger, ledger
from ecm_pipeline.domain.assignment import plan_assignments, triage_outcome
from ecm_pipeline.domain.briefing import briefing_messages, thread_orders, triage_figures
from ecm_pipeline.domain.classification import attach_catalogue, classify
from ecm_pipeline.domain.gate_frames import PARTITION, stacked, unstacked
from ecm_pipeline.domain.history import backlog_flow
from ecm_pipeline.domain.progress import (
    RESOLVED,
    SELF_HEALED,
    band_counts,
    capacity_warning,
    completed_tickets,
    over_capacity,
    resolution_rows,
    sla_breach_alert,
    ticket_sla,
)
from ecm_pipeline.domain.qualification import auto_cancel_warning, flag_already_assigned, qualify
from ecm_pipeline.domain.roster import parse_roster
from ecm_pipeline.domain.scoring import score
from ecm_pipeline.domain.tickets import (
    ASSIGNED_AT_FORMAT,
    FIRST_TICKET_COLUMNS,
    TICKET_KEY,
    first_ticket_at,
    human_duplicates,
    open_tickets,
    order_ids,
    pipeline_copies,
)
from ecm_pipeline.gates import read_checked
from ecm_pipeline.metadata import (
    backlog_numbers,
    column_schema,
    counts_per_partition,
    md_list,
    partition_metadata,
)
from ecm_pipeline.partitions import TIMEZONE, as_of_utc, previous_key, tick_of, triage_partitions
from ecm_pipeline.resources.lake import LakeResource
from ecm_pipeline.resources.sheet import AssignmentStore, AssignmentStoreResource
from ecm_pipeline.resources.slack import SlackDestinationResource
from ecm_pipeline.resources.warehouse import WarehouseResource
from ecm_pipeline.run_context import materialized_in_run, partition_keys, side_effects_blocked
from ecm_pipeline.settings import load_catalogue, load_settings
from ecm_pipeline.snapshot import order_states, take_snapshots

GROUP = "ecm_triage"
OWNERS = ["team:ecm-ops"]
PARTITIONED = {"partitions_def": triage_partitions, "backfill_policy": dg.BackfillPolicy.single_run()}
# The steps that act for the live tick only (they write the Sheet or post); a backfill leaves them out.
LIVE_TICK_TAG = ("ecm/live_tick_only", "true")
LIVE_TICK_ONLY = dict([LIVE_TICK_TAG])
_settings = load_settings()
SLACK_RETRY = dg.RetryPolicy(max_retries=_settings.slack.retries, delay=_settings.slack.retry_delay_seconds,
                             backoff=dg.Backoff.EXPONENTIAL)


# The UI's freshness indicator on the briefing: posted within the grace after each tick. Dagster's
# cron policy looks at the asset's latest materialization whatever its partition, so a run of an
# old tick (which materializes the briefing as skipped) can make it look fresh; the alert comes
# from `missed_tick_sensor`, which checks the live tick's own partition (health.py).
BRIEFING_FRESHNESS = dg.FreshnessPolicy.cron(
    deadline_cron=_settings.schedule.deadline_cron, timezone=_settings.schedule.timezone,
    lower_bound_delta=timedelta(minutes=_settings.schedule.grace_minutes))


def _spec(key: str, description: str, *, kinds: set[str], deps: list[str] | None = None,
          tags: dict[str, str] | None = None, **extra) -> dg.AssetSpec:
    return dg.AssetSpec(key, description=description, group_name=GROUP, owners=OWNERS, kinds=kinds,
                        deps=deps or [], tags={"ecm/stage": "triage", **(tags or {})}, **extra)


def _skip_all(context: dg.AssetExecutionContext, assets: list[str], reason: str) -> list[dg.MaterializeResult]:
    """A step that must not act for these ticks: say why, write nothing, stay green."""
    context.log.info(f"nothing done: {reason}")
    return [dg.MaterializeResult(asset_key=a, metadata={"skipped": True, "skipped_reason": reason}) for a in assets]


def _where(keys: list[str], ticks: int) -> str:
    """How a log line names the ticks it is about: the tick, or how many of the run's ticks."""
    return keys[0] if len(keys) == 1 else f"{ticks} of {len(keys)} ticks"


def _log_exclusions(context: dg.AssetExecutionContext, by_key: dict) -> None:
    """One warning per kind of exclusion for the whole run (not one per tick: a backfill of months
    would bury the log and write an event per line)."""
    keys = list(by_key)
    excluded = pd.concat([s.excluded.assign(tick=k) for k, s in by_key.items()], ignore_index=True)
    for kind, rows in excluded.groupby("exclusion"):
        by_value = rows.groupby(rows["sub_state" if kind == "unknown_sub_state" else "currency"].fillna("(blank)"))
        detail = "; ".join(f"{value}: {g['order_id'].nunique()} ({', '.join(g['order_id'].drop_duplicates().head(5))})"
                           for value, g in by_value)
        context.log.warning(f"{_where(keys, rows['tick'].nunique())}: {rows['order_id'].nunique()} orders left out "
                            f"of the triage as {kind} — {detail}")
    approximate = [k for k, s in by_key.items() if s.mode == "approximate"]
    if approximate:
        context.log.info(f"{_where(keys, len(approximate))}: snapshot approximate — "
                         f"{approximate[-1]}: {by_key[approximate[-1]].reason()}")


def _log_quarantine(context: dg.AssetExecutionContext, disqualified: dict[str, pd.DataFrame], settings) -> None:
    """The orders set aside as unusable, and the auto-cancel alarm, once for the run."""
    keys = list(disqualified)
    frames = pd.concat([d.assign(tick=k) for k, d in disqualified.items()], ignore_index=True)
    quarantined = frames[frames["disqualification_code"] == "invalid_amount"].drop_duplicates("order_id", keep="last")
    for row in quarantined.head(50).itertuples():
        context.log.warning(f"{row.tick}: quarantined (not triaged): {row.order_id}: {row.disqualification_reason}")
    alarms = {k: w for k, d in disqualified.items() if (w := auto_cancel_warning(d, settings.qualification))}
    if alarms:
        last = list(alarms)[-1]
        context.log.warning(f"{_where(keys, len(alarms))}: {alarms[last]}" if len(keys) == 1 else
                            f"{_where(keys, len(alarms))}: auto-cancel may be broken (at {last}: {alarms[last]})")


# --- stuck_orders -------------------------------------------------------------------------------

@dg.multi_asset(
    name="snapshot",
    specs=[
        _spec("stuck_orders", "Every candidate stuck order as of the tick: orders 12 h to 30 days old, in a stuck "
              "status and an actionable sub-state, in AED/GBP/EUR, one row per order, enriched from every source "
              "system (payments, Falcon, payouts, Lulu, RFIs, TRM, RDA) as the warehouse knew them at the tick. "
              "The raw material of the triage.", kinds={"redshift", "pandas", "parquet"}),
        _spec("excluded_orders", "Orders in a stuck status left out of the triage for a reason someone should "
              "review: a sub-state in neither list (DEC-008) or a currency outside AED/GBP/EUR.",
              kinds={"pandas", "parquet"}, deps=["stuck_orders"]),
    ],
    **PARTITIONED,
)
def snapshot(context: dg.AssetExecutionContext, warehouse: WarehouseResource, lake: LakeResource):
    """Takes the point-in-time snapshot of every tick of the run in one warehouse query."""
    settings = load_settings()
    keys = partition_keys(context)
    snaps = take_snapshots(warehouse, [as_of_utc(k) for k in keys], settings)
    by_key = {k: snaps[as_of_utc(k)] for k in keys}
    run_id = context.run.run_id
    versions = lake.write("stuck_orders", {k: s.candidates for k, s in by_key.items()}, run_id=run_id)
    lake.write("excluded_orders", {k: s.excluded for k, s in by_key.items()}, run_id=run_id,
               lineage={k: {"stuck_orders": v} for k, v in versions.items()})
    _log_exclusions(context, by_key)
    numbers = backlog_numbers({k: s.candidates for k, s in by_key.items()}, settings)
    excluded = {k: s.excluded for k, s in by_key.items()}
    kinds = counts_per_partition(excluded, "exclusion")
    sub_states = counts_per_partition(
        {k: e[e["exclusion"] == "unknown_sub_state"] for k, e in excluded.items()}, "sub_state", blank="(blank)")
    currencies = counts_per_partition(
        {k: e[e["exclusion"] == "out_of_scope_currency"] for k, e in excluded.items()}, "currency", blank="(blank)")
    for key, snap in by_key.items():
        context.add_asset_metadata({
            **partition_metadata(snap.candidates, lake.uri("stuck_orders", key)),
            **numbers[key],
            "as_of_utc": snap.as_of.isoformat(),
            "snapshot_mode": snap.mode,
            "snapshot_reason": snap.reason() or "every field of every order is known as of the tick",
            "approximate_orders": snap.approximate_orders,
            "lake_version": versions[key],
            **({"dagster/column_schema": column_schema(snap.candidates),
                "preview": dg.MetadataValue.md(summary.preview(
                    snap.candidates, ["order_id", "currency", "send_amount", "status", "sub_state", "hours_stuck"]))}
               if key == keys[-1] else {}),
        }, asset_key="stuck_orders", partition_key=key)
        context.add_asset_metadata({
            **partition_metadata(excluded[key], lake.uri("excluded_orders", key)),
            "unknown_sub_state_orders": kinds[key].get("unknown_sub_state", 0),
            "out_of_scope_currency_orders": kinds[key].get("out_of_scope_currency", 0),
            "unknown_sub_states_seen": dg.MetadataValue.json(sub_states[key]),
            "out_of_scope_currencies": dg.MetadataValue.json(currencies[key]),
        }, asset_key="excluded_orders", partition_key=key)
    yield dg.MaterializeResult(asset_key="stuck_orders")
    yield dg.MaterializeResult(asset_key="excluded_orders")


# --- qualified_orders ---------------------------------------------------------------------------

@dg.multi_asset(
    name="qualification",
    specs=[
        _spec("qualified_orders", "The actionable backlog: stuck orders classified into a stuck reason (with the "
              "rule that fired, its team, SLA, runbook and next action), without dead, abandoned, unpaid and "
              "unusable orders. Orders already with an agent stay in, flagged `already_assigned`.",
              kinds={"pandas", "parquet"}, deps=["stuck_orders"]),
        _spec("disqualified_orders", "Stuck orders set aside, each with its disqualification code and reason "
              "(abandoned, dead, unpaid, no Lulu record, unusable amount): never silently dropped.",
              kinds={"pandas", "parquet"}, deps=["stuck_orders"]),
    ],
    **PARTITIONED,
)
def qualification(context: dg.AssetExecutionContext, lake: LakeResource, sheet: AssignmentStoreResource):
    """Classifies and qualifies every tick of the run in one vectorised pass."""
    settings = load_settings()
    keys = partition_keys(context)
    inputs = read_checked(context, lake, "stuck_orders", keys, "qualify orders")
    tickets = sheet.store().read_tab("Assignments")
    classified = attach_catalogue(classify(stacked({k: f.frame for k, f in inputs.items()})))
    qualified_all, disqualified_all = qualify(classified, settings.qualification)
    # Tickets as they were at the tick, for the live tick too: what a run of the tick writes must
    # not depend on how far another run of it got (the assignment step flags again, live).
    ticks = qualified_all[PARTITION].map({k: pd.Timestamp(as_of_utc(k)) for k in keys})
    qualified = unstacked(flag_already_assigned(qualified_all, tickets, ticks), keys)
    disqualified = unstacked(disqualified_all, keys)
    lineage = {k: {"stuck_orders": inputs[k].version} for k in keys}
    run_id = context.run.run_id
    versions = lake.write("qualified_orders", qualified, run_id=run_id, lineage=lineage)
    lake.write("disqualified_orders", disqualified, run_id=run_id, lineage=lineage)
    _log_quarantine(context, disqualified, settings)
    numbers = backlog_numbers(qualified, settings)
    per_reason = counts_per_partition(qualified, "stuck_reason")
    per_rule = counts_per_partition(qualified, "rule_id", blank="(none)")
    per_team = counts_per_partition(qualified, "team")
    per_code = counts_per_partition(disqualified, "disqualification_code")
    for key in keys:
        q, d = qualified[key], disqualified[key]
        quarantined = d[d["disqualification_code"] == "invalid_amount"]
        notes = (quarantined["order_id"] + ": " + quarantined["disqualification_reason"]).tolist()
        context.add_asset_metadata({
            **partition_metadata(q, lake.uri("qualified_orders", key)),
            **numbers[key],
            "candidates": len(q) + len(d),
            "disqualified": len(d),
            "already_assigned": int(q["already_assigned"].sum()),
            "monitor_only": int(q["no_action"].sum()),
            "quarantined_bad_input": md_list(notes),
            "auto_cancel_warning": auto_cancel_warning(d, settings.qualification) or "",
            "orders_per_reason": dg.MetadataValue.json(per_reason[key]),
            "orders_per_rule": dg.MetadataValue.json(per_rule[key]),
            "orders_per_team": dg.MetadataValue.json(per_team[key]),
            "lake_version": versions[key],
            **({"preview": dg.MetadataValue.md(summary.preview(q))} if key == keys[-1] else {}),
        }, asset_key="qualified_orders", partition_key=key)
        context.add_asset_metadata({
            **partition_metadata(d, lake.uri("disqualified_orders", key)),
            "disqualified_per_code": dg.MetadataValue.json(per_code[key]),
        }, asset_key="disqualified_orders", partition_key=key)
    yield dg.MaterializeResult(asset_key="qualified_orders")
    yield dg.MaterializeResult(asset_key="disqualified_orders")


# --- scored_orders ------------------------------------------------------------------------------

@dg.asset(deps=["qualified_orders"], kinds={"pandas", "parquet"}, group_name=GROUP, owners=OWNERS,
          tags={"ecm/stage": "triage"}, **PARTITIONED)
def scored_orders(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """The backlog ranked by urgency: a 0-1 score from age, value, severity, RFI, payment and
    attempts (each factor kept, so a score can be explained) and a priority P1-P4."""
    settings = load_settings()
    keys = partition_keys(context)
    inputs = read_checked(context, lake, "qualified_orders", keys, "score orders")
    frames = stacked({k: f.frame for k, f in inputs.items()},
                     as_of={k: pd.Timestamp(as_of_utc(k)) for k in keys})
    scored_all = score(frames, frames["as_of"], settings.scoring)
    ranked = scored_all.sort_values(["partition_key", "score", "hours_stuck", "order_id"],
                                    ascending=[True, False, False, True])
    scored = unstacked(ranked, keys, drop=("as_of",))
    versions = lake.write("scored_orders", scored, run_id=context.run.run_id,
                          lineage={k: {**inputs[k].lineage, "qualified_orders": inputs[k].version} for k in keys})
    numbers = backlog_numbers(scored, settings)
    priorities = counts_per_partition(scored, "priority")
    mean_score = {k: round(float(v), 4) for k, v in stacked(scored, ["score"]).groupby("partition_key")["score"]
                  .mean().items()}
    for key, frame in scored.items():
        context.add_asset_metadata({
            **partition_metadata(frame, lake.uri("scored_orders", key)),
            **numbers[key],
            **{f"orders_{p.lower()}": priorities[key].get(p, 0) for p in ("P1", "P2", "P3", "P4")},
            "mean_score": mean_score.get(key, 0.0),
            "lake_version": versions[key],
            **({"dagster/column_schema": column_schema(frame),
                "top_orders": dg.MetadataValue.md(summary.preview(
                    frame, ["order_id", "priority", "score", "amount_aed", "hours_stuck", "stuck_reason"]))}
               if key == keys[-1] else {}),
        }, partition_key=key)
    return dg.MaterializeResult()


# --- self_healed_tickets ------------------------------------------------------------------------

@dg.asset(deps=["stuck_orders"], kinds={"googlesheets", "pandas", "parquet"}, group_name=GROUP, owners=OWNERS,
          tags={"ecm/stage": "triage", "ecm/writes": "sheet", **LIVE_TICK_ONLY}, pool="ecm_assignment_store",
          **PARTITIONED)
def self_healed_tickets(context: dg.AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource,
                        sheet: AssignmentStoreResource) -> dg.MaterializeResult:
    """Open tickets whose order has completed since it was assigned (it left the stuck set as
    COMPLETED in GOMS by the tick): marked RESOLVED with resolution type SELF_HEALED and appended
    to Resolutions, exactly once, before the tick's assignment so they free their agents' room.
    Live tick only."""
    keys = partition_keys(context)
    blocked = side_effects_blocked(context, keys)
    if blocked:
        return _skip_all(context, ["self_healed_tickets"], blocked)[0]
    settings = load_settings()
    key = keys[0]
    still_stuck = set(read_checked(context, lake, "stuck_orders", keys, "self-heal tickets")[key].frame["order_id"])
    store = sheet.store()
    with store.lock("Assignments", owner=f"run {context.run.run_id[:8]} ({key}, self-heal)",
                    timeout_seconds=settings.sheet.lock_timeout_seconds):
        tabs = store.read_tabs(["Assignments", "Resolutions"])
        tab = tabs["Assignments"]
        gone = sorted(set(order_ids(open_tickets(tab))) - still_stuck)
        healed = completed_tickets(tab, order_states(warehouse, gone, as_of_utc(key)))
        now = datetime.now(UTC)
        rows = resolution_rows(healed, pd.Timestamp(now.replace(tzinfo=None)),
                               now.astimezone(TIMEZONE).strftime(ASSIGNED_AT_FORMAT),
                               f"order COMPLETED in GOMS by the {key} tick: closed by the pipeline",
                               SELF_HEALED, load_catalogue())
        # The Resolutions row first, then the status: a run that dies in between leaves an open
        # ticket whose resolution is already recorded, which the next run only closes.
        appended = store.append_once("Resolutions", rows, tabs["Resolutions"])
        closed = store.update_rows("Assignments", healed, ["Order ID", "Triage Run", "Status"], RESOLVED)
    if closed < len(healed):
        context.log.warning(f"{len(healed) - closed} self-healed tickets changed in the Sheet while being closed; "
                            "the next tick looks at them again")
    versions = lake.write("self_healed_tickets", {key: rows}, run_id=context.run.run_id)
    return dg.MaterializeResult(metadata={
        **partition_metadata(rows, lake.uri("self_healed_tickets", key)),
        "orders_checked": len(gone),
        "tickets_self_healed": closed,
        "resolutions_appended": appended,
        "lake_version": versions[key],
        "tickets": md_list([f"{r.order_id} ({r.agent})" for r in rows.rename(
            columns={"Order ID": "order_id", "Agent": "agent"}).itertuples()]),
    })


# --- assignments --------------------------------------------------------------------------------

def remove_pipeline_copies(context: dg.AssetExecutionContext, store: AssignmentStore, tab: pd.DataFrame,
                           ) -> pd.DataFrame:
    """Converge the Assignments tab: a later copy of a ticket the pipeline wrote (same order, same
    triage run: a write that landed after the client gave up) is deleted; the first row stays."""
    copies = pipeline_copies(tab)
    if copies.empty:
        return tab
    removed = store.delete_rows("Assignments", copies, TICKET_KEY)
    context.log.warning(f"removed {removed} later copies of tickets the pipeline wrote twice "
                        f"({', '.join(order_ids(copies).head(5))}{'…' if len(copies) > 5 else ''})")
    return tab.drop(copies.index)


@dg.multi_asset(
    name="assignment",
    specs=[
        _spec("assignments", "Who works what: new tickets appended to the Assignments tab, high value first in "
              "one fair rotation across active agents, never above an agent's Max Tickets, never re-assigning an "
              "order that already has an open ticket; plus the outcome of every actionable order of the tick "
              "(assigned, already assigned, monitor only, overflow). Writes the Sheet for the live tick only.",
              kinds={"googlesheets", "pandas", "parquet"}, deps=["scored_orders", "self_healed_tickets"],
              tags={"ecm/writes": "sheet", **LIVE_TICK_ONLY}),
        _spec("assignment_agents", "Per agent of the roster for the tick: open tickets before, room, tickets and "
              "high-value tickets given now (what the fairness gate checks).",
              # The same parents as `assignments`: Dagster 1.13 refuses (now and then) a UI backfill
              # over a non-subsettable multi-asset whose keys have different parents.
              kinds={"pandas", "parquet"}, deps=["scored_orders", "self_healed_tickets"], tags=LIVE_TICK_ONLY),
    ],
    pool="ecm_assignment_store",
    **PARTITIONED,
)
def assignment(context: dg.AssetExecutionContext, lake: LakeResource, sheet: AssignmentStoreResource):
    """Plans and appends the tick's tickets under the Assignments tab's lock."""
    keys = partition_keys(context)
    blocked = side_effects_blocked(context, keys)
    if blocked:
        yield from _skip_all(context, ["assignments", "assignment_agents"], blocked)
        return
    settings = load_settings()
    key = keys[0]
    scored_file = read_checked(context, lake, "scored_orders", keys, "assign orders")[key]
    store = sheet.store()
    with store.lock("Assignments", owner=f"run {context.run.run_id[:8]} ({key})",
                    timeout_seconds=settings.sheet.lock_timeout_seconds):
        tabs = store.read_tabs(["Agents", "Assignments"])
        tab = remove_pipeline_copies(context, store, tabs["Assignments"])
        roster, problems = parse_roster(tabs["Agents"], settings.assignment)
        for problem in problems:
            context.log.warning(problem)
        typed_twice = sorted(set(order_ids(human_duplicates(tab))))
        if typed_twice:
            context.log.warning(f"orders open more than once in the Assignments tab (typed by people; never "
                                f"assigned again, fix the Sheet): {', '.join(typed_twice[:20])}")
        scored = flag_already_assigned(scored_file.frame, tab)
        assigned_at = datetime.now(UTC).astimezone(TIMEZONE).strftime(ASSIGNED_AT_FORMAT)
        plan = plan_assignments(scored, roster, tab, settings.assignment, triage_run=key, assigned_at=assigned_at)
        written = store.append_rows("Assignments", plan.new_rows)
        if written and store.late_writes:
            # A copy of the append may land late (the request outlived the client): look once more.
            time.sleep(settings.sheet.settle_seconds)
            tab = remove_pipeline_copies(context, store, store.read_tab("Assignments"))
        elif written:
            tab = pd.concat([tab, plan.new_rows], ignore_index=True)
    outcome = triage_outcome(scored, tab, key, settings.assignment.high_value_aed)
    lineage = {key: {**scored_file.lineage, "scored_orders": scored_file.version}}
    versions = lake.write("assignments", {key: outcome}, run_id=context.run.run_id, lineage=lineage)
    lake.write("assignment_agents", {key: plan.agents}, run_id=context.run.run_id, lineage=lineage)
    this_tick = int((outcome["assignment"] == "assigned").sum())
    if written == 0:
        context.log.info(f"nothing new to assign for {key}: {this_tick} already assigned by this tick")
    agents = plan.agents.assign(load_after=plan.agents["load_before"] + plan.agents["assigned_now"])
    yield dg.MaterializeResult(asset_key="assignments", metadata={
        **partition_metadata(outcome, lake.uri("assignments", key)),
        "dagster/row_count": len(tab),
        "new_assignments": written,
        "assigned_this_tick": this_tick,
        "already_assigned": plan.already_assigned,
        "monitor_only": plan.monitored,
        "overflow": len(plan.overflow),
        "agents_at_capacity": int((agents["load_after"] >= agents["max_tickets"]).sum()),
        "roster_rows_set_aside": len(problems),
        "orders_open_twice_in_sheet": len(typed_twice),
        "lake_version": versions[key],
        "per_agent": dg.MetadataValue.md(summary.preview(
            agents, ["email", "team", "load_before", "assigned_now", "high_value_now", "load_after",
                     "max_tickets"], rows=100)),
        "roster_problems": md_list(problems),
        "sheet_duplicates": md_list(typed_twice),
        "new_rows": dg.MetadataValue.md(summary.preview(
            plan.new_rows, ["Order ID", "Assigned Agent", "Priority", "Currency", "Amount", "Diagnosis"])),
    })
    yield dg.MaterializeResult(asset_key="assignment_agents", metadata={
        **partition_metadata(plan.agents, lake.uri("assignment_agents", key))})


# --- slack_briefing -----------------------------------------------------------------------------

def announced_before(lake: LakeResource, slack: SlackDestinationResource, key: str, since: str) -> pd.DataFrame:
    """The announcement ledgers of the ticks from `since` up to (not including) `key`. A ledger left
    `pending` (the run died, or Slack failed, while posting) is settled from Slack itself: a ticket
    counts as announced if its agent's reply for that tick is in the channel."""
    parts = []
    channel = None
    for earlier in [k for k in lake.partitions("ticket_announcements") if since <= k < key]:
        entries = lake.read("ticket_announcements", earlier).frame
        pending = entries["status"] == PENDING
        if pending.any():
            channel = channel or slack.conversation()
            parent = channel.find("triage", earlier)
            delivered = {p.key for p in channel.replies(parent, earlier)} if parent else set()
            reached = entries["agent_key"].map(lambda a, d=delivered: f"triage/agent/{a}" in d)
            entries.loc[pending & reached, "status"] = ANNOUNCED
        parts.append(entries)
    return pd.concat(parts, ignore_index=True) if parts else empty_ledger()


@dg.multi_asset(
    name="briefing",
    specs=[
        _spec("slack_briefing", "The triage briefing for the ops channel: backlog, value at risk, currency mix, "
              "disqualified and monitored counts, overflow and who got what, with one thread reply per agent "
              "listing their orders, including any earlier ticket never announced. Re-running a tick updates its "
              "briefing instead of posting a second one. Posts for the live tick only.",
              kinds={"slack"}, deps=["assignments"], tags={"ecm/writes": "slack", **LIVE_TICK_ONLY},
              freshness_policy=BRIEFING_FRESHNESS),
        _spec("ticket_announcements", "Which tickets each briefing announced (order, triage run, agent): the "
              "ledger that makes every ticket reach its agent exactly once, even across a Slack outage.",
              kinds={"parquet"}, deps=["assignments"], tags=LIVE_TICK_ONLY),
    ],
    retry_policy=SLACK_RETRY,
    **PARTITIONED,
)
def briefing(context: dg.AssetExecutionContext, lake: LakeResource, sheet: AssignmentStoreResource,
             slack: SlackDestinationResource):
    """Posts (or updates) the tick's briefing and records what it announced."""
    keys = partition_keys(context)
    blocked = side_effects_blocked(context, keys)
    if blocked:
        yield from _skip_all(context, ["slack_briefing", "ticket_announcements"], blocked)
        return
    settings = load_settings()
    key = keys[0]
    outcome_file = read_checked(context, lake, "assignments", keys, "brief")[key]
    outcome = outcome_file.frame
    tabs = sheet.store().read_tabs(["Agents", "Assignments"])
    roster, problems = parse_roster(tabs["Agents"], settings.assignment)
    typed_twice = sorted(set(order_ids(human_duplicates(tabs["Assignments"]))))
    warnings = [*problems, *([f"orders open twice in the Assignments tab, typed by people (never assigned again, "
                              f"please fix): {', '.join(typed_twice[:10])}"] if typed_twice else [])]
    pipeline_runs = tabs["Assignments"]["Triage Run"].astype(str).str.strip()
    since = min([r for r in pipeline_runs if r < key and r[:1].isdigit()], default=key)
    carried = carried_over(tabs["Assignments"], announced_before(lake, slack, key, since), key)
    announced = thread_orders(outcome, carried, key)
    new_this_run = (materialized_in_run(context, "assignments") or {}).get("new_assignments", 0)
    figures = triage_figures(outcome, lake.read("disqualified_orders", key).frame, roster, tick_of(key), key,
                             settings.assignment.high_value_aed, announced, new_this_run, tuple(warnings))
    as_of = pd.Timestamp(as_of_utc(key))
    figures = replace(figures, self_healed=_self_healed(lake, key, as_of, tabs["Assignments"]),
                      sla_breached=band_counts(ticket_sla(tabs["Assignments"], load_catalogue(), as_of,
                                                          settings.progress))["BREACHED"])
    messages = briefing_messages(figures, announced, key, settings.slack.sheet_url, settings.categories.critical)
    lake.write("ticket_announcements", {key: ledger(announced, PENDING)}, run_id=context.run.run_id)
    try:
        deliveries = slack.publish(messages, key)
    except Exception as exc:
        raise dg.Failure(
            description=f"the briefing could not be delivered ({str(exc).splitlines()[0] if str(exc) else exc}); "
                        f"{len(announced)} tickets are in the Sheet but not yet announced — the next briefing "
                        "announces them",
            metadata={"tickets_not_announced": len(announced)},
        ) from exc
    versions = lake.write("ticket_announcements", {key: ledger(announced, ANNOUNCED)}, run_id=context.run.run_id)
    yield dg.MaterializeResult(asset_key="slack_briefing", metadata={
        "posted": deliveries[0].method == "chat.postMessage",
        "updated": deliveries[0].method == "chat.update",
        "messages": len(deliveries),
        "thread_replies": len(messages) - 1,
        "tickets_announced": len(announced),
        "carried_over": figures.carried_over,
        "destination": slack.describe(),
        "deliveries": dg.MetadataValue.json([d.__dict__ for d in deliveries]),
        "briefing": dg.MetadataValue.md(messages[0].text),
    })
    yield dg.MaterializeResult(asset_key="ticket_announcements", metadata={
        **partition_metadata(announced, lake.uri("ticket_announcements", key)), "lake_version": versions[key]})


def _self_healed(lake: LakeResource, key: str, as_of: pd.Timestamp, tickets: pd.DataFrame) -> int | None:
    """Orders in the previous tick's backlog that left it with no ticket by this tick; None when the
    previous tick's scored backlog is not in the lake."""
    before = previous_key(key)
    previous = lake.find("scored_orders", before)
    if previous is None:
        return None
    current = lake.read("scored_orders", key).frame
    orders = pd.concat([current["order_id"], previous.frame["order_id"]]).unique()
    flow = backlog_flow(key, as_of, current, previous.frame, before,
                        first_ticket_at(every_ticket(lake, tickets, FIRST_TICKET_COLUMNS, orders)))
    return int(flow["self_healed"].iloc[0])


# --- ticket_progress ----------------------------------------------------------------------------

@dg.asset(deps=["assignments"], kinds={"pandas", "parquet", "slack"}, group_name=GROUP, owners=OWNERS,
          tags={"ecm/stage": "triage", "ecm/writes": "slack", **LIVE_TICK_ONLY}, retry_policy=SLACK_RETRY,
          **PARTITIONED)
def ticket_progress(context: dg.AssetExecutionContext, lake: LakeResource, sheet: AssignmentStoreResource,
                    slack: SlackDestinationResource) -> dg.MaterializeResult:
    """Where the open tickets stand at the tick: each one's SLA (from Assigned At, with the
    catalogue's hours for its reason) banded BREACHED / CRITICAL (> 75 %) / WARNING (> 50 %) / OK,
    and the agents above 80 % of their Max Tickets. Posts the SLA breach alert (3 or more breached)
    and the capacity warning, once per tick. Live tick only: the Sheet holds today's statuses, not
    a past tick's."""
    keys = partition_keys(context)
    blocked = side_effects_blocked(context, keys)
    if blocked:
        return _skip_all(context, ["ticket_progress"], blocked)[0]
    settings = load_settings()
    key = keys[0]
    tabs = sheet.store().read_tabs(["Agents", "Assignments"])
    roster, _ = parse_roster(tabs["Agents"], settings.assignment)   # its problems are the briefing's to report
    sla = ticket_sla(tabs["Assignments"], load_catalogue(), pd.Timestamp(as_of_utc(key)), settings.progress)
    full = over_capacity(tabs["Assignments"], roster, settings.progress)
    label = f"{tick_of(key):%Y-%m-%d %H:%M} GST"
    alerts = [m for m in (sla_breach_alert(sla, roster, label, settings.progress),
                          capacity_warning(full, label, settings.progress)) if m is not None]
    channel = slack.conversation() if alerts else None   # one client for both alerts
    for message in alerts:   # each its own message, found again by (key, tick) on a re-run
        channel.publish([message], key)
    versions = lake.write("ticket_progress", {key: sla}, run_id=context.run.run_id)
    return dg.MaterializeResult(metadata={
        **partition_metadata(sla, lake.uri("ticket_progress", key)),
        "open_tickets": len(sla),
        **{f"sla_{band.lower()}": n for band, n in band_counts(sla).items()},
        "agents_over_capacity": md_list([f"{r.agent}: {r.load} of {r.max_tickets}" for r in full.itertuples()]),
        "alerts_posted": [m.key for m in alerts],
        "lake_version": versions[key],
        "preview": dg.MetadataValue.md(summary.preview(sla.head(20), ["order_id", "agent", "stuck_reason",
                                                                     "hours_open", "sla_hours", "sla_band"])),
    })


triage_assets = [snapshot, qualification, scored_orders, self_healed_tickets, assignment, briefing, ticket_progress]
