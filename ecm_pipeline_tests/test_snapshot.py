"""The SQL snapshot on a real DuckDB warehouse: one row per order, point in time for every source
(a row created after the tick never counts; a row touched only after it makes the order
approximate), duplicates reduced to the latest row, many ticks in one query, the read-only
defences, and the no-history fallback."""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import pandas as pd
import pytest

from ecm_pipeline.resources.warehouse import UnsafeQueryError, WarehouseError, WarehouseResource
from ecm_pipeline.settings import load_settings
from ecm_pipeline.snapshot import snapshot_sql, take_snapshot, take_snapshots

ANCHOR = datetime(2026, 11, 21, 10, 0)


def snap(path, as_of=ANCHOR):
    return take_snapshot(WarehouseResource(url=f"duckdb:///{path}"), as_of, load_settings())


def test_one_row_per_order_within_the_window(demo_warehouse) -> None:
    s = snap(demo_warehouse)
    frame = s.candidates
    assert frame["order_id"].is_unique and len(frame) > 300
    assert frame["hours_stuck"].between(12, 30 * 24).all()
    assert set(frame["currency"]) == {"AED", "GBP", "EUR"}
    assert (s.mode, s.approximate_orders) == ("exact", 0)
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
        & (meta["created_at"] > pd.Timestamp(as_of - timedelta(days=29)))  # inside the 30-day window
        & meta["resolved_at"].between(pd.Timestamp(as_of + timedelta(hours=1)), pd.Timestamp(ANCHOR))
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
    at_the_end = snap(path)   # the warehouse's last moment: every current value is known
    assert at_the_end.approximate_orders == 0 and len(at_the_end.candidates) > 300
    past = snap(path, ANCHOR - timedelta(days=3))
    assert past.mode == "approximate"
    assert "cannot be placed" in past.reason()
    assert "FROM orders_goms_history" not in snapshot_sql(1, with_history=False)


def test_many_ticks_in_one_query_equal_one_tick_at_a_time(demo_warehouse) -> None:
    ticks = [ANCHOR - timedelta(hours=h) for h in (0, 7, 13, 24, 80)]
    together = take_snapshots(WarehouseResource(url=f"duckdb:///{demo_warehouse}"), ticks, load_settings())
    for tick in ticks:
        alone = snap(demo_warehouse, tick)
        pd.testing.assert_frame_equal(together[tick].candidates, alone.candidates)
        pd.testing.assert_frame_equal(together[tick].excluded, alone.excluded)


@pytest.mark.parametrize("sql", [
    "DELETE FROM orders_goms",
    "SELECT 1; DROP TABLE orders_goms",
    "SELECT 'a--b'; DROP TABLE orders_goms",
    "SELECT 1 /* ; */; DELETE FROM orders_goms",
    "/* SELECT */ UPDATE orders_goms SET status = 'X'",
    "WITH gone AS (DELETE FROM orders_goms RETURNING *) SELECT * FROM gone",
    "SELECT * INTO copy_of_orders FROM orders_goms",
    "CREATE TABLE x AS SELECT 1",
    "COPY orders_goms TO '/tmp/orders.csv'",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_parquet('/tmp/*.parquet')",
    "ATTACH '/tmp/other.duckdb' AS other",
    "SET enable_external_access = true",
    "",
])
def test_only_a_single_read_only_query_reaches_the_warehouse(demo_warehouse, sql: str, monkeypatch) -> None:
    resource = WarehouseResource(url=f"duckdb:///{demo_warehouse}")
    monkeypatch.setattr(WarehouseResource, "_get_engine", lambda self: pytest.fail("connection touched"))
    with pytest.raises(UnsafeQueryError):
        resource.query(sql)


def test_a_query_past_the_guard_can_neither_read_files_nor_write(demo_warehouse, tmp_path) -> None:
    (tmp_path / "secret.csv").write_text("a\n1\n")
    resource = WarehouseResource(url=f"duckdb:///{demo_warehouse}")
    with resource._get_engine().connect() as conn:
        with pytest.raises(Exception, match="(?i)external access|disabled|permission"):
            conn.exec_driver_sql(f"SELECT * FROM read_csv('{tmp_path / 'secret.csv'}')").fetchall()
        with pytest.raises(Exception, match="(?i)read-only|external access|disabled"):
            conn.exec_driver_sql(f"COPY (SELECT 1) TO '{tmp_path / 'out.csv'}'")
    assert not (tmp_path / "out.csv").exists()


