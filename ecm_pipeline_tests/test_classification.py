"""Classification: one table-driven case per rule id, each SPEC §5 fix, and the catalogue."""

from __future__ import annotations

import pandas as pd
import pytest

from ecm_pipeline.domain.classification import attach_catalogue, classify, load_rules
from ecm_pipeline.settings import load_catalogue
from ecm_pipeline_tests.conftest import snapshot_rows

FTV = {"ftv_transaction_id": "FT1", "falcon_status": "PROCESSING"}
RDA = {**FTV, "payout_partner": "VANCE_RDA", "partner_class": "rda_partner"}
GBP = {"currency": "GBP", "acquirer": "TRUELAYER"}
OPEN_RFI = {"rfi_status": "REQUESTED"}

# rule id -> (snapshot fields, expected stuck_reason). Each row matches its rule and no earlier one.
CASES: dict[str, tuple[dict, str]] = {
    "R1": ({"lulu_client": "LULU", "lulu_status": "CREDITED"}, "status_sync_issue"),
    "R2": ({**GBP, "status": "COMPLETED", "falcon_status": "FAILED", "ftv_transaction_id": "FT1"},
           "falcon_failed_order_completed_issue"),
    "R3": ({"acquirer": "LEANTECH", "lulu_status": "PAYMENT_PENDING"}, "stuck_at_lean_recon"),
    "R4": ({"acquirer": "CHECKOUT", "lulu_status": "PAYMENT_PENDING"}, "brn_issue"),
    "R5": ({"acquirer": "UAE_MANUAL", "manual_payment_status": "RECONCILED", "lulu_status": "PAYMENT_PENDING"},
           "brn_issue"),
    "R6": ({"acquirer": "UAE_MANUAL", "manual_payment_status": "RECONCILED"}, "brn_issue"),
    "R7": ({"acquirer": "LEANTECH", "manual_payment_status": "RECONCILED", "lulu_status": "CREATED"}, "brn_issue"),
    "R8": ({**OPEN_RFI, "hours_stuck": 18}, "rfi_order_within_24_hr"),
    "R9": ({**FTV, **OPEN_RFI, "rda_status": "ONHOLD", "hours_stuck": 18},
           "stuck_at_rda_partner_rfi_within_24_hrs"),
    "R10": ({**FTV, **OPEN_RFI, "rda_status": "ONHOLD", "hours_stuck": 30},
            "stuck_at_rda_partner_rfi_grtr_than_24_hrs"),
    "R11": ({**OPEN_RFI, "hours_stuck": 30}, "rfi_order_grtr_than_24_hr"),
    "R11a": ({"lulu_status": "CANCELLATION_REQUEST_CREATED"}, "cancellation_pending"),
    "R11b": ({"lulu_status": "CANCELLATION_COMPLETED"}, "refund_pending"),
    "R12": ({"lulu_status": "TXN_TRANSMITTED"}, "stuck_at_lulu"),
    "R13": ({"status": "FAILED", "lulu_status": "CREATED"}, "refund_pending"),
    "R14": ({**RDA, "acquirer": "CHECKOUT", "lulu_status": "CANCELLATION_COMPLETED", "checkout_status": "CAPTURED"},
            "refund_pending"),
    "R15_16": ({**FTV, "payout_status": "PROCESSING", "payout_partner": "TANGOPE_V3",
                "partner_class": "bulk_vda_partner", "hours_stuck": 30}, "bulk_vda_order_grtr_than_16_hrs"),
    "R17": ({**FTV, "payout_status": "PROCESSING", "payout_partner": "YBL_API", "partner_class": "vda_api_partner"},
            "stuck_at_vda_partner"),
    "R18": ({**RDA, **OPEN_RFI, "payout_status": "ADDITIONAL_DOCUMENTS_REQUIRED", "hours_stuck": 30},
            "stuck_at_rda_partner_rfi_grtr_than_24_hrs"),
    "R19": ({**RDA, **OPEN_RFI, "payout_status": "ADDITIONAL_DOCUMENTS_REQUIRED", "hours_stuck": 18},
            "stuck_at_rda_partner_rfi_within_24_hrs"),
    "R20": ({**RDA, "payout_status": "ADDITIONAL_DOCUMENTS_REQUIRED"}, "no_rfi_created"),
    "R21": ({**RDA, "acquirer": "CHECKOUT", "lulu_status": "TXN_TRANSMITTED", "checkout_status": "CAPTURED",
             "payout_status": "PENDING"}, "stuck_at_rda_partner"),
    "R22": ({**RDA, "acquirer": "LEANTECH", "lulu_status": "TXN_TRANSMITTED", "payout_status": "FAILED"},
            "cancellation_pending"),
    "R23": ({**RDA, "payout_status": "PROCESSING"}, "stuck_at_rda_partner"),
    "R24": ({**RDA, **OPEN_RFI, "payout_status": "PROCESSING", "hours_stuck": 18},
            "stuck_at_rda_partner_rfi_within_24_hrs"),
    "R25": ({**RDA, **OPEN_RFI, "payout_status": "PROCESSING", "hours_stuck": 30},
            "stuck_at_rda_partner_rfi_grtr_than_24_hrs"),
    "R26": ({**RDA, "payout_status": "COMPLETED", "lulu_status": "CREDITED", "status": "PENDING"},
            "status_sync_issue"),
    "R27": ({**FTV, "lulu_status": "CANCELLATION_REQUEST_CREATED"}, "cancellation_pending"),
    "R28": ({**FTV, "lulu_status": "CANCELLATION_COMPLETED"}, "refund_pending"),
    "R29": ({**FTV, "falcon_status": "FAILED", "lulu_status": "TXN_TRANSMITTED"}, "cancellation_pending"),
    "G1": ({**GBP, **FTV, "rda_status": "ONHOLD"}, "no_rfi_created"),
    "G2": ({**GBP, **FTV, **OPEN_RFI, "rda_status": "ONHOLD", "hours_stuck": 18},
           "stuck_at_rda_partner_rfi_within_24_hrs"),
    "G3": ({**GBP, **FTV, **OPEN_RFI, "rda_status": "ONHOLD", "hours_stuck": 30},
           "stuck_at_rda_partner_rfi_grtr_than_24_hrs"),
    "G4": ({**GBP, "sub_state": "AWAIT_RETRY_INTENT"}, "stuck_due_to_payment_issue_goms"),
    "G5": ({**GBP, "status": "PENDING", "sub_state": "PENDING"}, "stuck_due_to_payment_issue_goms"),
    "G6": ({**GBP, "has_trm": True}, "stuck_due_trm"),
    "G7": ({**GBP, **OPEN_RFI, "has_trm": True, "hours_stuck": 30}, "stuck_due_trm_rfi_grtr_than_24_hrs"),
    "G8": ({**GBP, **OPEN_RFI, "has_trm": True, "hours_stuck": 18}, "stuck_due_trm_rfi_within_24_hrs"),
    "G9_10": ({**GBP, **FTV, "payout_status": "PROCESSING", "payout_partner": "VELTOPAYZ_HVT_BULK",
               "partner_class": "bulk_vda_partner", "hours_stuck": 40}, "bulk_vda_order_grtr_than_16_hrs"),
    "G11": ({**GBP, **FTV, "payout_status": "PENDING", "payout_partner": "HDFC_API",
             "partner_class": "vda_api_partner"}, "stuck_at_vda_partner"),
    "G12": ({**GBP, **RDA, **OPEN_RFI, "payout_status": "ADDITIONAL_DOCUMENTS_REQUIRED", "hours_stuck": 30},
            "stuck_at_rda_partner_rfi_grtr_than_24_hrs"),
    "G13": ({**GBP, **RDA, **OPEN_RFI, "payout_status": "ADDITIONAL_DOCUMENTS_REQUIRED", "hours_stuck": 18},
            "stuck_at_rda_partner_rfi_within_24_hrs"),
    "G14": ({**GBP, **RDA, "payout_status": "ADDITIONAL_DOCUMENTS_REQUIRED"}, "no_rfi_created"),
    "G15": ({**GBP, **RDA, "payout_status": "PROCESSING", "rda_status": "PROCESSED"}, "stuck_at_rda_partner"),
    "G16": ({**GBP, **RDA, **OPEN_RFI, "payout_status": "PROCESSING", "hours_stuck": 18},
            "stuck_at_rda_partner_rfi_within_24_hrs"),
    "G17": ({**GBP, **RDA, **OPEN_RFI, "payout_status": "PROCESSING", "hours_stuck": 30},
            "stuck_at_rda_partner_rfi_grtr_than_24_hrs"),
    "G18": ({**GBP, "status": "FAILED", "sub_state": "FAILED"}, "refund_pending"),
    "G19": ({**GBP, **FTV, "payout_status": "COMPLETED", "payout_partner": "VANCE_RDA",
             "partner_class": "rda_partner", "falcon_status": "COMPLETED"}, "status_sync_issue"),
}


