"""The manager's daily reports (SPEC §9-10): the backlog report before the triage's briefing and the
patterns report after it, produced by the daily tick's run (`reports.daily_tick`). Each is an asset
partitioned like the triage: a run over any tick computes the reports of its daily ticks and keeps
them in the lake; only the live tick posts them. Nothing in the triage depends on them, so a
failing report never stops the triage."""


from datetime import timedelta

import dagster as dg
import pandas as pd

from ecm_pipeline.assets.triage import OWNERS, PARTITIONED
from ecm_pipeline.charts import inflow_chart
from ecm_pipeline.domain.backlog_report import backlog_messages, report_backlog
from ecm_pipeline.domain.gate_frames import PARTITION, stacked, unstacked
from ecm_pipeline.domain.patterns import (
    PatternReport,
    clusters,
    pattern_messages,
    reason_spikes,
    sheet_rows,
    with_trend,
)
from ecm_pipeline.gates import read_checked
from ecm_pipeline.metadata import partition_metadata
from ecm_pipeline.partitions import KEY_FORMAT, as_of_utc, tick_of
from ecm_pipeline.resources.lake import LakeResource
from ecm_pipeline.resources.sheet import AssignmentStoreResource
from ecm_pipeline.resources.slack import SlackDestinationResource
from ecm_pipeline.resources.warehouse import WarehouseResource
from ecm_pipeline.run_context import partition_keys, side_effects_blocked
from ecm_pipeline.settings import Settings, load_settings
from ecm_pipeline.snapshot import take_snapshots

GROUP = "ecm_reports"
# The backlog report is ready as soon as the backlog is scored, as the assignment is: it goes first
# (in-process steps run in priority order), so the channel reads backlog, briefing, patterns.
FIRST = {"dagster/priority": "10"}


def daily_keys(keys: list[str], settings: Settings) -> list[str]:
    """The run's ticks that are the daily tick."""
    if settings.reports.daily_tick is None:
        return []
    return [k for k in keys if tick_of(k).strftime("%H:%M") == settings.reports.daily_tick]


def _not_daily(settings: Settings) -> str:
    if settings.reports.daily_tick is None:
        return "the daily reports are off (reports.daily_tick is not set)"
    return f"not the daily tick ({settings.reports.daily_tick}): the reports come with the daily tick's run"


def day_before(key: str) -> str:
    return (tick_of(key) - timedelta(days=1)).strftime(KEY_FORMAT)


def _post(context: dg.AssetExecutionContext, slack: SlackDestinationResource, messages, key: str) -> dict:
    """Post a report for the live tick (converging to one copy), or say why not."""
    blocked = side_effects_blocked(context, [key])
    if blocked:
        return {"posted": False, "not_posted_because": blocked}
    deliveries = slack.publish(messages, key)
    return {"posted": True, "messages": len(deliveries), "parent_ts": deliveries[0].ts,
            "deliveries": dg.MetadataValue.json([d.__dict__ for d in deliveries])}


def _daily_or_skip(context: dg.AssetExecutionContext, settings: Settings) -> list[str]:
    """The run's daily ticks; every other tick of the run is materialized as skipped, with why."""
    keys = partition_keys(context)
    daily = daily_keys(keys, settings)
    others = [k for k in keys if k not in daily]
    if others:
        context.log.info(f"no report for {len(others)} ticks: {_not_daily(settings)}")
    for key in others:
        context.add_asset_metadata({"skipped": True, "skipped_reason": _not_daily(settings)}, partition_key=key)
    return daily


# --- backlog_report -------------------------------------------------------------------------------

@dg.asset(deps=["scored_orders"], group_name=GROUP, owners=OWNERS, kinds={"pandas", "parquet", "slack"},
          tags={"ecm/stage": "reports", "ecm/writes": "slack"}, op_tags=FIRST, **PARTITIONED)
def backlog_report(context: dg.AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource,
                   slack: SlackDestinationResource) -> dg.MaterializeResult:
    """The daily backlog report for the ops manager: the actionable backlog's size and direction
    against the same tick the day before, its severity split, value at risk per currency and in
    AED, cohorts (carried over, yesterday, today), the inflow of the last days by created date and
    currency with spikes marked and its chart, the sub-states, and the orders still too young to
    triage. Computed for the daily tick of any run and kept in the lake; posted for the live tick
    only, as `:bar_chart: *ECM Backlog*` with the details and the chart in its thread."""
    settings = load_settings()
    keys = _daily_or_skip(context, settings)
    if not keys:
        return dg.MaterializeResult()
    scored = read_checked(context, lake, "scored_orders", keys, "report the backlog")
    # The inflow counts every stuck order created in the window, young ones too: the snapshot's own
    # query (one for all the run's daily ticks) without its minimum age.
    window = settings.snapshot.model_copy(update={"min_age_hours": 0, "window_days": settings.reports.inflow_days})
    recent = take_snapshots(warehouse, [as_of_utc(k) for k in keys], settings.model_copy(update={"snapshot": window}))
    held = set(lake.partitions("scored_orders"))
    yesterday = {k: f.frame for k, f in lake.read_many(
        "scored_orders", sorted({day_before(k) for k in keys} & held)).items()}   # one pooled read
    reports = {key: report_backlog(scored[key].frame, yesterday.get(day_before(key)),
                                   recent[as_of_utc(key)].candidates, tick_of(key), settings) for key in keys}
    frames = {k: pd.DataFrame([r.summary()]) for k, r in reports.items()}
    versions = lake.write("backlog_report", frames, run_id=context.run.run_id,
                          lineage={k: {"scored_orders": scored[k].version} for k in keys})
    for key in keys[:-1]:
        context.add_asset_metadata({**reports[key].summary(), "lake_version": versions[key], "posted": False,
                                    "not_posted_because": "not the run's last tick"}, partition_key=key)
    key, report = keys[-1], reports[keys[-1]]
    filename = f"ecm-inflow-{key.replace(':', '')}.png"
    messages = backlog_messages(report, f"Chart: `{filename}` in this thread")
    posted = _post(context, slack, messages, key)
    if posted["posted"]:
        png = inflow_chart(report.inflow, f"ECM inflow by created date, {len(report.inflow['day'].unique())} days "
                                          f"to {key}")
        chart = slack.conversation().attach(png, filename, f"ECM inflow to {key}", posted["parent_ts"])
        posted["chart"] = chart.record if chart else "already in the thread"
    context.add_asset_metadata({
        **{k: v for k, v in report.summary().items() if v is not None}, **posted, "lake_version": versions[key],
        "report": dg.MetadataValue.md(messages[0].text),
        "inflow": dg.MetadataValue.md(messages[1].text), "breakdown": dg.MetadataValue.md(messages[2].text),
    }, partition_key=key)
    return dg.MaterializeResult()


