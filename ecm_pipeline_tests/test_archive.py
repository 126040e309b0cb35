"""The Sheet as months pass (issue: archiving): closed tickets past the retention leave the
Assignments tab for a yearly archive tab and the lake, each exactly once, also when the run is
killed in the middle of the move; open and recent tickets stay; the tabs' tickets are in the lake."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from ecm_pipeline.archive import every_ticket
from ecm_pipeline.assets.archive import ticket_archive
from ecm_pipeline.domain.tickets import ASSIGNMENT_COLUMNS, archivable, archive_tab, first_ticket_at
from ecm_pipeline.resources import environment_resources
from ecm_pipeline.resources.lake import LakeResource
from ecm_pipeline.resources.sheet import LocalSheetStore
from ecm_pipeline_tests.conftest import QUIET

PROJECT_ROOT = Path(__file__).resolve().parents[1]

OLD_CLOSED, RECENT_CLOSED = 300_000, 40


def closed_rows(n: int, prefix: str, assigned: pd.Timestamp) -> pd.DataFrame:
    stamp = assigned.tz_localize("UTC").tz_convert("Asia/Dubai").strftime("%Y-%m-%d %H:%M:%S%z")
    return pd.DataFrame({"Order ID": [f"{prefix}{i:09d}" for i in range(n)],
                         "Assigned Agent": "amira.haddad@aspora.example", "Assigned At": stamp, "Status": "RESOLVED",
                         "Priority": "P3", "Currency": "AED", "Amount": "120.00", "Hours Stuck": "30.0",
                         "Diagnosis": "stuck_at_lulu", "Notes": "", "Triage Run": "2026-06-01-07:00"},
                        columns=list(ASSIGNMENT_COLUMNS))


def seeded(home: Path) -> Path:
    """The demo's sheet with 300,000 closed tickets assigned 90 days ago and 40 closed 5 days ago."""
    now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    rows = pd.concat([closed_rows(OLD_CLOSED, "ARC", now - pd.Timedelta(days=90)),
                      closed_rows(RECENT_CLOSED, "NEW", now - pd.Timedelta(days=5))])
    path = home / "sheet.sqlite"
    with sqlite3.connect(path) as con:   # straight in, as the Sheet would hold them
        names = ", ".join(f'"{c}"' for c in ASSIGNMENT_COLUMNS)
        con.executemany(f"INSERT INTO Assignments ({names}) VALUES ({', '.join('?' * len(ASSIGNMENT_COLUMNS))})",
                        rows.itertuples(index=False, name=None))
    return path


def archive_run(key: str) -> dg.ExecuteInProcessResult:
    """The live tick's archive step, as the triage job runs it after the assignment."""
    return dg.materialize([ticket_archive], partition_key=key, resources=environment_resources(),
                          instance=dg.DagsterInstance.ephemeral(), run_config=QUIET)


def state(home: Path) -> tuple[set, set, int, int]:
    """(order ids in Assignments, in the archive tab, rows in the archive tab, rows in the lake's archive)."""
    store = LocalSheetStore(home / "sheet.sqlite")
    year = (pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=90)).year
    tabs = store.read_tabs(["Assignments", archive_tab(year)])
    lake = pd.concat(pd.read_parquet(p) for p in (home / "lake" / "archived_tickets").glob("*.parquet"))
    assert not lake.duplicated(["Order ID", "Triage Run"]).any()
    archived = tabs[archive_tab(year)]
    assert not archived.duplicated(["Order ID", "Triage Run"]).any()
    assert set(lake["Order ID"]) == set(archived["Order ID"])
    return set(tabs["Assignments"]["Order ID"]), set(archived["Order ID"]), len(archived), len(lake)


