"""The warehouse on a real PostgreSQL server (the closest stand-in for Redshift, started by the
fixture from the `pgserver` wheel): the same `sql/` files give the same snapshot as on DuckDB,
sessions are read-only with a statement timeout, and bad credentials, an unreachable host and a
timeout each give a clear error that never contains the password."""

from __future__ import annotations

import socket
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from ecm_pipeline.assets import triage_assets
from ecm_pipeline.checks import quality_gates
from ecm_pipeline.demo import generate_demo
from ecm_pipeline.domain.classification import classify
from ecm_pipeline.partitions import as_of_utc, live_tick_key
from ecm_pipeline.resources import environment_resources
from ecm_pipeline.resources.warehouse import UnsafeQueryError, WarehouseError, WarehouseResource
from ecm_pipeline.settings import load_settings
from ecm_pipeline.snapshot import take_snapshots
from ecm_pipeline_tests.conftest import QUIET, READER, READER_PASSWORD

ANCHOR = datetime(2026, 11, 21, 10, 0)
def test_same_sql_same_snapshot_on_postgres_and_duckdb(pg, demo_warehouse) -> None:
    settings = load_settings()
    ticks = [ANCHOR, ANCHOR - timedelta(days=2)]
    both_pg = take_snapshots(WarehouseResource(url=pg["url"]), ticks, settings)
    both_duck = take_snapshots(WarehouseResource(url=f"duckdb:///{demo_warehouse}"), ticks, settings)
    for tick in ticks:
        assert both_pg[tick].approximate_orders == both_duck[tick].approximate_orders
        assert both_pg[tick].reason() == both_duck[tick].reason()
    on_pg, on_duck = both_pg[ANCHOR], both_duck[ANCHOR]
    assert on_pg.mode == on_duck.mode == "exact"
    assert len(on_pg.candidates) == len(on_duck.candidates) > 300
    columns = ["order_id", "status", "sub_state", "currency", "payment_status", "has_completed_payment",
               "payment_attempts", "falcon_status", "lulu_status", "payout_status", "partner_class", "rfi_status",
               "has_trm", "rda_status", "time_bucket", "category"]
    left = on_pg.candidates[columns].sort_values("order_id").reset_index(drop=True)
    right = on_duck.candidates[columns].sort_values("order_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(left, right, check_dtype=False)
    reasons = classify(on_pg.candidates).set_index("order_id")["stuck_reason"].sort_index()
    assert reasons.equals(classify(on_duck.candidates).set_index("order_id")["stuck_reason"].sort_index())
    assert sorted(on_pg.excluded["order_id"]) == sorted(on_duck.excluded["order_id"])


def test_sessions_are_read_only_even_past_the_guard(pg) -> None:
    resource = WarehouseResource(url=pg["admin_url"])  # a superuser: only the session protects
    resource.query("SELECT 1 AS ok")
    with resource._get_engine().connect() as conn:
        conn = conn.execution_options(postgresql_readonly=True)
        with pytest.raises(sa.exc.DBAPIError, match="read-only transaction"):
            conn.exec_driver_sql("CREATE TABLE should_not_exist (a INT)")
    with resource._get_engine().connect() as conn:   # read-only even without the transaction mode
        assert conn.exec_driver_sql("SHOW default_transaction_read_only").scalar() == "on"
        assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "2min"
        with pytest.raises(sa.exc.DBAPIError, match="read-only transaction"):
            conn.exec_driver_sql("CREATE TABLE should_not_exist (a INT)")


@pytest.mark.parametrize("statement", ["DELETE FROM orders_goms", "SELECT 1; DROP TABLE orders_goms",
                                       "UPDATE orders_goms SET status = 'X'"])
def test_a_non_select_never_reaches_the_server(pg, statement: str) -> None:
    resource = WarehouseResource(url=pg["admin_url"])
    with pytest.raises(UnsafeQueryError):
        resource.query(statement)
    assert resource._engine is None  # refused before any connection was opened
    count = WarehouseResource(url=pg["url"]).query("SELECT COUNT(*) AS n FROM orders_goms")["n"].iloc[0]
    assert count > 0


def test_statement_timeout_is_enforced_with_a_clear_error(pg) -> None:
    resource = WarehouseResource(url=pg["url"], statement_timeout_seconds=1)
    with pytest.raises(WarehouseError, match="exceeded the statement timeout of 1 s"):
        resource.query("SELECT pg_sleep(3) AS slept")


def test_bad_credentials_are_named_without_the_password(pg) -> None:
    url = pg["url"].replace(READER_PASSWORD, "wrong-Secret-123")
    with pytest.raises(WarehouseError, match=f"refused the credentials of user '{READER}'") as info:
        WarehouseResource(url=url).query("SELECT 1 AS ok")
    assert "wrong-Secret-123" not in str(info.value) and READER_PASSWORD not in str(info.value)


def test_unreachable_host_is_a_clear_error_without_the_password() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    resource = WarehouseResource(host="127.0.0.1", port=port, user="reader", password="Hidden-Pw-9",
                                 database="dev", connect_timeout_seconds=2)
    with pytest.raises(WarehouseError, match=f"cannot reach the warehouse at 127.0.0.1:{port}") as info:
        resource.query("SELECT 1 AS ok")
    assert "Hidden-Pw-9" not in str(info.value) and "Hidden-Pw-9" not in resource.describe()
    assert resource.describe().startswith("redshift+psycopg2://reader:***@127.0.0.1")


def _run(key: str, warehouse: WarehouseResource) -> tuple[dg.ExecuteInProcessResult, dg.DagsterInstance]:
    instance = dg.DagsterInstance.ephemeral()
    resources = {**environment_resources(), "warehouse": warehouse}
    result = dg.materialize([*triage_assets, *quality_gates], partition_key=key, resources=resources,
                            instance=instance, raise_on_error=False, run_config=QUIET)
    return result, instance


def test_the_triage_runs_on_postgres(pg, ecm_env: Path) -> None:
    key = "2026-11-21-14:00"   # the tick the session's PostgreSQL data was generated for
    generate_demo(ecm_env, seed=7, anchor=ANCHOR, scale=0.05)  # the sheet; the data comes from pg
    result, _ = _run(key, WarehouseResource(url=pg["url"]))
    assert result.success
    for asset in ("stuck_orders", "qualified_orders", "scored_orders"):
        assert len(pd.read_parquet(ecm_env / "lake" / asset / f"{key}.parquet")) > 100, asset


def test_a_failing_run_never_shows_the_password(pg, ecm_env: Path) -> None:
    key = live_tick_key()
    generate_demo(ecm_env, seed=7, anchor=as_of_utc(key), scale=0.05)
    secret = "Run-Secret-Pw-42"
    result, instance = _run(key, WarehouseResource(url=pg["url"].replace(READER_PASSWORD, secret)))
    assert not result.success
    texts = [entry.user_message or "" for entry in instance.all_logs(result.run_id)]
    texts += [str(entry.dagster_event) for entry in instance.all_logs(result.run_id) if entry.dagster_event]
    joined = "\n".join(texts)
    assert "refused the credentials" in joined
    assert secret not in joined


@pytest.mark.parametrize("fault", ["connection refused", "statement timeout"])
def test_a_warehouse_fault_fails_clearly_and_a_rerun_completes_without_duplicates(pg, demo_env, fault) -> None:
    home, key = demo_env  # the sheet and the data of the demo; the warehouse is the session's PostgreSQL
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    broken = (WarehouseResource(host="127.0.0.1", port=port, user="reader", password="x", database="dev")
              if fault == "connection refused" else WarehouseResource(url=pg["url"], statement_timeout_seconds=0.001))
    result, instance = _run(key, broken)
    assert not result.success
    error = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
    message = (error.cause or error).message
    expected = "cannot reach the warehouse" if fault == "connection refused" else "exceeded the statement timeout"
    assert expected in message

    from ecm_pipeline.resources.sheet import LocalSheetStore

    again, _ = _run(key, WarehouseResource(url=f"duckdb:///{home / 'warehouse.duckdb'}"))
    assert again.success
    tab = LocalSheetStore(str(home / "sheet.sqlite")).read_tab("Assignments")
    open_rows = tab[tab["Status"].isin(["OPEN", "IN_PROGRESS", "ESCALATED"])]
    assert not open_rows["Order ID"].duplicated().any()
    assert (tab["Triage Run"] == key).sum() > 0
