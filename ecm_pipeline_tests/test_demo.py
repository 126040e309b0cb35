"""The demo warehouse looks like the business (facts §11) and is deterministic for a seed."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest

from ecm_pipeline.demo import SCHEMA, generate_demo, generate_tables
from ecm_pipeline.domain.classification import attach_catalogue, classify
from ecm_pipeline.domain.qualification import qualify
from ecm_pipeline.domain.roster import parse_roster
from ecm_pipeline.resources.sheet import LocalSheetStore
from ecm_pipeline.resources.warehouse import WarehouseResource
from ecm_pipeline.settings import load_catalogue, load_settings
from ecm_pipeline.snapshot import CONTRACT_TABLES, take_snapshot

ANCHOR = datetime(2026, 11, 21, 10, 0)  # the 14:00 Dubai tick


def triage_at(warehouse_path, as_of: datetime) -> tuple[pd.DataFrame, pd.DataFrame]:
    settings = load_settings()
    snap = take_snapshot(WarehouseResource(url=f"duckdb:///{warehouse_path}"), as_of, settings)
    return qualify(attach_catalogue(classify(snap.candidates)), settings.qualification)


def test_same_seed_same_data_and_another_seed_differs() -> None:
    first = generate_tables(seed=3, anchor=ANCHOR, scale=0.05)
    again = generate_tables(seed=3, anchor=ANCHOR, scale=0.05)
    other = generate_tables(seed=4, anchor=ANCHOR, scale=0.05)
    for table in SCHEMA:
        pd.testing.assert_frame_equal(first[table], again[table])
    assert not first["orders_goms"]["order_id"].equals(other["orders_goms"]["order_id"])


def test_exactly_the_contract_tables_with_history_and_35_days(demo_tables) -> None:
    orders = demo_tables["orders_goms"]
    assert set(demo_tables) - {"_meta"} == set(SCHEMA) == set(CONTRACT_TABLES)
    assert orders["created_at"].min() <= pd.Timestamp(ANCHOR - timedelta(days=34.9))
    per_day = orders.groupby(orders["created_at"].dt.date).size()
    assert 2000 <= per_day.median() <= 5000
    assert orders["order_id"].is_unique
    aed = orders[orders["meta_postscript_pricing_info_send_currency"] == "AED"]
    assert aed["order_id"].str.fullmatch(r"AE[A-Z0-9]{8}00").all()
    amounts = aed["meta_postscript_pricing_info_send_amount"]
    assert amounts.min() >= 260 and amounts.max() <= 60100
    assert len(demo_tables["orders_goms_history"]) > len(orders)


def test_one_to_many_sources_have_duplicate_rows(demo_tables) -> None:
    assert demo_tables["payments_goms"]["reference_id"].duplicated().any()
    assert demo_tables["transaction_payout"]["transaction_id"].duplicated().any()
    assert demo_tables["lulu_data"]["order_id"].duplicated().any()
    assert demo_tables["transfer_rfi"]["reference_id"].duplicated().any()


@pytest.mark.parametrize("days_before", [0, 1, 2.5, 4, 6])
def test_backlog_is_realistic_at_any_recent_tick(demo_warehouse, days_before: float) -> None:
    qualified, disqualified = triage_at(demo_warehouse, ANCHOR - timedelta(days=days_before))
    assert 200 <= len(qualified) <= 600
    share = qualified["currency"].value_counts(normalize=True)
    assert 0.50 <= share["AED"] <= 0.70 and 0.25 <= share["GBP"] <= 0.40 and 0.01 <= share["EUR"] <= 0.10
    raw = len(qualified) + len(disqualified)
    assert 0.30 <= len(disqualified) / raw <= 0.50  # "about 40 % of raw stuck" is noise
    assert qualified["amount_aed"].sum() > 500_000  # "about 1M AED at risk"


def test_every_stuck_reason_is_present_in_realistic_proportions(demo_warehouse, demo_tables) -> None:
    qualified, disqualified = triage_at(demo_warehouse, ANCHOR)
    counts = qualified["stuck_reason"].value_counts()
    batch_reachable = set(load_catalogue().reasons) - {"falcon_failed_order_completed_issue"}
    assert set(counts.index) == batch_reachable
    assert 40 <= counts["refund_pending"] <= 75
    assert 70 <= counts["stuck_at_lulu"] <= 120
    assert counts["stuck_due_to_payment_issue_goms"] >= 90
    assert counts.idxmax() in {"stuck_at_lulu", "stuck_due_to_payment_issue_goms"}
    # R2 needs a COMPLETED order, which the batch snapshot never selects (SPEC §4): it is in the
    # warehouse for single-order lookups.
    falcon = demo_tables["falcon_transactions_v2"]
    orders = demo_tables["orders_goms"].set_index("order_id")
    failed = falcon[falcon["status"] == "FAILED"]["client_txn_id"]
    assert (orders.loc[orders.index.intersection(failed), "status"] == "COMPLETED").any()
    codes = set(disqualified["disqualification_code"])
    assert {"unpaid", "dead_order", "dead_no_lulu", "abandoned_payment", "abandoned_retry"} <= codes


def test_demo_seeds_the_sheet(tmp_path) -> None:
    generate_demo(tmp_path, seed=7, anchor=ANCHOR, scale=0.2)
    store = LocalSheetStore(str(tmp_path / "sheet.sqlite"))
    roster, problems = parse_roster(store.read_tab("Agents"), load_settings().assignment)
    assert problems == [] and len(roster) == 7
    assert (~roster["active"]).sum() == 1 and roster["excluded"].sum() == 1
    assert (store.read_tab("Agents")["Max Tickets"] == "").sum() == 1
    statuses = set(store.read_tab("Assignments")["Status"])
    assert {"OPEN", "IN_PROGRESS", "ESCALATED"} <= statuses


def test_a_large_demo_is_built_a_few_days_at_a_time_into_the_same_warehouse(tmp_path, monkeypatch) -> None:
    """`ecm demo --orders-per-day` of any size keeps its memory bounded by generating a chunk of
    days at a time; the chunks add up to exactly the tables made in one go."""
    import duckdb

    import ecm_pipeline.demo as demo

    whole = generate_tables(seed=7, anchor=ANCHOR, scale=0.1)
    demo.write_warehouse(whole, tmp_path / "whole.duckdb")
    monkeypatch.setattr(demo, "CHUNK_ORDERS", 1_500)   # about five days a chunk at this volume
    info = generate_demo(tmp_path / "chunked", seed=7, anchor=ANCHOR, scale=0.1)
    assert info["orders"] == len(whole["orders_goms"]) and info["rows"] == {n: len(whole[n]) for n in SCHEMA}
    with (duckdb.connect(str(tmp_path / "whole.duckdb"), read_only=True) as one_go,
          duckdb.connect(str(tmp_path / "chunked" / "warehouse.duckdb"), read_only=True) as chunked):
        for name in SCHEMA:
            pd.testing.assert_frame_equal(chunked.execute(f"SELECT * FROM {name}").df(),
                                          one_go.execute(f"SELECT * FROM {name}").df())
