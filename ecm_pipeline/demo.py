"""Demo warehouse and sheet: a deterministic, realistic slice of the business (facts §11).

Orders arrive over `days` days before the anchor tick. Most complete within hours; a few per day
get stuck in one of the scenarios below, stay stuck for a random time and then resolve, and the
rest of the noise the filters exist for (unpaid, abandoned, dead, CNR waits) is mixed in. Every
state change is written to `orders_goms_history`, so any past tick can be snapshotted exactly.
Scenario rates are set from the backlog each should contribute at a tick, so 200-600 actionable
orders are stuck at any tick after the first ~10 days.
"""

from __future__ import annotations

import shutil
import string
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from ecm_pipeline.domain.tickets import AGENT_COLUMNS, ASSIGNMENT_COLUMNS
from ecm_pipeline.resources.sheet import LocalSheetStore
from ecm_pipeline.settings import load_settings

HOUR = np.timedelta64(3600, "s")
DAY = 24 * HOUR
WINDOW_DAYS = 30.0
MIN_AGE_DAYS = 0.5

SCHEMA = {
    "orders_goms": (
        "order_id VARCHAR, owner_id VARCHAR, status VARCHAR, sub_state VARCHAR, "
        "meta_postscript_pricing_info_send_currency VARCHAR, meta_postscript_pricing_info_send_amount DOUBLE, "
        "meta_postscript_pricing_info_receive_amount DOUBLE, meta_postscript_acquirer VARCHAR, "
        "created_at TIMESTAMP, updated_at TIMESTAMP"
    ),
    "payments_goms": "reference_id VARCHAR, payment_status VARCHAR, created_at TIMESTAMP, updated_at TIMESTAMP",
    "falcon_transactions_v2": "transaction_id VARCHAR, client_txn_id VARCHAR, status VARCHAR, created_at TIMESTAMP",
    "transaction_payout": (
        "transaction_id VARCHAR, status VARCHAR, payout_partner VARCHAR, created_at TIMESTAMP, updated_at TIMESTAMP"
    ),
    "lulu_data": (
        "order_id VARCHAR, status VARCHAR, sub_status VARCHAR, lulu_client VARCHAR, "
        "created_at TIMESTAMP, updated_at TIMESTAMP"
    ),
    "transfer_rfi": (
        "reference_id VARCHAR, status VARCHAR, rfitype VARCHAR, created_at TIMESTAMP, modified_at TIMESTAMP"
    ),
    "uae_manual_payments": "order_id VARCHAR, status VARCHAR",
    "checkout_payment_data": "order_id VARCHAR, status VARCHAR",
    "fulfillments_goms": "order_id VARCHAR, created_at TIMESTAMP, updated_at TIMESTAMP",
    "rda_fulfillments": "order_id VARCHAR, status VARCHAR",
    "orders_goms_history": "order_id VARCHAR, status VARCHAR, sub_state VARCHAR, changed_at TIMESTAMP",
}

# Partners from the catalogue in the settings (facts §2.4): the bulk ones, the RDA one, and API
# partners (two outside the catalogue, two that batch only above the receive-amount threshold).
_partners = load_settings().partners
RDA_PARTNER = _partners.rda[0]
VDA_API_PARTNERS = ("YBL_API", "HDFC_API", *_partners.bulk_above_threshold[:2])
BULK_PARTNERS = _partners.bulk


@dataclass(frozen=True)
class Scenario:
    """One way an order can behave. `backlog` is how many such orders are stuck at a tick."""

    name: str
    currencies: dict[str, float]
    status: str
    sub_state: str
    backlog: float = 0.0            # stuck (12 h - 30 d old) at any tick, for stuck scenarios
    per_day: float = 0.0            # or a plain arrival rate, for completed traffic
    mean_days: float | None = None  # mean time stuck; None = stays stuck until it leaves the window
    final: tuple[str, str] = ("COMPLETED", "COMPLETED")
    acquirer: tuple[str, ...] = ("CHECKOUT",)
    payments: tuple[str, ...] = ("COMPLETED",)
    falcon: str | None = None
    payout: str | None = None
    partners: tuple[str, ...] = (RDA_PARTNER,)
    lulu: str | None = None
    rfi: str | None = None
    trm: bool = False
    checkout: str | None = None
    manual: str | None = None
    rda: str | None = None
    expected: str | None = None     # the stuck_reason it is meant to produce (for seeding tickets)


AED_ACQ = ("CHECKOUT", "CHECKOUT", "LEANTECH", "UAE_MANUAL")
EU_ACQ = ("TRUELAYER", "TRUELAYER", "CHECKOUT")
GBP_EUR = {"GBP": 0.85, "EUR": 0.15}

