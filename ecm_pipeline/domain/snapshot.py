"""The snapshot contract (SPEC §4): the columns of `stuck_orders`, and the columns derived from the
SQL extract by exact arithmetic (age, buckets, category, AED value, partner class), computed here
so that date math cannot drift between Redshift, PostgreSQL and DuckDB."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ecm_pipeline.settings import Settings

# The columns `stuck_orders` holds, in order: the gates, the column schema in the UI and the
# field commands all read this list.
SNAPSHOT_COLUMNS = (
    "order_id", "owner_id", "status", "sub_state", "currency", "send_amount", "receive_amount", "acquirer",
    "created_at", "updated_at", "payment_status", "has_completed_payment", "payment_attempts", "falcon_status",
    "ftv_transaction_id", "has_lulu", "lulu_status", "lulu_main_status", "lulu_client", "has_payout",
    "payout_status", "payout_partner", "partner_class", "has_rfi", "rfi_status", "rfi_type", "rfi_created_at",
    "rfi_modified_at", "manual_payment_status", "checkout_status", "has_trm", "trm_seconds", "rda_status",
    "hours_stuck", "time_bucket", "category", "amount_aed", "approximate_fields",
)
TIMESTAMP_COLUMNS = ("created_at", "updated_at", "rfi_created_at", "rfi_modified_at")
FLAG_COLUMNS = ("has_completed_payment", "has_lulu", "has_payout", "has_rfi", "has_trm")
EXCLUDED_COLUMNS = ("order_id", "exclusion", "currency", "status", "sub_state", "created_at")

# Which snapshot fields each source decides: a source known only approximately at the tick makes
# these fields approximate for the order (the SQL's approx_* flags).
SOURCE_FIELDS: dict[str, tuple[str, ...]] = {
    "approx_order_state": ("status", "sub_state"),
    "approx_payment": ("payment_status", "has_completed_payment", "payment_attempts"),
    "approx_falcon": ("falcon_status",),
    "approx_payout": ("payout_status", "payout_partner"),
    "approx_lulu": ("lulu_status", "lulu_main_status", "lulu_client"),
    "approx_rfi": ("rfi_status", "rfi_type", "rfi_modified_at"),
    "approx_trm": ("trm_seconds",),
    "approx_manual_payment": ("manual_payment_status",),
    "approx_checkout": ("checkout_status",),
    "approx_rda": ("rda_status",),
}


def time_bucket(hours: pd.Series) -> np.ndarray:
    h = hours.to_numpy(dtype=float)
    return np.select(
        [(h >= 12) & (h <= 24), (h > 24) & (h <= 48), h > 48],
        ["12_hr_bucket", "24_hr_bucket", "48_hr_bucket"],
        default="0_bucket",
    )


def category(hours: pd.Series, settings: Settings) -> np.ndarray:
    h = hours.to_numpy(dtype=float)
    limits = settings.categories
    return np.select([h > limits.critical, h > limits.action_required, h > limits.warning],
                     ["critical", "action_required", "warning"], default="level_zero")


def partner_class(frame: pd.DataFrame, settings: Settings) -> np.ndarray:
    """Facts §2.4, first match wins: high-value bulk, always bulk, RDA, any other VDA API partner."""
    partner = frame["payout_partner"]
    receive = pd.to_numeric(frame["receive_amount"], errors="coerce").to_numpy(dtype=float)
    catalogue = settings.partners
    return np.select(
        [(receive > catalogue.bulk_if_receive_above) & partner.isin(catalogue.bulk_above_threshold).to_numpy(bool),
         partner.isin(catalogue.bulk).to_numpy(bool),
         partner.isin(catalogue.rda).to_numpy(bool),
         partner.notna().to_numpy(bool)],
        ["bulk_vda_partner", "bulk_vda_partner", "rda_partner", "vda_api_partner"],
        default=None,
    ).astype(object)


def approximate_fields(flags: pd.DataFrame) -> pd.Series:
    """Per order, the comma-separated fields known only approximately at the tick ('' when exact)."""
    out = pd.Series("", index=flags.index, dtype="str")
    for flag, fields in SOURCE_FIELDS.items():
        if flag in flags:
            hit = pd.to_numeric(flags[flag], errors="coerce").fillna(0).to_numpy() == 1
            out = out.where(~hit, out + "," + ",".join(fields))
    return out.str.lstrip(",")


def derive_columns(extract: pd.DataFrame, as_of: pd.Series | pd.Timestamp, settings: Settings) -> pd.DataFrame:
    """The snapshot contract from the SQL extract: typed, derived, in `SNAPSHOT_COLUMNS` order.
    `as_of` is the tick (naive UTC) of every row, or one tick for all. An empty extract keeps the
    contract's columns and dtypes, so a quiet tick passes the schema gates."""
    out = extract.copy()
    for column in TIMESTAMP_COLUMNS:
        out[column] = pd.to_datetime(out[column]).astype("datetime64[us]") if column in out else pd.NaT
    for column in FLAG_COLUMNS:
        out[column] = out[column].fillna(False).astype(bool)
    for column in ("send_amount", "receive_amount", "trm_seconds"):
        out[column] = pd.to_numeric(out[column], errors="coerce").astype(float)
    out["payment_attempts"] = pd.to_numeric(out["payment_attempts"], errors="coerce").fillna(0).astype("int64")
    tick = pd.to_datetime(as_of) if isinstance(as_of, pd.Series) else pd.Timestamp(as_of)
    out["hours_stuck"] = ((tick - out["created_at"]).dt.total_seconds() / 3600).round(4).astype(float)
    out["time_bucket"] = time_bucket(out["hours_stuck"])
    out["category"] = category(out["hours_stuck"], settings)
    rates = out["currency"].map(settings.fx_to_aed).astype(float)
    out["amount_aed"] = (out["send_amount"] * rates).round(2).astype(float)
    out["partner_class"] = partner_class(out, settings)
    out["approximate_fields"] = approximate_fields(out)
    return out[list(SNAPSHOT_COLUMNS)].reset_index(drop=True)