def classify_one(**fields) -> tuple[str | None, str]:
    row = classify(snapshot_rows(fields)).iloc[0]
    return (None if pd.isna(row["rule_id"]) else row["rule_id"]), row["stuck_reason"]


def test_every_rule_has_a_case() -> None:
    assert [r.id for r in load_rules()] == list(CASES)


@pytest.mark.parametrize("rule_id", list(CASES))
def test_rule(rule_id: str) -> None:
    fields, reason = CASES[rule_id]
    assert classify_one(**fields) == (rule_id, reason)


def test_rules_evaluate_together_in_one_frame() -> None:
    frame = classify(snapshot_rows(*(fields for fields, _ in CASES.values())))
    assert list(frame["rule_id"]) == list(CASES)
    assert list(frame["stuck_reason"]) == [reason for _, reason in CASES.values()]


def test_no_match_is_uncategorized() -> None:
    assert classify_one(currency="GBP", acquirer="TRUELAYER") == (None, "uncategorized")
    assert classify_one() == (None, "uncategorized")  # AED with nothing downstream


@pytest.mark.parametrize(
    ("hours", "reason"),
    [(13, "bulk_vda_order_within_16_hrs"), (15.99, "bulk_vda_order_within_16_hrs"),
     (16, "bulk_vda_order_grtr_than_16_hrs"), (20, "bulk_vda_order_grtr_than_16_hrs"),
     (60, "bulk_vda_order_grtr_than_16_hrs")],
)
@pytest.mark.parametrize("currency", ["AED", "GBP"])
def test_fix1_bulk_vda_label_follows_real_age(hours: float, reason: str, currency: str) -> None:
    fields = {**FTV, "currency": currency, "payout_status": "PROCESSING", "payout_partner": "TANGOPE_V3",
              "partner_class": "bulk_vda_partner", "hours_stuck": hours}
    assert classify_one(**fields)[1] == reason