SCENARIOS: tuple[Scenario, ...] = (
    # --- healthy traffic: completes within hours ---
    Scenario("completed_aed", {"AED": 1.0}, "COMPLETED", "COMPLETED", per_day=1750, acquirer=AED_ACQ,
             falcon="COMPLETED", payout="COMPLETED", partners=(RDA_PARTNER, *VDA_API_PARTNERS),
             lulu="CREDITED", checkout="CAPTURED"),
    Scenario("completed_gbp_eur", {"GBP": 0.85, "EUR": 0.15}, "COMPLETED", "COMPLETED", per_day=1050,
             acquirer=EU_ACQ, falcon="COMPLETED", payout="COMPLETED", partners=(RDA_PARTNER, *VDA_API_PARTNERS)),
    # R2: completed but Falcon failed. Never a batch candidate (status COMPLETED); `order ID` finds it.
    Scenario("falcon_failed_completed", {"AED": 0.5, "GBP": 0.5}, "COMPLETED", "COMPLETED", per_day=0.6,
             falcon="FAILED", payout="COMPLETED", lulu="CREDITED", expected="falcon_failed_order_completed_issue"),
    # --- actionable AED ---
    Scenario("stuck_at_lulu", {"AED": 1}, "PROCESSING_DEAL_IN", "FULFILLMENT_PENDING", backlog=90, mean_days=6,
             lulu="TXN_TRANSMITTED", checkout="CAPTURED", expected="stuck_at_lulu"),
    Scenario("refund_cancelled_at_lulu", {"AED": 1}, "PROCESSING_DEAL_IN", "REFUND_TRIGGERED", backlog=34,
             mean_days=14, final=("FAILED", "CANCELLED"), lulu="CANCELLATION_COMPLETED", checkout="CAPTURED",
             expected="refund_pending"),
    Scenario("refund_failed_aed", {"AED": 1}, "FAILED", "TRIGGER_REFUND", backlog=18, mean_days=14,
             final=("FAILED", "CANCELLED"), lulu="CREATED", checkout="CAPTURED", expected="refund_pending"),
    Scenario("brn_checkout", {"AED": 1}, "PROCESSING_DEAL_IN", "FULFILLMENT_PENDING", backlog=5, mean_days=1.5,
             lulu="PAYMENT_PENDING", checkout="CAPTURED", expected="brn_issue"),
    Scenario("brn_manual", {"AED": 1}, "PROCESSING_DEAL_IN", "FULFILLMENT_PENDING", backlog=3, mean_days=1.5,
             acquirer=("UAE_MANUAL",), manual="RECONCILED", lulu="CREATED", expected="brn_issue"),
    Scenario("lean_recon", {"AED": 1}, "PROCESSING_DEAL_IN", "FULFILLMENT_PENDING", backlog=5, mean_days=1.5,
             acquirer=("LEANTECH",), lulu="PAYMENT_PENDING", expected="stuck_at_lean_recon"),
    Scenario("status_sync_aed", {"AED": 1}, "PROCESSING_DEAL_IN", "FULFILLMENT_PENDING", backlog=9, mean_days=2,
             lulu="CREDITED", expected="status_sync_issue"),
    Scenario("rfi_aed", {"AED": 1}, "PROCESSING_DEAL_IN", "AWAIT_EXTERNAL_ACTION", backlog=28, mean_days=3,
             lulu="TXN_TRANSMITTED", rfi="REQUESTED", expected="rfi_order_grtr_than_24_hr"),
    Scenario("cancellation_aed", {"AED": 1}, "PROCESSING_DEAL_IN", "MANUAL_REVIEW", backlog=9, mean_days=2,
             lulu="CANCELLATION_REQUEST_CREATED", expected="cancellation_pending"),
    Scenario("vda_api_aed", {"AED": 1}, "PROCESSING_DEAL_IN", "FULFILLMENT_TRIGGER", backlog=12, mean_days=2,
             falcon="PROCESSING", payout="PROCESSING", partners=VDA_API_PARTNERS[:2], lulu="TXN_TRANSMITTED",
             expected="stuck_at_vda_partner"),
    Scenario("rda_processing_aed", {"AED": 1}, "PROCESSING_DEAL_IN", "FULFILLMENT_TRIGGER", backlog=9,
             mean_days=2, acquirer=("LEANTECH",), falcon="PROCESSING", payout="PROCESSING",
             lulu="TXN_TRANSMITTED", expected="stuck_at_rda_partner"),
    Scenario("rda_docs_aed", {"AED": 1}, "PROCESSING_DEAL_IN", "AWAIT_EXTERNAL_ACTION", backlog=4, mean_days=1.5,
             acquirer=("LEANTECH",), falcon="PROCESSING", payout="ADDITIONAL_DOCUMENTS_REQUIRED",
             lulu="TXN_TRANSMITTED", expected="no_rfi_created"),
    Scenario("rda_rfi_aed", {"AED": 1}, "PROCESSING_DEAL_IN", "AWAIT_EXTERNAL_ACTION", backlog=7, mean_days=3,
             acquirer=("LEANTECH",), falcon="PROCESSING", payout="PROCESSING", lulu="TXN_TRANSMITTED",
             rfi="REQUESTED", rda="ONHOLD", expected="stuck_at_rda_partner_rfi_grtr_than_24_hrs"),
    # Fresh RFIs turn over fast: the "within 24 h" labels come from these.
    Scenario("rda_rfi_fresh", {"AED": 0.5, "GBP": 0.5}, "PROCESSING_DEAL_IN", "AWAIT_EXTERNAL_ACTION",
             backlog=8, mean_days=0.8, acquirer=("LEANTECH",), falcon="PROCESSING", payout="PROCESSING",
             lulu="TXN_TRANSMITTED", rfi="REQUESTED", rda="ONHOLD",
             expected="stuck_at_rda_partner_rfi_within_24_hrs"),
    Scenario("trm_rfi_fresh", GBP_EUR, "PROCESSING_DEAL_IN", "AWAIT_EXTERNAL_ACTION", backlog=6, mean_days=0.8,
             acquirer=EU_ACQ, trm=True, rfi="REQUESTED", expected="stuck_due_trm_rfi_within_24_hrs"),
    Scenario("bulk_vda_aed", {"AED": 1}, "PROCESSING_DEAL_IN", "FULFILLMENT_TRIGGER", backlog=10, mean_days=0.6,
             falcon="PROCESSING", payout="PROCESSING", partners=BULK_PARTNERS, lulu="TXN_TRANSMITTED",
             expected="bulk_vda_order_grtr_than_16_hrs"),
    Scenario("uncategorized_aed", {"AED": 1}, "PROCESSING_DEAL_IN", "FULFILLMENT_TRIGGER", backlog=5,
             mean_days=4, falcon="QUEUED", lulu="TXN_TRANSMITTED", expected="uncategorized"),
    # --- actionable GBP / EUR ---
    Scenario("goms_payment_issue", GBP_EUR, "PENDING", "PENDING", backlog=70, mean_days=8, acquirer=EU_ACQ,
             expected="stuck_due_to_payment_issue_goms"),
    Scenario("goms_retry_intent", GBP_EUR, "PROCESSING_DEAL_IN", "AWAIT_RETRY_INTENT", backlog=34, mean_days=8,
             acquirer=EU_ACQ, payments=("FAILED", "COMPLETED"), expected="stuck_due_to_payment_issue_goms"),
    Scenario("trm_hold", GBP_EUR, "PROCESSING_DEAL_IN", "MANUAL_REVIEW", backlog=12, mean_days=2,
             acquirer=EU_ACQ, trm=True, expected="stuck_due_trm"),
    Scenario("trm_rfi", GBP_EUR, "PROCESSING_DEAL_IN", "AWAIT_EXTERNAL_ACTION", backlog=9, mean_days=3,
             acquirer=EU_ACQ, trm=True, rfi="SUBMITTED", expected="stuck_due_trm_rfi_grtr_than_24_hrs"),
    Scenario("refund_failed_gbp", GBP_EUR, "FAILED", "FAILED", backlog=10, mean_days=8,
             final=("FAILED", "CANCELLED"), acquirer=EU_ACQ, expected="refund_pending"),
    Scenario("rda_onhold_no_rfi", GBP_EUR, "PROCESSING_DEAL_IN", "AWAIT_EXTERNAL_ACTION", backlog=3,
             mean_days=2, acquirer=EU_ACQ, falcon="PROCESSING", payout="PROCESSING", rda="ONHOLD",
             expected="no_rfi_created"),
    Scenario("rda_onhold_rfi", GBP_EUR, "PROCESSING_DEAL_IN", "AWAIT_EXTERNAL_ACTION", backlog=5, mean_days=3,
             acquirer=EU_ACQ, falcon="PROCESSING", payout="PROCESSING", rda="ONHOLD", rfi="REJECTED",
             expected="stuck_at_rda_partner_rfi_grtr_than_24_hrs"),
    Scenario("status_sync_gbp", GBP_EUR, "PROCESSING_DEAL_IN", "FULFILLMENT_PENDING", backlog=6, mean_days=2,
             acquirer=EU_ACQ, falcon="COMPLETED", payout="COMPLETED", expected="status_sync_issue"),
    Scenario("vda_api_gbp", GBP_EUR, "PROCESSING_DEAL_IN", "FULFILLMENT_TRIGGER", backlog=6, mean_days=2,
             acquirer=EU_ACQ, falcon="PROCESSING", payout="PROCESSING", partners=VDA_API_PARTNERS[:2],
             expected="stuck_at_vda_partner"),
    Scenario("rda_processing_gbp", GBP_EUR, "PROCESSING_DEAL_IN", "FULFILLMENT_TRIGGER", backlog=5, mean_days=2,
             acquirer=EU_ACQ, falcon="PROCESSING", payout="PROCESSING", expected="stuck_at_rda_partner"),
    Scenario("bulk_vda_gbp", GBP_EUR, "PROCESSING_DEAL_IN", "FULFILLMENT_TRIGGER", backlog=5, mean_days=0.6,
             acquirer=EU_ACQ, falcon="PROCESSING", payout="PROCESSING", partners=BULK_PARTNERS,
             expected="bulk_vda_order_grtr_than_16_hrs"),
    Scenario("uncategorized_gbp", GBP_EUR, "PROCESSING_DEAL_IN", "FULFILLMENT_TRIGGER", backlog=6, mean_days=4,
             acquirer=EU_ACQ, falcon="PROCESSING", payout="PENDING", expected="uncategorized"),
    # --- noise the filters exist for (about 40 % of the raw stuck list) ---
    Scenario("declined_payment", GBP_EUR, "FAILED", "FAILED", backlog=160, payments=("FAILED",),
             acquirer=EU_ACQ),
    Scenario("abandoned_payment", {"AED": 0.5, "GBP": 0.5}, "PENDING", "PENDING", backlog=7, mean_days=0.6,
             final=("FAILED", "CANCELLED"), payments=("INITIATED",)),
    Scenario("abandoned_retry", GBP_EUR, "PENDING", "AWAIT_RETRY_INTENT", backlog=4, mean_days=0.6,
             final=("FAILED", "CANCELLED"), acquirer=EU_ACQ, payments=("FAILED",), falcon="FAILED"),
    Scenario("unpaid_uncategorized", {"AED": 1}, "PROCESSING_DEAL_IN", "FULFILLMENT_PENDING", backlog=3,
             mean_days=0.6, final=("FAILED", "CANCELLED"), payments=("FAILED",), falcon="FAILED"),
    Scenario("dead_order", GBP_EUR, "PROCESSING_DEAL_IN", "FULFILLMENT_PENDING", backlog=55, acquirer=EU_ACQ),
    Scenario("aed_without_lulu", {"AED": 1}, "PROCESSING_DEAL_IN", "AWAIT_EXTERNAL_ACTION", backlog=40,
             mean_days=20, rfi="REQUESTED"),
    Scenario("cnr_wait", {"AED": 1}, "PROCESSING_DEAL_IN", "CNR_RESERVED_WAIT", backlog=120, mean_days=5,
             lulu="TXN_TRANSMITTED", checkout="CAPTURED"),
    Scenario("never_started", {"AED": 0.6, "GBP": 0.4}, "PENDING", "INIT_PAYMENT", per_day=60, payments=()),
    Scenario("unreviewed_sub_state", {"AED": 1}, "PROCESSING_DEAL_IN", "BRN_WAIT_WINDOW", backlog=4,
             mean_days=2, lulu="CREATED"),
    Scenario("us_corridor", {"USD": 1}, "PENDING", "PENDING", backlog=3, mean_days=3, acquirer=("COLUMN",)),
)

