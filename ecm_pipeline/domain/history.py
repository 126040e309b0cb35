"""The backlog over time (SPEC §10): per tick, the actionable backlog broken down by stuck reason,
currency and priority, and how it moved since the previous tick — orders that entered it, orders
that left it, and of those the ones that left without anyone being assigned (self-healed)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ecm_pipeline.settings import Catalogue

HISTORY_COLUMNS = ["partition_key", "tick", "stuck_reason", "family", "currency", "priority", "orders",
                   "value_at_risk_aed", "median_hours", "max_hours"]
FLOW_COLUMNS = ["partition_key", "tick", "backlog", "value_at_risk_aed", "entered", "left", "self_healed",
                "self_heal_rate", "approximate_orders", "compared_with"]


def backlog_breakdown(scored: pd.DataFrame, ticks: Mapping[str, pd.Timestamp], catalogue: Catalogue) -> pd.DataFrame:
    """One row per partition x stuck reason x currency x priority of the scored backlog; `scored`
    holds many partitions' rows (a `partition_key` column), `ticks` their snapshot times."""
    if scored.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in HISTORY_COLUMNS}).astype(
            {"orders": int, "value_at_risk_aed": float, "median_hours": float, "max_hours": float,
             "tick": "datetime64[us]"})
    grouped = (scored.groupby(["partition_key", "stuck_reason", "currency", "priority"], observed=True)
               .agg(orders=("order_id", "size"), value_at_risk_aed=("amount_aed", "sum"),
                    median_hours=("hours_stuck", "median"), max_hours=("hours_stuck", "max"))
               .reset_index())
    families = {name: reason.family for name, reason in catalogue.reasons.items()}
    grouped["family"] = grouped["stuck_reason"].map(families).fillna("Uncategorized")
    grouped["tick"] = grouped["partition_key"].map(ticks)
    for column in ("value_at_risk_aed", "median_hours", "max_hours"):
        grouped[column] = grouped[column].round(2)
    return grouped[HISTORY_COLUMNS].astype({"tick": "datetime64[us]"})


def flow_row(key: str, tick: pd.Timestamp, scored: pd.DataFrame, previous: pd.DataFrame | None,
             previous_key: str | None, first_ticket: pd.Series) -> dict[str, object]:
    """The tick's backlog and how it moved since `previous` (the previous tick's scored backlog,
    None when the lake does not have it). An order that left counts as self-healed when no ticket
    for it had been assigned by the tick (`first_ticket`: `tickets.first_ticket_at` of the
    Assignments tab)."""
    now = set(scored["order_id"])
    row = {"partition_key": key, "tick": tick, "backlog": len(scored),
           "value_at_risk_aed": round(float(scored["amount_aed"].sum()), 2) if len(scored) else 0.0,
           "approximate_orders": int((scored.get("approximate_fields", pd.Series(dtype=str)) != "").sum()),
           "compared_with": previous_key or ""}
    if previous is None:
        return row | {"entered": np.nan, "left": np.nan, "self_healed": np.nan, "self_heal_rate": np.nan}
    before = set(previous["order_id"])
    left = sorted(before - now)
    healed = int((~(first_ticket.reindex(left) <= tick)).sum())   # no ticket, or one only after the tick
    return row | {"entered": len(now - before), "left": len(left), "self_healed": healed,
                  "self_heal_rate": round(healed / len(left), 4) if left else 0.0}


def flows_frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    """`flow_row`s as one frame of FLOW_COLUMNS."""
    frame = pd.DataFrame(rows, columns=FLOW_COLUMNS)
    # Counts stay integers, blank (not NaN) where the tick was not compared: a file's types do not
    # depend on which other ticks shared its run.
    return frame.astype({"tick": "datetime64[us]", "entered": "Int64", "left": "Int64", "self_healed": "Int64"})


def backlog_flow(key: str, tick: pd.Timestamp, scored: pd.DataFrame, previous: pd.DataFrame | None,
                 previous_key: str | None, first_ticket: pd.Series) -> pd.DataFrame:
    """One tick's `flow_row` as a frame."""
    return flows_frame([flow_row(key, tick, scored, previous, previous_key, first_ticket)])


def daily_flow(flows: pd.DataFrame, timezone: str) -> pd.DataFrame:
    """Per local day: orders that entered the backlog (the inflow), orders that left it, and of
    those the share that self-healed. A day whose ticks were never compared with an earlier tick
    has no figures (NaN), not zeros."""
    columns = {"day": object, "entered": float, "left": float, "self_healed": float, "self_heal_rate": float}
    if flows.empty:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})
    local = pd.to_datetime(flows["tick"]).dt.tz_localize("UTC").dt.tz_convert(timezone)
    days = (flows.assign(day=local.dt.date).groupby("day", as_index=False)[["entered", "left", "self_healed"]]
            .sum(min_count=1))
    days["self_heal_rate"] = (days["self_healed"] / days["left"].where(days["left"] > 0)).round(4)
    return days[list(columns)]
