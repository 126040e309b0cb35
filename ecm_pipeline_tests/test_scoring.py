"""Scoring: every factor table, the weights, rounding and the priority boundaries."""

from __future__ import annotations

import pandas as pd
import pytest

from ecm_pipeline.domain.classification import attach_catalogue, classify
from ecm_pipeline.domain.scoring import (
    age_factor,
    amount_factor,
    attempts_factor,
    payment_factor,
    priority_band,
    rfi_factor,
    score,
)
from ecm_pipeline.settings import load_settings
from ecm_pipeline_tests.conftest import snapshot_rows

AS_OF = pd.Timestamp("2026-11-21 10:00:00")


@pytest.mark.parametrize(("hours", "value"), [(2, 0.1), (3.99, 0.1), (4, 0.3), (12, 0.3), (12.01, 0.5),
                                              (24, 0.5), (24.5, 0.7), (36, 0.7), (36.1, 0.9), (72, 0.9),
                                              (72.1, 1.0)])
def test_age_factor(hours: float, value: float) -> None:
    assert age_factor(pd.Series([hours]))[0] == value


@pytest.mark.parametrize(("aed", "value"), [(99.99, 0.1), (100, 0.3), (499, 0.3), (500, 0.5), (1999, 0.5),
                                            (2000, 0.7), (4999, 0.7), (5000, 0.8), (15000, 0.8),
                                            (15000.01, 1.0)])
def test_amount_factor(aed: float, value: float) -> None:
    assert amount_factor(pd.Series([aed]))[0] == value


@pytest.mark.parametrize(
    ("status", "created_h", "modified_h", "value"),
    [("REQUESTED", 10, 10, 0.1), ("REQUESTED", 30, 1, 0.7), ("RE_OPEN", 23, 23, 0.1),
     ("REJECTED", 40, 10, 0.5), ("REJECTED", 40, 30, 0.8),
     ("SUBMITTED", 40, 5, 0.4), ("SENT_TO_PROVIDER", 40, 3, 0.1),
     ("EXPIRED", 1, 1, 0.9), ("VERIFIED", 1, 1, 0.0), ("FAILED", 1, 1, 0.0), (None, None, None, 0.0)],
)
def test_rfi_factor(status, created_h, modified_h, value) -> None:
    def ago(h):
        return AS_OF - pd.Timedelta(hours=h) if h is not None else pd.NaT

    frame = pd.DataFrame({"rfi_status": [status], "rfi_created_at": [ago(created_h)],
                          "rfi_modified_at": [ago(modified_h)]})
    assert rfi_factor(frame, AS_OF)[0] == value


@pytest.mark.parametrize(("status", "value"), [("COMPLETED", 0.0), ("RECONCILED", 0.0), ("PENDING", 0.3),
                                               ("FAILED", 0.9), (None, 0.5), ("INITIATED", 0.5)])
def test_payment_factor(status, value) -> None:
    assert payment_factor(pd.Series([status], dtype="object"))[0] == value


@pytest.mark.parametrize(("attempts", "value"), [(0, 0.0), (1, 0.1), (2, 0.5), (3, 0.9), (7, 0.9)])
def test_attempts_factor(attempts: int, value: float) -> None:
    assert attempts_factor(pd.Series([attempts]))[0] == value


@pytest.mark.parametrize(("value", "band"), [(0.7001, "P1"), (0.7, "P2"), (0.5, "P2"), (0.4999, "P3"),
                                             (0.3, "P3"), (0.2999, "P4"), (0.0, "P4")])
def test_priority_boundaries(value: float, band: str) -> None:
    assert priority_band([value])[0] == band


def test_score_combines_weighted_factors_and_keeps_them() -> None:
    # refund_pending (severity 1.0), 80 h, 20,000 AED, RFI EXPIRED, payment FAILED, 3 attempts:
    frame = attach_catalogue(classify(snapshot_rows({
        "lulu_status": "CANCELLATION_COMPLETED", "hours_stuck": 80, "amount_aed": 20000, "send_amount": 20000,
        "rfi_status": "EXPIRED", "payment_status": "FAILED", "payment_attempts": 3,
    })))
    scored = score(frame, AS_OF, load_settings().scoring).iloc[0]
    assert scored["stuck_reason"] == "refund_pending"  # an EXPIRED RFI is closed: no KYC routing
    factors = {f: scored[f"factor_{f}"] for f in ("age", "amount", "severity", "rfi", "payment", "attempts")}
    assert factors == {"age": 1.0, "amount": 1.0, "severity": 1.0, "rfi": 0.9, "payment": 0.9, "attempts": 0.9}
    assert scored["score"] == round(0.25 + 0.20 + 0.25 + 0.15 * 0.9 + 0.10 * 0.9 + 0.05 * 0.9, 4)
    assert scored["priority"] == "P1"


def test_severity_multiplier_is_capped_at_one() -> None:
    frame = attach_catalogue(classify(snapshot_rows({"lulu_status": "TXN_TRANSMITTED"})))
    settings = load_settings().scoring.model_copy(update={"severity_multipliers": {"stuck_at_lulu": 3.0}})
    assert score(frame, AS_OF, settings)["factor_severity"].iloc[0] == 1.0
    halved = load_settings().scoring.model_copy(update={"severity_multipliers": {"stuck_at_lulu": 0.5}})
    assert score(frame, AS_OF, halved)["factor_severity"].iloc[0] == 0.3


def test_score_is_rounded_before_banding() -> None:
    # 0.25*0.9 + 0.20*0.8 + 0.25*0.6 + 0.15*0 + 0.10*0 + 0.05*0.1 = 0.54 -> P2
    frame = attach_catalogue(classify(snapshot_rows({"lulu_status": "TXN_TRANSMITTED", "hours_stuck": 50,
                                                     "amount_aed": 6000})))
    scored = score(frame, AS_OF, load_settings().scoring).iloc[0]
    assert scored["score"] == 0.54 and scored["priority"] == "P2"
