"""The backlog over time (SPEC §10): per tick, the scored backlog broken down by reason, currency and
priority, how it moved since the previous tick, and a chart of it. Built from the lake for every
tick of the run at once, so a backfill of months is one run; the live tick's run adds its tick."""


import base64
from pathlib import Path

import dagster as dg
import pandas as pd

from ecm_pipeline.archive import every_ticket
from ecm_pipeline.charts import backlog_chart
from ecm_pipeline.domain.gate_frames import stacked, unstacked
from ecm_pipeline.domain.history import backlog_breakdown, flow_row, flows_frame
from ecm_pipeline.domain.tickets import FIRST_TICKET_COLUMNS, first_ticket_at
from ecm_pipeline.gates import read_checked
from ecm_pipeline.metadata import column_schema, partition_metadata
from ecm_pipeline.partitions import TIMEZONE, as_of_utc, previous_key, triage_partitions
from ecm_pipeline.resources.lake import LakeResource
from ecm_pipeline.resources.sheet import AssignmentStoreResource
from ecm_pipeline.run_context import partition_keys
from ecm_pipeline.settings import ecm_home, load_catalogue, load_settings

GROUP = "ecm_history"
OWNERS = ["team:ecm-data"]
CHART_FILE = "backlog_history.png"


def charts_dir() -> Path:
    return ecm_home() / "charts"


def _spec(key: str, description: str, deps: list[str]) -> dg.AssetSpec:
    return dg.AssetSpec(key, description=description, group_name=GROUP, owners=OWNERS, deps=deps,
                        kinds={"pandas", "parquet"}, tags={"ecm/stage": "history"})


@dg.multi_asset(
    name="history",
    specs=[
        _spec("backlog_history", "The backlog over time: per tick, one row per stuck reason x currency x "
              "priority with the orders, the value at risk in AED and the median and max hours stuck. Its "
              "materialization carries the trend chart (also written to $ECM_HOME/charts/). Query it with "
              "DuckDB over the lake.", ["scored_orders"]),
        _spec("backlog_flows", "How the backlog moved at each tick: orders that entered it since the previous "
              "tick, orders that left it, and of those the ones that left without anyone being assigned "
              "(self-healed). Blank when the previous tick is not in the lake.", ["scored_orders"]),
    ],
    partitions_def=triage_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def history(context: dg.AssetExecutionContext, lake: LakeResource, sheet: AssignmentStoreResource):
    """Summarises every tick of the run and redraws the trend chart."""
    settings = load_settings()
    catalogue = load_catalogue()
    keys = partition_keys(context)
    inputs = read_checked(context, lake, "scored_orders", keys, "build the backlog history")
    # Read, never written: which orders had a ticket by each tick tells self-healing from work done.
    ticks = {k: pd.Timestamp(as_of_utc(k)) for k in keys}
    frames = {k: f.frame for k, f in inputs.items()}
    before = previous_key(keys[0])
    found = lake.find("scored_orders", before)
    previous = found.frame if found else None
    orders = pd.concat([f["order_id"] for f in [*frames.values(), *([previous] if previous is not None else [])]])
    first_ticket = first_ticket_at(every_ticket(lake, sheet.store().read_tab("Assignments"), FIRST_TICKET_COLUMNS,
                                                orders.unique()))
    breakdown = unstacked(backlog_breakdown(stacked(frames), ticks, catalogue), keys, keep_partition=True)
    rows = []
    for key in keys:
        rows.append(flow_row(key, ticks[key], frames[key], previous, before if previous is not None else None,
                             first_ticket))
        before, previous = key, frames[key]
    flows = unstacked(flows_frame(rows), keys, keep_partition=True)
    run_id = context.run.run_id
    lineage = {k: {"scored_orders": inputs[k].version} for k in keys}
    versions = lake.write("backlog_history", breakdown, run_id=run_id, lineage=lineage)
    flow_versions = lake.write("backlog_flows", flows, run_id=run_id, lineage=lineage)

    chart_md, chart_path = draw_chart(lake, keys[-1], settings.history.chart_days, str(TIMEZONE),
                                      {k: (breakdown[k], flows[k]) for k in keys})
    for key in keys:
        flow = flows[key].iloc[0]
        compared = bool(flow["compared_with"])
        extra = {"chart": chart_md, "chart_file": str(chart_path)} if key == keys[-1] and chart_md else {}
        context.add_asset_metadata({
            **partition_metadata(breakdown[key], lake.uri("backlog_history", key)),
            "backlog_count": int(flow["backlog"]),
            "value_at_risk_aed": float(flow["value_at_risk_aed"]),
            "lake_version": versions[key],
            **({"dagster/column_schema": column_schema(breakdown[key])} if key == keys[-1] else {}),
            **extra,
        }, asset_key="backlog_history", partition_key=key)
        context.add_asset_metadata({
            **partition_metadata(flows[key], lake.uri("backlog_flows", key)),
            "backlog_count": int(flow["backlog"]),
            **({"entered": int(flow["entered"]), "left": int(flow["left"]),
                "self_healed": int(flow["self_healed"]), "self_heal_rate": float(flow["self_heal_rate"])}
               if compared else {"not_compared": "the previous tick's scored_orders is not in the lake"}),
            "compared_with": flow["compared_with"],
            "lake_version": flow_versions[key],
        }, asset_key="backlog_flows", partition_key=key)
    context.log.info(f"backlog history for {len(keys)} ticks; chart at {chart_path}")
    yield dg.MaterializeResult(asset_key="backlog_history")
    yield dg.MaterializeResult(asset_key="backlog_flows")


def draw_chart(lake: LakeResource, last: str, days: float, timezone: str,
               fresh: dict[str, tuple[pd.DataFrame, pd.DataFrame]]) -> tuple[dg.MetadataValue | None, Path]:
    """Redraw the chart over the `days` up to `last`: the ticks of this run from memory (`fresh`:
    key -> (history, flows)), the earlier ones from the lake. The PNG goes to `$ECM_HOME/charts/`
    and, inline, into the metadata (a markdown image)."""
    first_tick = pd.Timestamp(as_of_utc(last)) - pd.Timedelta(days=days)
    held = set(lake.partitions("backlog_history")) & set(lake.partitions("backlog_flows"))
    earlier = sorted(k for k in held - set(fresh) if k <= last and pd.Timestamp(as_of_utc(k)) >= first_tick)
    history = [f.frame for f in lake.read_many("backlog_history", earlier).values()]
    flows = [f.frame for f in lake.read_many("backlog_flows", earlier).values()]
    for key, (h, f) in fresh.items():
        if pd.Timestamp(as_of_utc(key)) >= first_tick:
            history.append(h)
            flows.append(f)
    path = charts_dir() / CHART_FILE
    if not flows:
        return None, path
    flow = pd.concat(flows, ignore_index=True).sort_values("tick")
    first = flow["partition_key"].iloc[0]
    png = backlog_chart(pd.concat(history, ignore_index=True), flow, timezone,
                        f"ECM backlog, {first} to {last} ({len(flow)} ticks)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(png)
    tmp.replace(path)
    return dg.MetadataValue.md(f"![backlog trend](data:image/png;base64,{base64.b64encode(png).decode()})"), path


history_assets = [history]
