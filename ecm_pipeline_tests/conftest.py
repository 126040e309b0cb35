"""Shared fixtures: snapshot rows for the pure rules, and real generated demo environments."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from ecm_pipeline.demo import generate_demo
from ecm_pipeline.partitions import as_of_utc, current_partition_key

_EXIT_STATUS = pytest.StashKey[int]()

SNAPSHOT_DEFAULTS: dict[str, object] = {
    "order_id": "AE0000000000",
    "owner_id": "U1",
    "status": "PROCESSING_DEAL_IN",
    "sub_state": "FULFILLMENT_PENDING",
    "currency": "AED",
    "send_amount": 1000.0,
    "receive_amount": 23000.0,
    "acquirer": "CHECKOUT",
    "created_at": pd.Timestamp("2026-11-20 00:00:00"),
    "updated_at": pd.Timestamp("2026-11-20 00:00:00"),
    "payment_status": "COMPLETED",
    "has_completed_payment": True,
    "payment_attempts": 1,
    "falcon_status": None,
    "ftv_transaction_id": None,
    "has_lulu": False,
    "lulu_status": None,
    "lulu_main_status": None,
    "lulu_client": None,
    "has_payout": False,
    "payout_status": None,
    "payout_partner": None,
    "partner_class": None,
    "has_rfi": False,
    "rfi_status": None,
    "rfi_type": None,
    "rfi_created_at": pd.NaT,
    "rfi_modified_at": pd.NaT,
    "manual_payment_status": None,
    "checkout_status": None,
    "has_trm": False,
    "trm_seconds": None,
    "rda_status": None,
    "hours_stuck": 30.0,
    "time_bucket": "24_hr_bucket",
    "category": "action_required",
    "amount_aed": 1000.0,
}


def bucket_for(hours: float) -> str:
    if 12 <= hours <= 24:
        return "12_hr_bucket"
    if 24 < hours <= 48:
        return "24_hr_bucket"
    return "48_hr_bucket" if hours > 48 else "0_bucket"


def snapshot_rows(*rows: dict) -> pd.DataFrame:
    """Snapshot rows (as `stuck_orders` holds them) from a few overrides each; presence flags follow
    the values unless given."""
    records = []
    for i, overrides in enumerate(rows):
        row = {**SNAPSHOT_DEFAULTS, "order_id": f"AE{i:08d}00", **overrides}
        if "time_bucket" not in overrides:
            row["time_bucket"] = bucket_for(row["hours_stuck"])
        for flag, source in (("has_lulu", "lulu_status"), ("has_payout", "payout_status"),
                             ("has_rfi", "rfi_status")):
            if flag not in overrides:
                row[flag] = row[source] is not None
        records.append(row)
    return pd.DataFrame.from_records(records)


@pytest.fixture
def ecm_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ECM_HOME and DAGSTER_HOME for one test."""
    home = tmp_path / "ecm"
    monkeypatch.setenv("ECM_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    (tmp_path / "dagster").mkdir()
    return home


@pytest.fixture
def demo_env(ecm_env: Path) -> Iterator[tuple[Path, str]]:
    """A generated demo (seed 7) ending at the latest tick, so its briefing may be posted."""
    key = current_partition_key()
    generate_demo(ecm_env, seed=7, anchor=as_of_utc(key))
    yield ecm_env, key


@pytest.fixture(scope="session")
def demo_tables() -> dict[str, pd.DataFrame]:
    from ecm_pipeline.demo import generate_tables

    return generate_tables(seed=7, anchor=datetime(2026, 11, 21, 10, 0))


@pytest.fixture(scope="session")
def demo_warehouse(tmp_path_factory: pytest.TempPathFactory, demo_tables) -> Path:
    from ecm_pipeline.demo import write_warehouse

    path = tmp_path_factory.mktemp("warehouse") / "warehouse.duckdb"
    write_warehouse(demo_tables, path)
    return path


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    # DuckDB 2.0's nanobind bindings print "leaked instance" noise at interpreter shutdown, after
    # pytest's closing summary (integration notes §5.3: harmless). Leave once pytest is done, so the
    # summary line stays the last thing a test run prints.
    if _EXIT_STATUS in config.stash:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(config.stash[_EXIT_STATUS])