ID_PREFIX = {"AED": "AE", "GBP": "UK", "EUR": "EU", "USD": "US"}
AMOUNT = {"AED": (2400.0, 260.0, 60100.0), "GBP": (480.0, 20.0, 12000.0), "EUR": (420.0, 20.0, 12000.0),
          "USD": (600.0, 20.0, 10000.0)}
TO_AED = {"AED": 1.0, "GBP": 4.9, "EUR": 4.25, "USD": 3.67}

AGENTS = [
    ("amira.haddad@aspora.example", "Amira Haddad", "Ops", "U07AMIRA01", "TRUE", "12"),
    ("rahul.menon@aspora.example", "Rahul Menon", "Ops", "U07RAHUL02", "true", "10"),
    ("sara.khan@aspora.example", "Sara Khan", "KYC_ops", "U07SARAK03", "yes", ""),
    ("li.wei@aspora.example", "Li Wei", "VDA_ops", "U07LIWEI04", "1", "8"),
    ("omar.farouk@aspora.example", "Omar Farouk", "Manager", "U07OMARF05", "TRUE", "15"),
    ("daniel.brooks@aspora.example", "Daniel Brooks", "Ops", "U07DANBR06", "FALSE", "10"),
    ("test.agent@aspora.example", "ECM Test Account", "Ops", "U07ECMTST7", "TRUE", "50"),
]