def test_fix2_missing_rda_status_counts_as_not_onhold() -> None:
    assert classify_one(**GBP, **RDA, payout_status="PROCESSING", rda_status=None) == ("G15", "stuck_at_rda_partner")
    # and a missing GOMS status is "not FAILED"
    assert classify_one(status=None, lulu_status="TXN_TRANSMITTED") == ("R12", "stuck_at_lulu")


@pytest.mark.parametrize("closed", ["VERIFIED", "EXPIRED", "FAILED"])
def test_fix3_closed_rfi_does_not_route_to_kyc(closed: str) -> None:
    assert classify_one(rfi_status=closed, lulu_status="TXN_TRANSMITTED") == ("R12", "stuck_at_lulu")
    assert classify_one(status="FAILED", rfi_status=closed, lulu_status="CREATED") == ("R13", "refund_pending")


@pytest.mark.parametrize("open_state", ["REQUESTED", "REJECTED", "SUBMITTED", "SENT_TO_PROVIDER", "RE_OPEN"])
def test_fix3_open_rfi_routes_to_kyc(open_state: str) -> None:
    assert classify_one(rfi_status=open_state, lulu_status="TXN_TRANSMITTED") == ("R11", "rfi_order_grtr_than_24_hr")


@pytest.mark.parametrize("status", ["PROCESSING_DEAL_IN", "FAILED"])
def test_fix4_lulu_cancellation_states_are_not_swallowed_by_r12(status: str) -> None:
    assert classify_one(status=status, lulu_status="CANCELLATION_REQUEST_CREATED")[1] == "cancellation_pending"
    assert classify_one(status=status, lulu_status="CANCELLATION_COMPLETED")[1] == "refund_pending"


def test_fix5_catalogue_supplies_team_sla_severity_and_action() -> None:
    frame = attach_catalogue(classify(snapshot_rows({"lulu_status": "CANCELLATION_COMPLETED"},
                                                    {**OPEN_RFI, "hours_stuck": 18})))
    refund, rfi = frame.iloc[0], frame.iloc[1]
    summary = (refund["team"], refund["sla_hours"], refund["severity"], bool(refund["no_action"]))
    assert summary == ("Ops", 2, 1.0, False)
    assert refund["runbook"] == "refund-pending.md" and refund["action"].startswith("URGENT")
    assert (rfi["team"], bool(rfi["no_action"])) == ("KYC_ops", True)


def test_catalogue_has_the_21_reasons_and_every_rule_targets_one() -> None:
    catalogue = load_catalogue()
    assert len(catalogue.reasons) == 21
    teams = [r.team for r in catalogue.reasons.values()]
    assert (teams.count("Ops"), teams.count("KYC_ops"), teams.count("VDA_ops")) == (10, 8, 3)
    targets = {r.reason for r in load_rules()} | {r.reason_below for r in load_rules() if r.reason_below}
    assert targets | {"uncategorized"} == set(catalogue.reasons)
