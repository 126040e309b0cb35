"""Materialization metadata, in the forms the Dagster UI uses: numbers it can plot per partition
(the asset's Plots tab draws int/float values over time), Dagster's standard keys
(`dagster/partition_row_count`, `dagster/row_count` for a whole table only, `dagster/column_schema`,
`dagster/uri`) and JSON or markdown breakdowns beside them."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from ecm_pipeline.domain import summary
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


def backlog_numbers(frame: pd.DataFrame, settings: Settings) -> dict:
    """What a data engineer follows per tick, as plottable numbers: backlog size, value at risk in AED,
    orders per currency and per severity, hours stuck."""
    hours = frame["hours_stuck"] if len(frame) else pd.Series(dtype=float)
    numbers: dict = {
        "backlog_count": len(frame),
        "value_at_risk_aed": float(round(frame["amount_aed"].sum(), 2)) if len(frame) else 0.0,
        "median_hours_stuck": float(round(hours.median(), 2)) if len(hours) else 0.0,
        "max_hours_stuck": float(round(hours.max(), 2)) if len(hours) else 0.0,
    }
    currencies = summary.counts(frame, "currency")
    for currency in settings.snapshot.currencies:
        numbers[f"orders_{currency.lower()}"] = currencies.get(currency, 0)
    categories = summary.counts(frame, "category")
    for name in ("critical", "action_required", "warning"):
        numbers[f"orders_{name}"] = categories.get(name, 0)
    numbers["currency_mix"] = dg.MetadataValue.json(summary.currency_mix(frame))
    numbers["value_at_risk"] = dg.MetadataValue.json(summary.value_at_risk(frame))
    return numbers
