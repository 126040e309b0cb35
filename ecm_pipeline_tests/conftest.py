"""Shared fixtures: snapshot rows for the pure rules, and real generated demo environments (each
demo is generated once per session and copied into the test's own ECM_HOME)."""

from __future__ import annotations

import io
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

# Settings the whole test session runs with, set before ecm_pipeline is imported (the partitions
# and retry policies are built at import): no settle delays or Slack retry waits, and a go-live
# date early enough for every tick the tests use. Each key is documented in settings.yaml.
_SETTINGS = Path(tempfile.mkdtemp(prefix="ecm-test-settings-")) / "settings.yaml"
TEST_SETTINGS = (
    "schedule: {go_live: '2026-01-01-07:00'}\n"
    "sheet: {settle_seconds: 0, lock_timeout_seconds: 20}\n"
    "slack: {retries: 1, retry_delay_seconds: 0}\n"
    # The daily reports only where a test asks for them (`daily_reports`): which tick is live
    # depends on the hour the suite runs.
    "reports: {daily_tick: null}\n"
)
_SETTINGS.write_text(TEST_SETTINGS)
os.environ["ECM_SETTINGS"] = str(_SETTINGS)
# Runs in tests log warnings and errors only: Dagster's debug lines cost time and say nothing here.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from ecm_pipeline.demo import SCHEMA, generate_demo  # noqa: E402
from ecm_pipeline.partitions import as_of_utc, live_tick_key  # noqa: E402

_EXIT_STATUS = pytest.StashKey[int]()
_RAM_BASETEMP = pytest.StashKey[str]()

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
def settings_overlay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Run this test with these settings (YAML) on top of the session's."""
    def overlay(extra: str) -> None:
        path = tmp_path / "settings.yaml"
        path.write_text(TEST_SETTINGS + extra)
        monkeypatch.setenv("ECM_SETTINGS", str(path))
    return overlay


@pytest.fixture(scope="session")
def live_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The seed-7 demo ending at the live tick, generated once per session (a template to copy)."""
    key = live_tick_key()
    home = tmp_path_factory.mktemp("live-demo")
    generate_demo(home, seed=7, anchor=as_of_utc(key))
    return home, key


@pytest.fixture(scope="session")
def small_live_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A smaller demo (seed 11, 60 % of the volume) ending at the live tick, once per session."""
    key = live_tick_key()
    home = tmp_path_factory.mktemp("small-demo")
    generate_demo(home, seed=11, anchor=as_of_utc(key), scale=0.6)
    return home, key


def copy_demo(template: Path, home: Path) -> Path:
    shutil.copytree(template, home, dirs_exist_ok=True)
    return home


@pytest.fixture
def demo_env(ecm_env: Path, live_demo: tuple[Path, str]) -> Iterator[tuple[Path, str]]:
    """A fresh copy of the seed-7 demo ending at the live tick, so its briefing may be posted."""
    template, key = live_demo
    yield copy_demo(template, ecm_env), key


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


# --- a real PostgreSQL (the closest stand-in for Redshift), from the pgserver wheel ---------------

READER, READER_PASSWORD = "ecm_reader", "reader-Pa55-word"
PG_TYPES = {"VARCHAR": "VARCHAR", "DOUBLE": "DOUBLE PRECISION", "TIMESTAMP": "TIMESTAMP"}


def load_tables(conn, tables: dict[str, pd.DataFrame]) -> None:
    """Create the contract tables and COPY the frames in (fast, set-based)."""
    with conn.cursor() as cur:
        for name, columns in SCHEMA.items():
            cur.execute(f"DROP TABLE IF EXISTS {name}")
            typed = ", ".join(f"{c.split()[0]} {PG_TYPES[c.split()[1]]}" for c in columns.split(", "))
            cur.execute(f"CREATE TABLE {name} ({typed})")
            frame = tables[name][[c.split()[0] for c in columns.split(", ")]]
            buffer = io.StringIO()
            frame.to_csv(buffer, index=False, header=False, na_rep="\\N", date_format="%Y-%m-%d %H:%M:%S")
            buffer.seek(0)
            cur.copy_expert(f"COPY {name} FROM STDIN WITH (FORMAT csv, NULL '\\N')", buffer)
    conn.commit()


def _grant_reader(conn, socket_dir: str, pgdata: Path) -> None:
    """A SELECT-only role that must authenticate with its password, as production's reader would."""
    with conn.cursor() as cur:
        cur.execute(f"DROP ROLE IF EXISTS {READER}")
        cur.execute(f"CREATE ROLE {READER} LOGIN PASSWORD '{READER_PASSWORD}'")
        cur.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {READER}")
    hba = pgdata / "pg_hba.conf"
    hba.write_text(f"local all {READER} scram-sha-256\n" + hba.read_text())
    with conn.cursor() as cur:
        cur.execute("SELECT pg_reload_conf()")
    conn.commit()


@pytest.fixture(scope="session")
def pg(tmp_path_factory: pytest.TempPathFactory, demo_tables) -> Iterator[dict]:
    import pgserver
    import psycopg2

    pgdata = tmp_path_factory.mktemp("pgdata")
    server = pgserver.get_server(str(pgdata), cleanup_mode="stop")
    socket_dir = sa.engine.make_url(server.get_uri()).query["host"]
    with psycopg2.connect(dbname="postgres", user="postgres", host=socket_dir) as conn:
        load_tables(conn, demo_tables)
        _grant_reader(conn, socket_dir, pgdata)
    yield {
        "url": f"postgresql+psycopg2://{READER}:{READER_PASSWORD}@/postgres?host={socket_dir}",
        "admin_url": f"postgresql+psycopg2://postgres@/postgres?host={socket_dir}",
        "socket_dir": socket_dir,
    }
    server.cleanup()


def pytest_configure(config: pytest.Config) -> None:
    # Every server the tests talk to is on 127.0.0.1; a proxy from the environment must not get in
    # the way (slack_sdk ignores NO_PROXY).
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        os.environ.pop(name, None)
    # Test files on a RAM disk where there is one: the SQLite instances and DuckDB files the tests
    # make would otherwise spend much of the suite's time waiting for fsync.
    if config.option.basetemp is None and Path("/dev/shm").is_dir() and not hasattr(config, "workerinput"):
        config.option.basetemp = tempfile.mkdtemp(prefix="ecm-tests-", dir="/dev/shm")
        config.stash[_RAM_BASETEMP] = config.option.basetemp


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    # DuckDB 2.0's nanobind bindings print "leaked instance" noise at interpreter shutdown, after
    # pytest's closing summary (integration notes §5.3: harmless). Leave once pytest is done, so the
    # summary line stays the last thing a test run prints.
    if _RAM_BASETEMP in config.stash:   # the RAM disk is not ours to fill: leave nothing behind
        shutil.rmtree(config.stash[_RAM_BASETEMP], ignore_errors=True)
    if _EXIT_STATUS in config.stash:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(config.stash[_EXIT_STATUS])