def expected_stay_days(mean_days: float | None) -> float:
    """Mean time an order of a scenario spends inside the [12 h, 30 d] age window."""
    if mean_days is None:
        return WINDOW_DAYS - MIN_AGE_DAYS
    m = mean_days
    return m * (np.exp(-MIN_AGE_DAYS / m) - np.exp(-WINDOW_DAYS / m))


def arrivals_per_day(s: Scenario) -> float:
    return s.per_day or s.backlog / expected_stay_days(s.mean_days)


DEFAULT_ORDERS_PER_DAY = round(sum(arrivals_per_day(s) for s in SCENARIOS))


# The world is generated day by day from a fixed epoch, each (scenario, day) with its own random
# stream, and cut at the anchor: so `ecm demo --as-of T1` and `--as-of T2` (same seed) describe the
# same orders and the same events, T2's warehouse simply knowing more of them. An order's id is a
# fixed scramble of (day, scenario, index): unique, random-looking and the same in every warehouse.
EPOCH = np.datetime64("2020-01-01T00:00:00", "s")
_ID_ALPHABET = np.array(list(string.digits + string.ascii_uppercase))
_ID_SPACE = 36 ** 8
_ID_MULTIPLIER = 25_214_903_917   # coprime to 36: a bijection of the id space
SLOTS_PER_DAY = 10_000_000        # orders of one scenario in one day, at the most


