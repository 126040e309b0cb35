"""Materialization metadata, in the forms the Dagster UI uses: numbers it can plot per partition
(the asset's Plots tab draws int/float values over time), Dagster's standard keys
(`dagster/partition_row_count`, `dagster/row_count` for a whole table only, `dagster/column_schema`,
`dagster/uri`) and JSON or markdown breakdowns beside them."""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg
import pandas as pd

from ecm_pipeline.domain.gate_frames import stacked
from ecm_pipeline.settings import Settings

_TYPES = {"b": "bool", "i": "int", "u": "int", "f": "float", "M": "timestamp"}


def column_schema(frame: pd.DataFrame, descriptions: dict[str, str] | None = None) -> dg.TableSchema:
    """`dagster/column_schema` from a frame's columns and dtypes (its contract)."""
    return dg.TableSchema(columns=[
        dg.TableColumn(name=str(c), type=_TYPES.get(frame[c].dtype.kind, "string"),
                       description=(descriptions or {}).get(str(c)))
        for c in frame.columns])


def md_list(items: list[str], limit: int = 20) -> dg.MetadataValue:
    shown = [f"- {item}" for item in items[:limit]]
    if len(items) > limit:
        shown.append(f"- … and {len(items) - limit} more")
    return dg.MetadataValue.md("\n".join(shown) or "_none_")


def partition_metadata(frame: pd.DataFrame, uri: str) -> dict:
    return {"dagster/partition_row_count": len(frame), "dagster/uri": dg.MetadataValue.url(uri)}


def counts_per_partition(frames: Mapping[str, pd.DataFrame], column: str, blank: str | None = None,
                         ) -> dict[str, dict[str, int]]:
    """`summary.counts` of one column for every partition, with one group-by for all of them."""
    rows = stacked(frames, [column])
    if blank is not None:
        rows[column] = rows[column].fillna(blank)
    sizes = rows.groupby(["partition_key", column], observed=True).size()
    out: dict[str, dict[str, int]] = {k: {} for k in frames}
    for (key, value), n in sizes.sort_values(ascending=False, kind="stable").items():
        out[key][str(value)] = int(n)
    return out


def backlog_numbers(frames: Mapping[str, pd.DataFrame], settings: Settings) -> dict[str, dict]:
    """What a data engineer follows per tick, as plottable numbers: backlog size, value at risk in AED,
    orders per currency and per severity, hours stuck. Computed for every partition at once."""
    rows = stacked(frames, ["currency", "category", "send_amount", "amount_aed", "hours_stuck"])
    grouped = rows.groupby("partition_key")
    value = grouped["amount_aed"].sum().round(2)
    median, longest = grouped["hours_stuck"].median().round(2), grouped["hours_stuck"].max().round(2)
    currencies = counts_per_partition(frames, "currency")
    categories = counts_per_partition(frames, "category")
    at_risk: dict[str, dict[str, float]] = {}
    for (key, currency), amount in rows.groupby(["partition_key", "currency"])["send_amount"].sum().round(2).items():
        at_risk.setdefault(key, {})[str(currency)] = float(amount)
    out = {}
    for key, frame in frames.items():
        total = len(frame)
        numbers: dict = {
            "backlog_count": total,
            "value_at_risk_aed": float(value.get(key, 0.0)),
            "median_hours_stuck": float(median.get(key, 0.0)),
            "max_hours_stuck": float(longest.get(key, 0.0)),
        }
        mine = currencies[key]
        for currency in settings.snapshot.currencies:
            numbers[f"orders_{currency.lower()}"] = mine.get(currency, 0)
        for name in ("critical", "action_required", "warning"):
            numbers[f"orders_{name}"] = categories[key].get(name, 0)
        numbers["currency_mix"] = dg.MetadataValue.json(
            {cur: {"orders": n, "share": round(n / total, 4)} for cur, n in mine.items()})
        numbers["value_at_risk"] = dg.MetadataValue.json(
            {**at_risk.get(key, {}), "AED_equivalent": numbers["value_at_risk_aed"]})
        out[key] = numbers
    return out
