"""The SQL snapshot on a real DuckDB warehouse: one row per order, point in time from history,
duplicates reduced to the latest row, the read-only guard, and the no-history fallback."""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import pandas as pd
import pytest

from ecm_pipeline.resources.warehouse import UnsafeQueryError, WarehouseError, WarehouseResource
from ecm_pipeline.settings import load_settings
from ecm_pipeline.snapshot import snapshot_sql, take_snapshot

ANCHOR = datetime(2026, 11, 21, 10, 0)


def snap(path, as_of=ANCHOR, live=False):
    return take_snapshot(WarehouseResource(url=f"duckdb:///{path}"), as_of, load_settings(), live=live)


def test_one_row_per_order_within_the_window(demo_warehouse) -> None:
    s = snap(demo_warehouse)
    frame = s.candidates
    assert frame["order_id"].is_unique and len(frame) > 300
    assert frame["hours_stuck"].between(12, 30 * 24).all()
    assert set(frame["currency"]) == {"AED", "GBP", "EUR"}
    assert (s.mode, s.exact) == ("history", True)
    assert set(frame["time_bucket"]) <= {"12_hr_bucket", "24_hr_bucket", "48_hr_bucket"}
    assert set(frame["category"]) <= {"warning", "action_required", "critical"}
    gbp = frame[frame["currency"] == "GBP"]
    assert (gbp["amount_aed"] == (gbp["send_amount"] * 4.9).round(2)).all()


def test_point_in_time_uses_history(demo_warehouse, demo_tables) -> None:
    as_of = ANCHOR - timedelta(days=3)
    meta = demo_tables["_meta"]
    resolved_since = meta[
        meta["expected"].isin(["stuck_at_lulu", "refund_pending"])
        & (meta["created_at"] < pd.Timestamp(as_of - timedelta(days=1)))
        & (meta["resolved_at"] > pd.Timestamp(as_of + timedelta(hours=1)))
    ]["order_id"]
    assert len(resolved_since) > 5
    then = set(snap(demo_warehouse, as_of).candidates["order_id"])
    now = set(snap(demo_warehouse).candidates["order_id"])
    assert set(resolved_since) <= then
    assert not set(resolved_since) & now


def test_duplicates_are_reduced_to_the_latest_row(tmp_path, demo_tables) -> None:
    from ecm_pipeline.demo import write_warehouse

    path = tmp_path / "w.duckdb"
    write_warehouse(demo_tables, path)
    frame = snap(path).candidates
    target = frame[frame["lulu_status"] == "TXN_TRANSMITTED"].iloc[0]
    oid, at = target["order_id"], ANCHOR - timedelta(days=40)
    with duckdb.connect(str(path)) as con:  # older rows that must lose to the latest ones
        con.execute("INSERT INTO lulu_data VALUES (?, 'PENDING', 'CREDITED', 'LULU', ?, ?)", [oid, at, at])
        con.execute("INSERT INTO payments_goms VALUES (?, 'FAILED', ?, ?)", [oid, at, at])
        con.execute("INSERT INTO transfer_rfi VALUES (?, 'REQUESTED', 'ID_PROOF', ?, ?)", [oid, at, at])
        # a row created after the tick does not exist yet at the tick
        later = ANCHOR + timedelta(hours=1)
        con.execute("INSERT INTO lulu_data VALUES (?, 'PENDING', 'CANCELLATION_COMPLETED', 'LULU', ?, ?)",
                    [oid, later, later])
    row = snap(path).candidates.set_index("order_id").loc[oid]
    assert row["lulu_status"] == "TXN_TRANSMITTED"
    assert row["payment_status"] == target["payment_status"]
    assert row["payment_attempts"] == target["payment_attempts"] + 1
    assert row["rfi_status"] == "REQUESTED" and bool(row["has_rfi"])


def test_without_history_the_current_state_is_used_and_marked(tmp_path, demo_tables) -> None:
    from ecm_pipeline.demo import write_warehouse

    path = tmp_path / "nohistory.duckdb"
    write_warehouse(demo_tables, path)
    with duckdb.connect(str(path)) as con:
        con.execute("DROP TABLE orders_goms_history")
    live = snap(path, live=True)
    assert (live.mode, live.exact) == ("live", True)
    past = snap(path, ANCHOR - timedelta(days=3))
    assert (past.mode, past.exact) == ("approximate", False)
    assert "FROM orders_goms_history" not in snapshot_sql(with_history=False)


@pytest.mark.parametrize("sql", [
    "DELETE FROM orders_goms",
    "SELECT 1; DROP TABLE orders_goms",
    "/* SELECT */ UPDATE orders_goms SET status = 'X'",
    "CREATE TABLE x AS SELECT 1",
    "",
])
def test_only_a_single_select_reaches_the_warehouse(demo_warehouse, sql: str) -> None:
    with pytest.raises(UnsafeQueryError):
        WarehouseResource(url=f"duckdb:///{demo_warehouse}").query(sql)


def test_guard_allows_semicolons_inside_strings_and_a_trailing_one(demo_warehouse) -> None:
    result = WarehouseResource(url=f"duckdb:///{demo_warehouse}").query("SELECT 'a;b' AS x;")
    assert result["x"].tolist() == ["a;b"]


def test_the_local_warehouse_is_opened_read_only(demo_warehouse) -> None:
    # the guard is one line of defence; the connection itself refuses writes too
    resource = WarehouseResource(url=f"duckdb:///{demo_warehouse}")
    with resource._get_engine().connect() as conn, pytest.raises(Exception, match="read-only"):
        conn.exec_driver_sql("CREATE TABLE x (a INT)")


def test_missing_warehouse_says_what_to_do(tmp_path) -> None:
    with pytest.raises(WarehouseError, match="run `ecm demo`"):
        WarehouseResource(url=f"duckdb:///{tmp_path / 'none.duckdb'}").query("SELECT 1")