def _order_ids(currency: np.ndarray, day_number: int, scenario: int, n: int) -> np.ndarray:
    serial = (np.int64(day_number) * 64 + scenario) * SLOTS_PER_DAY + np.arange(n, dtype=np.int64)
    scrambled = (serial * _ID_MULTIPLIER + 12_345_678_901) % _ID_SPACE
    digits = np.stack([(scrambled // 36 ** k) % 36 for k in range(7, -1, -1)], axis=1)
    body = np.ascontiguousarray(_ID_ALPHABET[digits]).view("<U8").ravel()
    prefix = np.array([ID_PREFIX[c] for c in sorted(ID_PREFIX)])[np.searchsorted(sorted(ID_PREFIX), currency)]
    return np.char.add(np.char.add(prefix, body), "00")


def _minutes(rng: np.random.Generator, n: int, low: float, high: float) -> np.ndarray:
    return (rng.uniform(low, high, n) * 60).astype("int64").astype("timedelta64[s]")


NAT = np.datetime64("NaT", "s")


Columns = dict[str, object]   # column -> array (or a scalar for every row)


def _day_of_orders(s: Scenario, index: int, day: np.datetime64, seed: int, scale: float) -> dict[str, list[Columns]]:
    """One day of one scenario: every order created that day with its whole life, future included.
    Source rows that change when the order resolves carry `_changes_at` and the `_after_*` values.
    Tables come back as column arrays; `generate_world` makes frames of them once."""
    day_number = int((day - EPOCH) // DAY)
    rng = np.random.default_rng([seed, index, day_number])
    n = int(rng.poisson(arrivals_per_day(s) * scale))
    if n == 0:
        return {}
    created = day + rng.uniform(0, 86400, n).astype("int64").astype("timedelta64[s]")
    weights = np.array(list(s.currencies.values()))
    currency = rng.choice(list(s.currencies), size=n, p=weights / weights.sum())
    order_id = _order_ids(currency, day_number, index, n)
    median = np.array([AMOUNT[c][0] for c in currency])
    amount = np.clip(median * rng.lognormal(0, 0.85, n), [AMOUNT[c][1] for c in currency],
                     [AMOUNT[c][2] for c in currency]).round(2)
    fx = np.array([TO_AED[c] for c in currency])
    receive = (amount * fx * rng.uniform(22.0, 25.0, n)).round(2)
    acquirer = rng.choice(s.acquirer, n)
    if s.per_day:  # healthy traffic: done within hours
        stuck_at = np.full(n, NAT)
        resolved = created + _minutes(rng, n, 20, 360)
    else:
        stuck_at = created + _minutes(rng, n, 2, 20)
        resolved = (np.full(n, NAT) if s.mean_days is None else
                    stuck_at + (rng.exponential(s.mean_days, n) * 86400).astype("int64").astype("timedelta64[s]"))
    final_status, final_sub = (s.status, s.sub_state) if s.per_day else s.final
    succeeded = final_status == "COMPLETED"
    changes = np.where(np.isnat(stuck_at), NAT, resolved)   # stuck orders' sources move when they resolve

    history = [_columns_of({"order_id": order_id, "status": "CREATED", "sub_state": "INIT_PAYMENT",
                             "changed_at": created})]
    if not s.per_day:
        history.append(_columns_of({"order_id": order_id, "status": s.status, "sub_state": s.sub_state,
                                     "changed_at": stuck_at}))
    done = ~np.isnat(resolved)
    history.append(_columns_of({"order_id": order_id[done], "status": final_status, "sub_state": final_sub,
                                 "changed_at": resolved[done]}))
    orders = _columns_of({
        "order_id": order_id,
        "owner_id": np.char.add("U", rng.integers(10_000_000, 99_999_999, n).astype(str)),
        "meta_postscript_pricing_info_send_currency": currency,
        "meta_postscript_pricing_info_send_amount": amount,
        "meta_postscript_pricing_info_receive_amount": receive,
        "meta_postscript_acquirer": acquirer,
        "created_at": created,
    })
    t1 = created + _minutes(rng, n, 1, 10)  # source records appear minutes after the order
    tables: dict[str, list[Columns]] = {"orders_goms": [orders], "orders_goms_history": history}

    def add(table: str, frame: Columns) -> None:
        tables.setdefault(table, []).append(frame)

    for i, pay_status in enumerate(s.payments):
        at = t1 + np.timedelta64(i * 300, "s")
        add("payments_goms", _columns_of({"reference_id": order_id, "payment_status": pay_status,
                                           "created_at": at, "updated_at": at + np.timedelta64(40, "s")}))
    if s.payments == ("COMPLETED",):  # a share of customers needed a second or third try
        retry = rng.random(n) < 0.2
        add("payments_goms", _columns_of({"reference_id": order_id[retry], "payment_status": "FAILED",
                                           "created_at": created[retry], "updated_at": created[retry]}))
    if s.falcon:
        txn = np.char.add("FT", order_id.astype("<U12").view("<U1").reshape(n, 12)[:, 2:10].copy().view("<U8").ravel())
        # Falcon keeps no change time: its status simply becomes the final one when the order resolves.
        add("falcon_transactions_v2", _columns_of({
            "transaction_id": txn, "client_txn_id": order_id, "status": s.falcon, "created_at": t1,
            "_changes_at": changes, "_after_status": "COMPLETED" if succeeded else "FAILED"}))
        if s.payout:
            partner = rng.choice(s.partners, n)
            t2 = t1 + _minutes(rng, n, 5, 60)
            add("transaction_payout", _columns_of({
                "transaction_id": txn, "status": s.payout, "payout_partner": partner, "created_at": t2,
                "updated_at": t2, "_changes_at": changes, "_after_status": "COMPLETED" if succeeded else "FAILED"}))
            earlier = rng.random(n) < 0.3  # duplicate rows: an earlier PENDING attempt
            add("transaction_payout", _columns_of({
                "transaction_id": txn[earlier], "status": "PENDING", "payout_partner": partner[earlier],
                "created_at": t1[earlier], "updated_at": t1[earlier]}))
        if s.rda:
            add("rda_fulfillments", _columns_of({"order_id": txn, "status": s.rda}))
    aed = currency == "AED"
    if s.lulu:
        lulu_after = "CREDITED" if succeeded else "CANCELLATION_COMPLETED"
        add("lulu_data", _columns_of({
            "order_id": order_id[aed], "status": "PENDING", "sub_status": s.lulu, "lulu_client": "LULU",
            "created_at": t1[aed], "updated_at": t1[aed] + np.timedelta64(900, "s"),
            "_changes_at": changes[aed] if s.lulu != lulu_after else NAT, "_after_sub_status": lulu_after}))
        earlier = aed & (rng.random(n) < 0.15)
        add("lulu_data", _columns_of({
            "order_id": order_id[earlier], "status": "PENDING", "sub_status": "CREATED", "lulu_client": "LULU",
            "created_at": created[earlier], "updated_at": created[earlier]}))
    if s.rfi:
        rfi_at = stuck_at + _minutes(rng, n, 30, 240)
        add("transfer_rfi", _columns_of({
            "reference_id": order_id, "status": s.rfi,
            "rfitype": rng.choice(["ID_PROOF", "PURPOSE_OF_TRANSFER", "RELATIONSHIP"], n),
            "created_at": rfi_at, "modified_at": rfi_at + _minutes(rng, n, 0, 60),
            "_changes_at": changes, "_after_status": "VERIFIED"}))
        old = rng.random(n) < 0.1  # an older, closed RFI that must not decide routing (fix 3)
        add("transfer_rfi", _columns_of({
            "reference_id": order_id[old], "status": "VERIFIED", "rfitype": "ID_PROOF",
            "created_at": created[old], "modified_at": created[old] + np.timedelta64(60, "s")}))
    if s.trm:
        add("fulfillments_goms", _columns_of({"order_id": order_id, "created_at": t1,
                                               "updated_at": t1 + _minutes(rng, n, 1, 30)}))
    if s.checkout:
        is_checkout = acquirer == "CHECKOUT"
        add("checkout_payment_data", _columns_of({"order_id": order_id[is_checkout], "status": s.checkout}))
    if s.manual:
        add("uae_manual_payments", _columns_of({"order_id": order_id, "status": s.manual}))
    tables["_meta"] = [_columns_of({"order_id": order_id, "scenario": s.name, "expected": s.expected,
                                    "status": s.status, "sub_state": s.sub_state, "final_status": final_status,
                                    "final_sub_state": final_sub, "created_at": created, "stuck_at": stuck_at,
                                    "resolved_at": resolved, "currency": currency, "amount": amount,
                                    "amount_aed": amount * fx})]
    return tables


def _columns_of(columns: Columns) -> Columns:
    """Scalars stretched to the length of the arrays beside them."""
    n = max(len(v) for v in columns.values() if isinstance(v, np.ndarray))
    return {k: v if isinstance(v, np.ndarray) else np.full(n, v, dtype=object if isinstance(v, str) or v is None
                                                           else None) for k, v in columns.items()}


def generate_world(seed: int, first_day: np.datetime64, last_day: np.datetime64,
                   scale: float = 1.0) -> dict[str, pd.DataFrame]:
    """Every order created from `first_day` to `last_day` (UTC days) with its whole life."""
    parts: dict[str, list[Columns]] = {}
    day = first_day
    while day <= last_day:
        for index, scenario in enumerate(SCENARIOS):
            for table, frames in _day_of_orders(scenario, index, day, seed, scale).items():
                parts.setdefault(table, []).extend(frames)
        day += DAY
    world = {}
    for name, frames in parts.items():
        columns = list(dict.fromkeys(c for f in frames for c in f))
        world[name] = pd.DataFrame({c: np.concatenate([_column(f, c) for f in frames]) for c in columns})
    return world


def _column(frame: Columns, column: str) -> np.ndarray:
    """A column of one part, or missing values where that part has none (`_changes_at` and the like)."""
    if column in frame:
        return frame[column]
    n = len(next(iter(frame.values())))
    return np.full(n, NAT) if column == "_changes_at" else np.full(n, None, dtype=object)


def _member(values: pd.Series, among: pd.Series) -> np.ndarray:
    """`values.isin(among)` for large `among`: pandas 3's string isin converts every value one by one."""
    return pc.is_in(pa.array(values, type=pa.string()), value_set=pa.array(among, type=pa.string())).to_numpy(
        zero_copy_only=False)


def _columns(table: str) -> list[str]:
    return [c.split()[0] for c in SCHEMA[table].split(", ")]


def as_of(world: dict[str, pd.DataFrame], anchor: np.datetime64, start: np.datetime64) -> dict[str, pd.DataFrame]:
    """The warehouse as it stands at `anchor`: orders created in [start, anchor]; every row and event
    that exists by then, with the values it has by then."""
    meta = world["_meta"]
    existing = ((meta["created_at"] >= start) & (meta["created_at"] <= anchor)).to_numpy()
    meta = meta[existing].reset_index(drop=True)
    keep = meta["order_id"]
    resolved = meta["resolved_at"].le(anchor).to_numpy()
    stuck = meta["stuck_at"].le(anchor).to_numpy() & ~resolved
    orders = world["orders_goms"][existing].reset_index(drop=True)   # row for row with `_meta`
    orders["status"] = np.where(resolved, meta["final_status"], np.where(stuck, meta["status"], "CREATED"))
    orders["sub_state"] = np.where(resolved, meta["final_sub_state"],
                                   np.where(stuck, meta["sub_state"], "INIT_PAYMENT"))
    orders["updated_at"] = np.where(resolved, meta["resolved_at"],
                                    np.where(stuck, meta["stuck_at"], meta["created_at"]))
    tables = {"orders_goms": orders[_columns("orders_goms")], "_meta": meta}
    transactions = "FT" + keep.str.slice(2, 10)
    for name in SCHEMA:
        if name == "orders_goms":
            continue
        frame = world.get(name)
        if frame is None:
            tables[name] = pd.DataFrame({c: pd.Series(dtype="object") for c in _columns(name)})
            continue
        if name in ("transaction_payout", "rda_fulfillments"):   # keyed by the Falcon transaction
            owned = _member(frame["transaction_id" if name == "transaction_payout" else "order_id"], transactions)
        else:
            owned = _member(frame[next(c for c in ("order_id", "reference_id", "client_txn_id") if c in frame)],
                            keep)
        frame = frame[owned]
        stamp = "changed_at" if name == "orders_goms_history" else "created_at"
        if stamp in frame:
            frame = frame[frame[stamp] <= anchor]
        frame = frame.copy()
        if "_changes_at" in frame:
            moved = frame["_changes_at"].le(anchor).to_numpy()
            for column in [c for c in frame.columns if c.startswith("_after_")]:
                target = column.removeprefix("_after_")
                frame[target] = np.where(moved, frame[column], frame[target])
            touched = "modified_at" if "modified_at" in frame else "updated_at"
            if touched in frame:
                frame[touched] = np.where(moved, frame["_changes_at"], frame[touched])
        tables[name] = frame[_columns(name)].reset_index(drop=True)
    return tables


def _span(anchor: datetime, days: float) -> tuple[np.datetime64, np.datetime64]:
    """The anchor (naive UTC) and the start of the `days` before it, as datetime64[s]."""
    end = np.datetime64(anchor.replace(tzinfo=None), "s")
    return end - np.timedelta64(int(days * 86400), "s"), end


def _day(moment: np.datetime64) -> np.datetime64:
    return moment.astype("datetime64[D]").astype("datetime64[s]")


def generate_tables(seed: int, anchor: datetime, days: float = 35.0, scale: float = 1.0) -> dict[str, pd.DataFrame]:
    """The warehouse tables (and a `_meta` frame describing each order) for a seed and an anchor
    (naive UTC): the orders of the `days` before the anchor, as the warehouse knows them then."""
    start, end = _span(anchor, days)
    return as_of(generate_world(seed, _day(start), _day(end), scale), end, start)


@contextmanager
def warehouse_writer(path: Path) -> Iterator[Callable[[dict[str, pd.DataFrame]], None]]:
    """Create the warehouse's tables in a new DuckDB file and yield a function that appends frames
    of rows to them; the file replaces `path` only once every append is done."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.duckdb")
    tmp.unlink(missing_ok=True)
    con = duckdb.connect(str(tmp))

    def append(tables: dict[str, pd.DataFrame]) -> None:
        for name, columns in SCHEMA.items():
            con.register("incoming", tables[name])
            cols = ", ".join(c.split()[0] for c in columns.split(", "))
            con.execute(f"INSERT INTO {name} SELECT {cols} FROM incoming")
            con.unregister("incoming")

    try:
        for name, columns in SCHEMA.items():
            con.execute(f"CREATE TABLE {name} ({columns})")
        yield append
    finally:
        con.close()
    tmp.replace(path)


def write_warehouse(tables: dict[str, pd.DataFrame], path: Path) -> None:
    with warehouse_writer(path) as append:
        append(tables)


def ticket_candidates(meta: pd.DataFrame, anchor: datetime) -> pd.DataFrame:
    """The orders a demo ticket may be about: open at the anchor, created 2 to 20 days before it,
    with a diagnosis the pipeline makes."""
    end = np.datetime64(anchor.replace(tzinfo=None), "s")
    return meta[
        meta["expected"].notna()
        & ~meta["expected"].isin(["uncategorized", "falcon_failed_order_completed_issue"])
        & ~(meta["resolved_at"] <= end)
        & (meta["created_at"] < end - 2 * DAY)
        & (meta["created_at"] > end - 20 * DAY)
    ]


def seed_sheet(store: LocalSheetStore, meta: pd.DataFrame, anchor: datetime, seed: int) -> pd.DataFrame:
    """Agents tab (7 agents: one inactive, one test account, one blank Max Tickets) and existing tickets."""
    rng = np.random.default_rng(seed + 1)
    store.reset()
    store.append_rows("Agents", pd.DataFrame(AGENTS, columns=AGENT_COLUMNS))
    open_now = ticket_candidates(meta, anchor)
    picked = open_now.sample(n=min(26, len(open_now)), random_state=seed)
    statuses = ["OPEN"] * 12 + ["IN_PROGRESS"] * 8 + ["ESCALATED"] * 4 + ["RESOLVED"] * 2
    # Agent e-mails as people type them: the sheet is matched case-insensitively.
    people = ["Amira.Haddad@aspora.example", "rahul.menon@aspora.example", "SARA.KHAN@aspora.example",
              "li.wei@aspora.example", "omar.farouk@aspora.example", "daniel.brooks@aspora.example"]
    rows = []
    for i, (_, order) in enumerate(picked.iterrows()):
        assigned = pd.Timestamp(order["created_at"]) + pd.Timedelta(hours=float(rng.uniform(13, 30)))
        rows.append({
            "Order ID": order["order_id"],
            "Assigned Agent": people[i % len(people)],
            "Assigned At": assigned.tz_localize("UTC").tz_convert("Asia/Dubai").strftime("%Y-%m-%d %H:%M:%S%z"),
            "Status": statuses[i % len(statuses)],
            "Priority": rng.choice(["P1", "P2", "P3"]),
            "Currency": order["currency"],
            "Amount": f"{order['amount']:.2f}",
            "Hours Stuck": f"{(assigned - pd.Timestamp(order['created_at'])).total_seconds() / 3600:.1f}",
            "Diagnosis": order["expected"],
            "Notes": "",
            "Triage Run": "manual",
        })
    tickets = pd.DataFrame(rows, columns=ASSIGNMENT_COLUMNS)
    store.append_rows("Assignments", tickets)
    return tickets


def first_tick_from(moment: datetime) -> str:
    """The key of the first tick at or after `moment` (naive UTC)."""
    from ecm_pipeline.partitions import KEY_FORMAT, TIMEZONE

    schedule = load_settings().schedule
    local = moment.replace(tzinfo=UTC).astimezone(TIMEZONE)
    for offset in range(2):
        day = local.date() + timedelta(days=offset)
        for tick in sorted(schedule.ticks):
            hour, minute = (int(part) for part in tick.split(":"))
            candidate = datetime(day.year, day.month, day.day, hour, minute, tzinfo=TIMEZONE)
            if candidate >= local:
                return candidate.strftime(KEY_FORMAT)
    raise ValueError(f"no tick after {moment}")


def write_go_live(home: Path, go_live: str) -> Path:
    """Record the demo's first tick as this ECM_HOME's go-live date (the first partition), keeping
    any other local override in `$ECM_HOME/settings.yaml`."""
    path = home / "settings.yaml"
    overrides = yaml.safe_load(path.read_text()) if path.exists() else None
    overrides = overrides if isinstance(overrides, dict) else {}
    overrides.setdefault("schedule", {})["go_live"] = go_live
    path.write_text("# Local overrides of the packaged settings.yaml (`ecm demo` sets the go-live date).\n"
                    + yaml.safe_dump(overrides, sort_keys=False))
    return path


# Days generated at a time: about a quarter of a million orders, so the generator's memory stays
# bounded at any volume (`ecm demo --orders-per-day`). Each day of orders comes from its own seed,
# so the chunks add up to exactly the tables `generate_tables` makes in one go.
CHUNK_ORDERS = 250_000


def generate_demo(home: Path, seed: int, anchor: datetime, days: float = 35.0, scale: float = 1.0) -> dict:
    """Write `warehouse.duckdb` and `sheet.sqlite` under `home`, and the go-live date of the data in
    `home/settings.yaml`; clear the outbox and lake."""
    start, end = _span(anchor, days)
    chunk_days = max(1, int(CHUNK_ORDERS // max(DEFAULT_ORDERS_PER_DAY * scale, 1)))
    home.mkdir(parents=True, exist_ok=True)
    rows = dict.fromkeys(SCHEMA, 0)
    candidates = []
    with warehouse_writer(home / "warehouse.duckdb") as append:
        day, last_day = _day(start), _day(end)
        while day <= last_day:
            through = min(day + (chunk_days - 1) * DAY, last_day)
            tables = as_of(generate_world(seed, day, through, scale), end, start)
            append(tables)
            rows = {name: rows[name] + len(tables[name]) for name in SCHEMA}
            candidates.append(ticket_candidates(tables["_meta"], anchor))
            day = through + DAY
    for stale in ("outbox", "lake"):
        shutil.rmtree(home / stale, ignore_errors=True)
    tickets = seed_sheet(LocalSheetStore(path=str(home / "sheet.sqlite")), pd.concat(candidates, ignore_index=True),
                         anchor, seed)
    begins = anchor - timedelta(days=days)
    go_live = first_tick_from(begins)
    write_go_live(home, go_live)
    return {
        "orders": rows["orders_goms"],
        "rows": rows,
        "tickets": len(tickets),
        "anchor": anchor,
        "start": begins,
        "go_live": go_live,
    }
