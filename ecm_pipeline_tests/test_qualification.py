"""Disqualification: every code, the order they are tried in, and that nothing is dropped."""

from __future__ import annotations

import pandas as pd
import pytest

from ecm_pipeline.domain.classification import attach_catalogue, classify
from ecm_pipeline.domain.qualification import CODES, auto_cancel_warning, flag_already_assigned, qualify
from ecm_pipeline.settings import QualificationSettings
from ecm_pipeline_tests.conftest import snapshot_rows

SETTINGS = QualificationSettings()
UNPAID = {"payment_status": "FAILED", "has_completed_payment": False}
LIVE_AED = {"lulu_status": "TXN_TRANSMITTED"}  # a qualified AED order: stuck_at_lulu, paid, Lulu present

CASES = {
    "invalid_amount": {**LIVE_AED, "send_amount": None},
    "abandoned_payment": {"payment_status": "INITIATED", "has_completed_payment": False},
    "abandoned_retry": {**UNPAID, "ftv_transaction_id": "FT1", "sub_state": "AWAIT_RETRY_INTENT"},
    "uncategorized_unpaid": {**UNPAID},
    "dead_order": {"currency": "GBP"},
    "stale_uncategorized": {"currency": "GBP", "rfi_status": "VERIFIED", "hours_stuck": 800},
    "unpaid": {**UNPAID, **LIVE_AED},
    "dead_no_lulu": {"rfi_status": "REQUESTED"},
}


def run(*rows: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    return qualify(attach_catalogue(classify(snapshot_rows(*rows))), SETTINGS)


def test_cases_cover_every_code() -> None:
    assert set(CASES) == set(CODES)


@pytest.mark.parametrize("code", list(CASES))
def test_disqualification_code(code: str) -> None:
    qualified, disqualified = run(CASES[code])
    assert qualified.empty
    assert disqualified["disqualification_code"].tolist() == [code]
    assert disqualified["disqualification_reason"].str.len().iloc[0] > 5


def test_abandoned_payment_also_covers_no_payment_at_all() -> None:
    _, disqualified = run({"payment_status": None, "has_completed_payment": False, "payment_attempts": 0})
    assert disqualified["disqualification_code"].tolist() == ["abandoned_payment"]


def test_specific_codes_come_before_catch_alls() -> None:
    # unpaid AND without Lulu: D1 wins over unpaid and dead_no_lulu
    _, disqualified = run({"payment_status": "CREATED", "has_completed_payment": False, "rfi_status": "REQUESTED"})
    assert disqualified["disqualification_code"].tolist() == ["abandoned_payment"]


@pytest.mark.parametrize(("amount", "message"), [(None, "send amount is missing or not a number"),
                                                 (-50.0, "send amount -50.00 is negative")])
def test_bad_amount_is_quarantined_with_a_specific_reason(amount: float | None, message: str) -> None:
    _, disqualified = run({**LIVE_AED, "send_amount": amount})
    assert disqualified["disqualification_reason"].tolist() == [message]


def test_live_orders_qualify_and_nothing_is_dropped() -> None:
    rows = [LIVE_AED, {"currency": "GBP", "sub_state": "PENDING"}, *CASES.values()]
    qualified, disqualified = run(*rows)
    assert qualified["stuck_reason"].tolist() == ["stuck_at_lulu", "stuck_due_to_payment_issue_goms"]
    ids = sorted(qualified["order_id"].tolist() + disqualified["order_id"].tolist())
    assert ids == sorted(snapshot_rows(*rows)["order_id"])


def test_already_assigned_flag_uses_open_states_only() -> None:
    qualified, _ = run(LIVE_AED, LIVE_AED, LIVE_AED, LIVE_AED)
    ids = qualified["order_id"].tolist()
    tab = pd.DataFrame({"Order ID": [ids[0], f" {ids[1]} ", ids[2], ids[3]],
                        "Status": ["OPEN", "in_progress", "ESCALATED", "RESOLVED"]})
    flagged = flag_already_assigned(qualified, tab)
    assert flagged["already_assigned"].tolist() == [True, True, True, False]


def test_auto_cancel_warning_above_twenty() -> None:
    _, twenty = run(*[CASES["abandoned_payment"]] * 20)
    _, twenty_one = run(*[CASES["abandoned_payment"]] * 21)
    assert auto_cancel_warning(twenty, SETTINGS) is None
    assert "auto-cancel may be broken" in auto_cancel_warning(twenty_one, SETTINGS)