@pytest.mark.slow
def test_old_closed_tickets_leave_the_tab_once_even_when_the_run_is_killed(demo_env, tmp_path: Path) -> None:
    home, key = demo_env
    seeded(home)
    open_before = LocalSheetStore(home / "sheet.sqlite").read_tab("Assignments")
    open_before = set(open_before.loc[open_before["Status"] != "RESOLVED", "Order ID"])
    pristine = tmp_path / "pristine.sqlite"
    shutil.copy(home / "sheet.sqlite", pristine)

    # A run killed between the copy to the archive tab and the delete from Assignments ...
    run = subprocess.Popen([sys.executable, "-m", "dagster", "asset", "materialize", "-m", "ecm_pipeline.definitions",
                            "--select", "archived_tickets,archived_resolutions,ticket_history", "--partition", key],
                           cwd=PROJECT_ROOT,
                           env={**os.environ, "ECM_HOME": str(home)}, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    year = (pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=90)).year
    deadline = time.monotonic() + 300
    while run.poll() is None and time.monotonic() < deadline:
        try:
            with sqlite3.connect(home / "sheet.sqlite", timeout=1) as con:
                copied = con.execute(f'SELECT COUNT(*) FROM "{archive_tab(year)}"').fetchone()[0]
        except sqlite3.OperationalError:
            copied = 0
        if copied:
            run.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    run.wait(timeout=60)
    assert run.returncode == -signal.SIGKILL, "the run ended before it could be killed mid-archive"
    working, archived, _, _ = state(home)
    assert len(archived) == OLD_CLOSED and archived <= working          # in both places, lost nowhere

    # ... and the next run finishes the move, without a second copy anywhere.
    assert archive_run(key).success
    after_kill = state(home)
    working, archived, archive_rows, lake_rows = after_kill
    assert archive_rows == lake_rows == OLD_CLOSED
    assert not any(o.startswith("ARC") for o in working)
    assert sum(o.startswith("NEW") for o in working) == RECENT_CLOSED      # recent closed tickets stay
    assert open_before <= working                                          # open tickets stay
    history = pd.read_parquet(home / "lake" / "ticket_history" / f"{key}.parquet")
    assert len(history[history["tab"] == "Assignments"]) == len(working)
    # What needs every ticket ever assigned (the history's self-heal test) still finds archived ones.
    tab = LocalSheetStore(home / "sheet.sqlite").read_tab("Assignments")
    first = first_ticket_at(every_ticket(LakeResource(url=str(home / "lake")), tab))
    assert first.index.str.startswith("ARC").sum() == OLD_CLOSED

    # The same end state as one run that was never interrupted.
    shutil.copy(pristine, home / "sheet.sqlite")
    shutil.rmtree(home / "lake" / "archived_tickets")
    for lock in home.glob("sheet.sqlite.*.lock"):
        lock.unlink()
    assert archive_run(key).success
    assert state(home) == after_kill
    assert len(LocalSheetStore(home / "sheet.sqlite").read_tab("Assignments")) == len(working)


@pytest.mark.parametrize(("assigned_days", "resolved_days", "archived"), [
    (40, None, True), (20, None, False), (40, 10, False), (40, 31, True),
])
def test_the_last_change_decides(assigned_days: int, resolved_days: int | None, archived: bool) -> None:
    now = pd.Timestamp("2026-11-29 10:00")
    tab = closed_rows(1, "X", now - pd.Timedelta(days=assigned_days)).assign(_row=2)
    resolutions = pd.DataFrame({"Timestamp": [] if resolved_days is None else [
        (now - pd.Timedelta(days=resolved_days)).tz_localize("UTC").strftime("%Y-%m-%d %H:%M:%S%z")],
        "Order ID": [] if resolved_days is None else ["X000000000"],
        "Triage Run": [] if resolved_days is None else ["2026-06-01-07:00"]})
    assert len(archivable(tab, resolutions, now, 30)) == int(archived)


