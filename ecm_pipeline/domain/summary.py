"""Figures that describe a frame of orders, for asset metadata and the briefing."""

from __future__ import annotations

import pandas as pd

PREVIEW_COLUMNS = ["order_id", "currency", "send_amount", "amount_aed", "hours_stuck", "stuck_reason"]


def counts(frame: pd.DataFrame, column: str) -> dict[str, int]:
    return {str(k): int(v) for k, v in frame[column].value_counts().items()} if len(frame) else {}


def currency_mix(frame: pd.DataFrame) -> dict[str, dict[str, float]]:
    total = len(frame)
    return {cur: {"orders": n, "share": round(n / total, 4)} for cur, n in counts(frame, "currency").items()}


def value_at_risk(frame: pd.DataFrame) -> dict[str, float]:
    """Send amount per currency, plus the total in AED at the configured rates."""
    if not len(frame):
        return {"AED_equivalent": 0.0}
    per_currency = frame.groupby("currency")["send_amount"].sum().round(2)
    out = {str(k): float(v) for k, v in per_currency.items()}
    out["AED_equivalent"] = round(float(frame["amount_aed"].sum()), 2)
    return out


def preview(frame: pd.DataFrame, columns: list[str] | None = None, rows: int = 10) -> str:
    columns = [c for c in (columns or PREVIEW_COLUMNS) if c in frame.columns]
    if not len(frame):
        return "_no rows_"
    return frame[columns].head(rows).to_markdown(index=False, floatfmt=".2f")