# --- pattern_report -------------------------------------------------------------------------------

@dg.asset(deps=["scored_orders", "slack_briefing"], group_name=GROUP, owners=OWNERS,
          kinds={"pandas", "parquet", "slack", "googlesheets"},
          tags={"ecm/stage": "reports", "ecm/writes": "slack"}, **PARTITIONED)
def pattern_report(context: dg.AssetExecutionContext, lake: LakeResource, sheet: AssignmentStoreResource,
                   slack: SlackDestinationResource) -> dg.MaterializeResult:
    """The daily patterns report for the ops manager: which failures are systemic. Clusters of the
    backlog by full signature (currency, status, sub-state, Lulu, Falcon, payout, partner, RFI) with
    three or more orders, each with its impact (orders x value AED / 10,000 x average hours / 24),
    flags, most common stuck reason and trend against the previous report (UP / DOWN / NEW / GONE);
    novel clusters of uncategorized orders; and a spike test per stuck reason against the same tick
    of the last days. Kept in the lake for every daily tick; for the live tick also appended to the
    Pattern Intelligence tab and posted as `:microscope: *ECM Patterns*`, after the briefing."""
    settings = load_settings()
    cfg = settings.reports
    keys = _daily_or_skip(context, settings)
    if not keys:
        return dg.MaterializeResult()
    scored = read_checked(context, lake, "scored_orders", keys, "report the patterns")
    # The spike baseline: each reason's count at the same tick of the earlier days the lake holds.
    held = set(lake.partitions("scored_orders"))
    wanted = sorted({d for k in keys for d in _baseline_days(k, cfg.spike_days)} & held - set(keys))
    counts = {k: f.frame["stuck_reason"].value_counts() for k, f in lake.read_many("scored_orders", wanted).items()}
    counts |= {k: f.frame["stuck_reason"].value_counts() for k, f in scored.items()}
    earlier = sorted(k for k in lake.partitions("pattern_report") if k < keys[0])
    previous_key = earlier[-1] if earlier else ""
    previous = lake.read("pattern_report", previous_key).frame if previous_key else None
    reports, frames = {}, {}
    found_per_key = unstacked(clusters(stacked({k: scored[k].frame for k in keys}), cfg,
                                       settings.assignment.high_value_aed, settings.categories.critical,
                                       by=(PARTITION,)), keys)
    for key in keys:
        found = found_per_key[key]
        trended, gone = with_trend(found, previous)
        days = [d for d in _baseline_days(key, cfg.spike_days) if d in counts]
        history = pd.DataFrame([counts[d] for d in days]).fillna(0) if days else pd.DataFrame()
        spikes = reason_spikes(counts[key], history, cfg)
        reports[key] = PatternReport(tick_of(key), trended, gone, spikes, previous_key)
        frames[key] = trended
        previous, previous_key = found, key
    versions = lake.write("pattern_report", frames, run_id=context.run.run_id,
                          lineage={k: {"scored_orders": scored[k].version} for k in keys})
    for key in keys[:-1]:
        context.add_asset_metadata({**reports[key].summary(), **partition_metadata(frames[key], lake.uri(
            "pattern_report", key)), "posted": False, "not_posted_because": "not the run's last tick",
            "lake_version": versions[key]}, partition_key=key)
    key, report = keys[-1], reports[keys[-1]]
    messages = pattern_messages(report, cfg)
    posted = _post(context, slack, messages, key)
    if posted["posted"]:
        store = sheet.store()
        with store.lock("Pattern Intelligence", owner=f"run {context.run.run_id[:8]} ({key})",
                        timeout_seconds=settings.sheet.lock_timeout_seconds):
            posted["sheet_rows_appended"] = store.append_once("Pattern Intelligence", sheet_rows(report, key),
                                                              store.read_tab("Pattern Intelligence"))
    context.add_asset_metadata({
        **report.summary(), **partition_metadata(frames[key], lake.uri("pattern_report", key)), **posted,
        "lake_version": versions[key], "report": dg.MetadataValue.md(messages[0].text),
        "spike_test": dg.MetadataValue.md(messages[-1].text),
    }, partition_key=key)
    return dg.MaterializeResult()


def _baseline_days(key: str, days: int) -> list[str]:
    """The same tick on each of the `days` days before `key`."""
    tick = tick_of(key)
    return [(tick - timedelta(days=n)).strftime(KEY_FORMAT) for n in range(days, 0, -1)]


report_assets = [backlog_report, pattern_report]