def test_on_google_sheets_each_year_is_archived_in_a_spreadsheet_of_its_own(demo_env) -> None:
    """Google's cell limit is per spreadsheet: last year's archive is the one a manager made and
    listed in the Archive Spreadsheets tab, this year's is created and listed by the run. A
    refused creation stops the move with a one-line how-to and loses nothing; a lost append
    response is not repeated; a re-run changes nothing."""
    from ecm_pipeline.domain.tickets import ARCHIVE_INDEX_COLUMNS, ARCHIVE_INDEX_TAB, RESOLUTION_COLUMNS
    from ecm_pipeline.resources.google_sheet import GoogleSheetResource
    from ecm_pipeline_tests.fakes.sheets_server import FakeSheets, service_account_key
    from ecm_pipeline_tests.test_google_sheet import seed_from_demo, tab

    home, key = demo_env
    now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    this_year, last_year = now - pd.Timedelta(days=90), now - pd.Timedelta(days=400)
    fake = FakeSheets().start()
    try:
        seed_from_demo(fake, home)
        old = [closed_rows(1_500, "ARC", this_year), closed_rows(300, "OLD", last_year),
               closed_rows(20, "NEW", now - pd.Timedelta(days=5))]
        fake.tabs["Assignments"] += [r for frame in old for r in frame.values.tolist()]
        # Resolutions of 100 old tickets follow them to the archive; those of recent ones stay.
        resolved = pd.concat([old[0].head(100), old[2].head(10)])
        fake.add_tab("Resolutions", [list(RESOLUTION_COLUMNS), *[
            [r["Assigned At"], r["Order ID"], r["Assigned Agent"], "done", r["Assigned At"], "60", "480", "MET",
             "stuck_at_lulu", "120.00", "AED", "", "", "AGENT_RESOLVED", r["Triage Run"]]
            for r in resolved.to_dict("records")]])
        before = tab(fake)
        made_by_hand = FakeSheets(spreadsheet_id="hand-made", title="ECM archive (by hand)")
        made_by_hand.add_tab(archive_tab(last_year.year), [list(ASSIGNMENT_COLUMNS)])
        fake.spreadsheets["hand-made"] = made_by_hand
        fake.add_tab(ARCHIVE_INDEX_TAB, [list(ARCHIVE_INDEX_COLUMNS), [str(last_year.year), " hand-made ", ""]])
        key_json = json.dumps(service_account_key(f"{fake.url}/token"))
        resources = {**environment_resources(), "sheet": GoogleSheetResource(
            spreadsheet_id=fake.spreadsheet_id, service_account_json=key_json, api_endpoint=fake.url,
            backoff_seconds=0)}

        def run() -> dg.ExecuteInProcessResult:
            return dg.materialize([ticket_archive], partition_key=key, resources=resources, raise_on_error=False,
                                  instance=dg.DagsterInstance.ephemeral(), run_config=QUIET)

        made_by_hand.drop_next_append()           # last year's copy lands, but its answer is lost
        fake.refuse_create = (403, "The user's Drive storage quota has been exceeded.")
        refused = run()
        assert not refused.success
        error = refused.get_step_failure_events()[0].step_failure_data.error.cause
        assert "Drive storage quota" in error.message and f"Year {this_year.year}" in error.message
        assert "Archive Spreadsheets" in error.message
        pd.testing.assert_frame_equal(tab(fake), before)                        # nothing left the tab

        assert len(made_by_hand.calls("append")) == 1       # and it was not repeated
        fake.refuse_create = None
        assert run().success
        [created] = [b for i, b in fake.spreadsheets.items() if i != "hand-made"]
        this_tab, last_tab = archive_tab(this_year.year), archive_tab(last_year.year)
        resolutions_tab = archive_tab(this_year.year, "Resolutions")
        assert list(created.tabs) == [this_tab, resolutions_tab]
        assert created.grid(this_tab)[1] == len(ASSIGNMENT_COLUMNS)
        assert created.grid(resolutions_tab)[1] == len(RESOLUTION_COLUMNS)
        assert sorted(r[1] for r in created.rows(resolutions_tab)[1:]) == sorted(old[0]["Order ID"].head(100))
        assert sorted(r[1] for r in fake.rows("Resolutions")[1:]) == sorted(old[2]["Order ID"].head(10))
        lake_resolutions = pd.read_parquet(home / "lake" / "archived_resolutions")
        assert sorted(lake_resolutions["Order ID"]) == sorted(old[0]["Order ID"].head(100))
        assert created.title == f"{fake.title} — {this_tab}"
        index = fake.rows(ARCHIVE_INDEX_TAB)[1:]
        assert [r[:2] for r in index] == [[str(last_year.year), " hand-made "],
                                          [str(this_year.year), created.spreadsheet_id]]

        def archived_ids(book: FakeSheets, name: str) -> list[str]:
            rows = book.rows(name)
            assert rows[0] == list(ASSIGNMENT_COLUMNS)
            return [r[0] for r in rows[1:]]

        assert sorted(archived_ids(created, this_tab)) == sorted(old[0]["Order ID"])
        assert sorted(archived_ids(made_by_hand, last_tab)) == sorted(old[1]["Order ID"])
        working = tab(fake)
        assert not working["Order ID"].str.match("ARC|OLD").any()
        assert len(working) == len(before) - 1_800 and working["Order ID"].str.startswith("NEW").sum() == 20
        lake = pd.concat(pd.read_parquet(p) for p in (home / "lake" / "archived_tickets").glob("*.parquet"))
        assert len(lake) == 1_800 and not lake.duplicated(["Order ID", "Triage Run"]).any()

        snapshot = (tab(fake), created.rows(this_tab), made_by_hand.rows(last_tab), fake.rows(ARCHIVE_INDEX_TAB),
                    created.rows(resolutions_tab), fake.rows("Resolutions"))
        assert run().success
        assert len(fake.spreadsheets) == 2
        again = (tab(fake), created.rows(this_tab), made_by_hand.rows(last_tab), fake.rows(ARCHIVE_INDEX_TAB),
                 created.rows(resolutions_tab), fake.rows("Resolutions"))
        pd.testing.assert_frame_equal(again[0], snapshot[0])
        assert again[1:] == snapshot[1:]
    finally:
        fake.stop()
