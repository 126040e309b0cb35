"""Urgency score and priority band (SPEC §7). Each row keeps its six factors so a score can be
explained."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ecm_pipeline.settings import ScoringSettings

FACTORS = ("age", "amount", "severity", "rfi", "payment", "attempts")


def age_factor(hours: pd.Series) -> np.ndarray:
    h = hours.to_numpy(dtype=float)
    return np.select([h > 72, h > 36, h > 24, h > 12, h >= 4], [1.0, 0.9, 0.7, 0.5, 0.3], default=0.1)


def amount_factor(amount_aed: pd.Series) -> np.ndarray:
    a = amount_aed.to_numpy(dtype=float)
    return np.select(
        [a > 15_000, a >= 5_000, a >= 2_000, a >= 500, a >= 100], [1.0, 0.8, 0.7, 0.5, 0.3], default=0.1
    )


def severity_factor(frame: pd.DataFrame, multipliers: dict[str, float]) -> np.ndarray:
    reasons = frame["stuck_reason"]
    # The multiplier of each distinct reason, looked up once (1.0 without an entry).
    codes, uniques = pd.factorize(reasons)
    if (codes >= 0).all():
        multiplier = pd.Series(uniques).map(multipliers).fillna(1.0).to_numpy(dtype=float)[codes]
    else:  # a missing reason: as the whole column maps it
        multiplier = reasons.map(multipliers).fillna(1.0).to_numpy(dtype=float)
    return np.minimum(frame["severity"].to_numpy(dtype=float) * multiplier, 1.0)


def _hours_before(as_of: pd.Timestamp, stamps: pd.Series) -> np.ndarray:
    return ((as_of - pd.to_datetime(stamps)).dt.total_seconds() / 3600).to_numpy(dtype=float)


def rfi_factor(frame: pd.DataFrame, as_of: pd.Timestamp) -> np.ndarray:
    status = frame["rfi_status"]
    created_age = _hours_before(as_of, frame["rfi_created_at"])
    modified_age = _hours_before(as_of, frame["rfi_modified_at"])
    # A missing timestamp compares False, so it falls to the "older" value.
    return np.select(
        [
            status.isin(["REQUESTED", "RE_OPEN"]).to_numpy(dtype=bool),
            (status == "REJECTED").to_numpy(dtype=bool),
            status.isin(["SUBMITTED", "SENT_TO_PROVIDER"]).to_numpy(dtype=bool),
            (status == "EXPIRED").to_numpy(dtype=bool),
        ],
        [
            np.where(created_age < 24, 0.1, 0.7),
            np.where(modified_age < 24, 0.5, 0.8),
            np.where(modified_age > 4, 0.4, 0.1),
            0.9,
        ],
        default=0.0,
    )


def payment_factor(payment_status: pd.Series) -> np.ndarray:
    return np.select(
        [
            payment_status.isin(["COMPLETED", "RECONCILED"]).to_numpy(dtype=bool),
            (payment_status == "PENDING").to_numpy(dtype=bool),
            (payment_status == "FAILED").to_numpy(dtype=bool),
        ],
        [0.0, 0.3, 0.9],
        default=0.5,
    )


def attempts_factor(attempts: pd.Series) -> np.ndarray:
    n = attempts.fillna(0).to_numpy(dtype=float)
    return np.select([n >= 3, n == 2, n == 1], [0.9, 0.5, 0.1], default=0.0)


PRIORITIES = ("P1", "P2", "P3", "P4")


def _band(s: np.ndarray) -> np.ndarray:
    """The position in PRIORITIES of each score (the bands of `priority_band`)."""
    return np.select([s > 0.7, s >= 0.5, s >= 0.3], [0, 1, 2], default=3)


def priority_band(score: pd.Series | np.ndarray) -> np.ndarray:
    return np.asarray(PRIORITIES)[_band(np.asarray(score, dtype=float))]


def score(qualified: pd.DataFrame, as_of: pd.Timestamp, settings: ScoringSettings) -> pd.DataFrame:
    """Add `factor_*`, `score` (4 decimals) and `priority` to the qualified orders."""
    factors = {
        "age": age_factor(qualified["hours_stuck"]),
        "amount": amount_factor(qualified["amount_aed"]),
        "severity": severity_factor(qualified, settings.severity_multipliers),
        "rfi": rfi_factor(qualified, as_of),
        "payment": payment_factor(qualified["payment_status"]),
        "attempts": attempts_factor(qualified["payment_attempts"]),
    }
    total = np.zeros(len(qualified))
    for name in FACTORS:
        total = total + settings.weights[name] * factors[name]
    rounded = np.round(total, 4)
    # One shallow copy with the new columns (pandas copies on write), not a copy of the whole frame.
    priorities = pd.Series(np.array(PRIORITIES, dtype=object)).array
    return qualified.assign(**{f"factor_{name}": factors[name] for name in FACTORS}, score=rounded,
                            priority=priorities.take(_band(rounded)))
