"""Disqualification of dead, abandoned and unusable orders (SPEC §6). Nothing is dropped: every
candidate ends in exactly one of the two outputs, the disqualified ones with a code and a reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ecm_pipeline.domain.classification import UNCATEGORIZED
from ecm_pipeline.domain.tickets import first_ticket_at, open_tickets, order_ids
from ecm_pipeline.settings import QualificationSettings

ABANDONED_PAYMENT_STATES = ("CREATED", "INITIATED")
AUTO_CANCEL_CODES = ("abandoned_payment", "abandoned_retry", "uncategorized_unpaid")


@dataclass(frozen=True)
class Disqualification:
    code: str
    label: str  # the seeds' rule id, or "data" for input that cannot be triaged
    explanation: str


# Order matters: the specific codes come before the catch-alls, so every code can occur.
DISQUALIFICATIONS = (
    Disqualification("invalid_amount", "data", "send amount is missing, not a number or negative"),
    Disqualification("abandoned_payment", "D1", "payment never completed (CREATED/INITIATED/none) and no Falcon txn"),
    Disqualification("abandoned_retry", "D4", "awaiting a retry that was never paid"),
    Disqualification("uncategorized_unpaid", "D2", "uncategorized and no COMPLETED payment"),
    Disqualification("dead_order", "D3", "uncategorized and no Falcon, Lulu, payout or RFI record"),
    Disqualification("stale_uncategorized", "D5", "uncategorized and older than the stale limit"),
    Disqualification("unpaid", "DEC-004", "no COMPLETED payment"),
    Disqualification("dead_no_lulu", "DEC-004", "AED order with no Lulu record"),
)
CODES = tuple(d.code for d in DISQUALIFICATIONS)


def disqualification_masks(orders: pd.DataFrame, settings: QualificationSettings) -> list[np.ndarray]:
    amount = pd.to_numeric(orders["send_amount"], errors="coerce")
    paid = orders["has_completed_payment"].to_numpy(dtype=bool)
    has_falcon = orders["ftv_transaction_id"].notna().to_numpy()
    uncategorized = (orders["stuck_reason"] == UNCATEGORIZED).to_numpy(dtype=bool)
    no_downstream = ~(
        has_falcon
        | orders["has_lulu"].to_numpy(dtype=bool)
        | orders["has_payout"].to_numpy(dtype=bool)
        | orders["has_rfi"].to_numpy(dtype=bool)
    )
    payment_abandoned = (
        orders["payment_status"].isna() | orders["payment_status"].isin(ABANDONED_PAYMENT_STATES)
    ).to_numpy(dtype=bool)
    hours = orders["hours_stuck"].to_numpy(dtype=float)
    return [
        (amount.isna() | (amount < 0)).to_numpy(dtype=bool),
        payment_abandoned & ~has_falcon,
        (orders["sub_state"] == "AWAIT_RETRY_INTENT").to_numpy(dtype=bool) & ~paid,
        uncategorized & ~paid,
        uncategorized & no_downstream,
        uncategorized & (hours > settings.stale_uncategorized_hours),
        ~paid,
        (orders["currency"] == "AED").to_numpy(dtype=bool) & ~orders["has_lulu"].to_numpy(dtype=bool),
    ]


def _amount_problems(amounts: pd.Series) -> list[str]:
    values = pd.to_numeric(amounts, errors="coerce").to_numpy(dtype=float)
    return ["send amount is missing or not a number" if np.isnan(v) else f"send amount {v:,.2f} is negative"
            for v in values]


def qualify(classified: pd.DataFrame, settings: QualificationSettings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split classified candidates into (qualified, disqualified)."""
    masks = disqualification_masks(classified, settings)
    codes = np.select(masks, list(CODES), default="")
    explanations = dict(zip(CODES, (d.explanation for d in DISQUALIFICATIONS), strict=True))
    labels = dict(zip(CODES, (d.label for d in DISQUALIFICATIONS), strict=True))
    dropped = codes != ""
    disqualified = classified.loc[dropped]   # a new frame already (copy-on-write)
    disqualified["disqualification_code"] = codes[dropped]
    disqualified["disqualification_rule"] = disqualified["disqualification_code"].map(labels)
    disqualified["disqualification_reason"] = disqualified["disqualification_code"].map(explanations)
    bad_amount = disqualified["disqualification_code"] == "invalid_amount"
    disqualified.loc[bad_amount, "disqualification_reason"] = _amount_problems(
        disqualified.loc[bad_amount, "send_amount"])
    return classified.loc[~dropped], disqualified


def flag_already_assigned(qualified: pd.DataFrame, assignments: pd.DataFrame,
                          as_of: pd.Timestamp | pd.Series | None = None) -> pd.DataFrame:
    """`already_assigned`: the order has an OPEN, IN_PROGRESS or ESCALATED ticket — at the tick
    `as_of` (UTC; one for all rows, or each row's own, aligned with `qualified`) when given: only
    tickets assigned at or before it count (see `tickets_open_at`)."""
    out = qualified.copy()
    if as_of is None:
        out["already_assigned"] = out["order_id"].isin(set(order_ids(open_tickets(assignments))))
        return out
    # An order is held at a tick when one of its open tickets was assigned by then: its earliest
    # open ticket decides, for every tick at once.
    first = out["order_id"].map(first_ticket_at(open_tickets(assignments)))
    out["already_assigned"] = (first.notna() & (first <= as_of)).astype(bool)
    return out


def auto_cancel_warning(disqualified: pd.DataFrame, settings: QualificationSettings) -> str | None:
    count = int(disqualified["disqualification_code"].isin(AUTO_CANCEL_CODES).sum())
    if count > settings.auto_cancel_warning_count:
        return (
            f"{count} abandoned/unpaid orders (D1/D2/D4) are still open after 12 h "
            f"(limit {settings.auto_cancel_warning_count}): auto-cancel may be broken"
        )
    return None