def test_a_slow_query_is_stopped_at_the_statement_timeout(demo_warehouse) -> None:
    resource = WarehouseResource(url=f"duckdb:///{demo_warehouse}", statement_timeout_seconds=0.2)
    slow = "SELECT COUNT(*) FROM range(1000000) a, range(100000) b WHERE a.range * b.range % 7 = 3"
    with pytest.raises(WarehouseError, match="statement timeout of 0.2 s"):
        resource.query(slow)


def test_secrets_stay_out_of_the_resource_repr() -> None:
    resource = WarehouseResource(url="postgresql://reader:Pa55-word@db.internal/ecm", password="Other-Secret")
    assert "Pa55-word" not in repr(resource) and "Other-Secret" not in repr(resource)


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


# --- point in time, source by source ----------------------------------------------------------------
# One warehouse holds one order per case below (each alike at first: an AED order stuck at a VDA
# partner at T, with a row in every source), then each case changes its own order's rows; one
# snapshot at T answers every case.

T = datetime(2026, 11, 20, 10, 0)
BEFORE = T - timedelta(days=2)
AFTER = T + timedelta(hours=1)


def order_rows(order: str, txn: str) -> dict[str, list[tuple]]:
    return {
        "orders_goms": [(order, "U1", "PROCESSING_DEAL_IN", "FULFILLMENT_TRIGGER", "AED", 9000.0, 210000.0,
                         "CHECKOUT", BEFORE, BEFORE + timedelta(minutes=5))],
        "orders_goms_history": [(order, "CREATED", "INIT_PAYMENT", BEFORE),
                                (order, "PROCESSING_DEAL_IN", "FULFILLMENT_TRIGGER", BEFORE + timedelta(minutes=5))],
        "payments_goms": [(order, "COMPLETED", BEFORE, BEFORE)],
        "falcon_transactions_v2": [(txn, order, "PROCESSING", BEFORE)],
        "transaction_payout": [(txn, "PROCESSING", "YBL_API", BEFORE, BEFORE)],
        "lulu_data": [(order, "PENDING", "TXN_TRANSMITTED", "LULU", BEFORE, BEFORE)],
        "transfer_rfi": [(order, "REQUESTED", "ID_PROOF", BEFORE, BEFORE)],
        "fulfillments_goms": [(order, BEFORE, BEFORE + timedelta(minutes=3))],
        "uae_manual_payments": [(order, "RECONCILED")],
        "checkout_payment_data": [(order, "CAPTURED")],
        "rda_fulfillments": [(txn, "ONHOLD")],
    }


# (table, a row of it created after T with other values, the snapshot fields it would change)
CREATED_AFTER = [
    ("payments_goms", lambda o, t: (o, "FAILED", AFTER, AFTER), ["payment_status", "payment_attempts"]),
    ("falcon_transactions_v2", lambda o, t: ("FT9" + o[-4:], o, "FAILED", AFTER), ["falcon_status"]),
    ("transaction_payout", lambda o, t: (t, "COMPLETED", "VANCE_RDA", AFTER, AFTER), ["payout_status",
                                                                                      "payout_partner"]),
    ("lulu_data", lambda o, t: (o, "COMPLETED", "CREDITED", "LULU", AFTER, AFTER), ["lulu_status"]),
    ("transfer_rfi", lambda o, t: (o, "VERIFIED", "ID_PROOF", AFTER, AFTER), ["rfi_status"]),
    ("fulfillments_goms", lambda o, t: (o, AFTER, AFTER + timedelta(hours=5)), ["trm_seconds"]),
    ("orders_goms_history", lambda o, t: (o, "COMPLETED", "COMPLETED", AFTER), ["status", "sub_state"]),
]
# (table, the column that says when its row was last touched, a new value, the field it flags)
TOUCHED_AFTER = [
    ("payments_goms", "updated_at", {"payment_status": "REFUNDED"}, "payment_status"),
    ("transaction_payout", "updated_at", {"status": "COMPLETED"}, "payout_status"),
    ("lulu_data", "updated_at", {"sub_status": "CREDITED"}, "lulu_status"),
    ("transfer_rfi", "modified_at", {"status": "VERIFIED"}, "rfi_status"),
    ("fulfillments_goms", "updated_at", {}, "trm_seconds"),
]
UNTRACKED = [("falcon_transactions_v2", "falcon_status"), ("uae_manual_payments", "manual_payment_status"),
             ("checkout_payment_data", "checkout_status"), ("rda_fulfillments", "rda_status")]


