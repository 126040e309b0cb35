"""The `stuck_orders` snapshot: the SQL extract (sql/stuck_orders.sql) plus the derived columns
that are pure arithmetic on it (age, buckets, AED value), computed in pandas so that date math
cannot drift between Redshift, PostgreSQL and DuckDB."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import numpy as np
import pandas as pd

from ecm_pipeline.settings import SQL_DIR, Settings

HISTORY_TABLE = "orders_goms_history"
CONTRACT_TABLES = (
    "orders_goms", "payments_goms", "falcon_transactions_v2", "transaction_payout", "lulu_data", "transfer_rfi",
    "uae_manual_payments", "checkout_payment_data", "fulfillments_goms", "rda_fulfillments", HISTORY_TABLE,
)
SNAPSHOT_COLUMNS = (
    "order_id", "owner_id", "status", "sub_state", "currency", "send_amount", "receive_amount", "acquirer",
    "created_at", "updated_at", "payment_status", "has_completed_payment", "payment_attempts", "falcon_status",
    "ftv_transaction_id", "has_lulu", "lulu_status", "lulu_main_status", "lulu_client", "has_payout",
    "payout_status", "payout_partner", "partner_class", "has_rfi", "rfi_status", "rfi_type", "rfi_created_at",
    "rfi_modified_at", "manual_payment_status", "checkout_status", "has_trm", "trm_seconds", "rda_status",
    "hours_stuck", "time_bucket", "category", "amount_aed",
)
_ORDER_STATE_BLOCK = re.compile(r"-- order_state:begin.*?-- order_state:end", re.DOTALL)


class Warehouse(Protocol):
    def query(self, sql: str, params: dict | None = None) -> pd.DataFrame: ...
    def tables(self, names: list[str]) -> set[str]: ...


@dataclass(frozen=True)
class Snapshot:
    candidates: pd.DataFrame
    excluded: pd.DataFrame  # rows in the window left out for a reason that must be reported
    as_of: datetime
    mode: str  # history (exact), live (no history, taken at the tick: exact) or approximate

    @property
    def exact(self) -> bool:
        return self.mode != "approximate"


def snapshot_sql(with_history: bool) -> str:
    sql = (SQL_DIR / "stuck_orders.sql").read_text()
    if with_history:
        return sql
    current = (SQL_DIR / "order_state_current.sql").read_text()
    return _ORDER_STATE_BLOCK.sub(lambda _: current, sql)


def snapshot_params(as_of: datetime, settings: Settings) -> dict:
    cfg = settings.snapshot
    return {
        "as_of": as_of,
        "window_start": as_of - timedelta(days=cfg.window_days),
        "newest_created": as_of - timedelta(hours=cfg.min_age_hours),
        "currencies": list(cfg.currencies),
        "statuses": list(cfg.statuses),
        "actionable_sub_states": list(cfg.actionable_sub_states),
        "never_sub_states": list(cfg.never_sub_states),
    }


def time_bucket(hours: pd.Series) -> np.ndarray:
    h = hours.to_numpy(dtype=float)
    return np.select(
        [(h >= 12) & (h <= 24), (h > 24) & (h <= 48), h > 48],
        ["12_hr_bucket", "24_hr_bucket", "48_hr_bucket"],
        default="0_bucket",
    )


def category(hours: pd.Series) -> np.ndarray:
    h = hours.to_numpy(dtype=float)
    return np.select([h > 36, h > 24, h > 12], ["critical", "action_required", "warning"], default="level_zero")


def derive_columns(extract: pd.DataFrame, as_of: datetime, settings: Settings) -> pd.DataFrame:
    out = extract.copy()
    for column in ("created_at", "updated_at", "rfi_created_at", "rfi_modified_at"):
        out[column] = pd.to_datetime(out[column])
    for column in ("has_completed_payment", "has_lulu", "has_payout", "has_rfi", "has_trm"):
        out[column] = out[column].fillna(False).astype(bool)
    out["send_amount"] = pd.to_numeric(out["send_amount"], errors="coerce")
    out["receive_amount"] = pd.to_numeric(out["receive_amount"], errors="coerce")
    out["payment_attempts"] = out["payment_attempts"].fillna(0).astype("int64")
    out["hours_stuck"] = ((pd.Timestamp(as_of) - out["created_at"]).dt.total_seconds() / 3600).round(4)
    out["time_bucket"] = time_bucket(out["hours_stuck"])
    out["category"] = category(out["hours_stuck"])
    out["amount_aed"] = (out["send_amount"] * out["currency"].map(settings.fx_to_aed).astype(float)).round(2)
    return out


def take_snapshot(warehouse: Warehouse, as_of: datetime, settings: Settings, *, live: bool) -> Snapshot:
    """Extract the stuck candidates as of `as_of` (naive UTC) in one set-based query."""
    has_history = HISTORY_TABLE in warehouse.tables([HISTORY_TABLE])
    rows = warehouse.query(snapshot_sql(has_history), snapshot_params(as_of, settings))
    scope = rows.pop("scope")
    candidates = derive_columns(rows.loc[scope == "candidate"].reset_index(drop=True), as_of, settings)
    excluded = rows.loc[scope != "candidate", ["order_id", "currency", "status", "sub_state", "created_at"]].copy()
    excluded.insert(1, "exclusion", scope[scope != "candidate"].to_numpy())
    mode = "history" if has_history else ("live" if live else "approximate")
    return Snapshot(candidates, excluded.reset_index(drop=True), as_of, mode)