@pytest.fixture(scope="module")
def cases_at_t(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.Series]:
    """Build the warehouse of every case and take its snapshot at T once: case -> that order's row."""
    from ecm_pipeline.demo import SCHEMA, write_warehouse

    columns = {name: [c.split()[0] for c in spec.split(", ")] for name, spec in SCHEMA.items()}
    tables: dict[str, list[tuple]] = {name: [] for name in SCHEMA}
    cases = (["baseline"] + [f"created:{t}" for t, _, _ in CREATED_AFTER] + [f"touched:{t}" for t, *_ in TOUCHED_AFTER]
             + ["moved"])
    orders = {case: (f"AE{i:08d}00", f"FT{i:08d}") for i, case in enumerate(cases)}
    for case, (order, txn) in orders.items():
        rows = order_rows(order, txn)
        kind, _, table = case.partition(":")
        if kind == "created":
            make = next(row for t, row, _ in CREATED_AFTER if t == table)
            rows[table].append(make(order, txn))
        elif kind == "touched":
            _, touched, change, _ = next(c for c in TOUCHED_AFTER if c[0] == table)
            record = dict(zip(columns[table], rows[table][0], strict=True)) | {touched: AFTER} | change
            rows[table][0] = tuple(record[c] for c in columns[table])
        elif case == "moved":   # the order itself changed after T: so may the sources without a change time
            record = dict(zip(columns["orders_goms"], rows["orders_goms"][0], strict=True)) | {"updated_at": AFTER}
            rows["orders_goms"][0] = tuple(record[c] for c in columns["orders_goms"])
        for name, values in rows.items():
            tables[name] += values
    path = tmp_path_factory.mktemp("cases") / "cases.duckdb"
    write_warehouse({name: pd.DataFrame(values, columns=columns[name]) for name, values in tables.items()}, path)
    snapshot = snap(path, T).candidates.set_index("order_id")
    return {case: snapshot.loc[order] for case, (order, _) in orders.items()}


@pytest.mark.parametrize(("table", "row", "fields"), CREATED_AFTER, ids=[c[0] for c in CREATED_AFTER])
def test_a_row_created_after_the_tick_never_counts(cases_at_t, table: str, row, fields: list[str]) -> None:
    baseline, later = cases_at_t["baseline"], cases_at_t[f"created:{table}"]
    assert later[fields].tolist() == baseline[fields].tolist()
    assert later["approximate_fields"] == baseline["approximate_fields"] == ""
    assert not later["ftv_transaction_id"].startswith("FT9")   # the later Falcon transaction is not its own


@pytest.mark.parametrize(("table", "touched", "change", "field"), TOUCHED_AFTER, ids=[c[0] for c in TOUCHED_AFTER])
def test_a_row_touched_only_after_the_tick_makes_the_order_approximate(cases_at_t, table: str, touched: str,
                                                                      change: dict, field: str) -> None:
    assert field in cases_at_t[f"touched:{table}"]["approximate_fields"].split(",")


@pytest.mark.parametrize(("table", "field"), UNTRACKED, ids=[c[0] for c in UNTRACKED])
def test_sources_without_a_change_time_are_approximate_once_the_order_moved(cases_at_t, table: str,
                                                                           field: str) -> None:
    assert cases_at_t["baseline"]["approximate_fields"] == ""
    assert field in cases_at_t["moved"]["approximate_fields"].split(",")
