"""The assignment store: the "ECM Operations" Sheet. Local default: `$ECM_HOME/sheet.sqlite`, one
table per tab with the Sheet's headers, every cell stored as the raw text written."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import dagster as dg
import pandas as pd

from ecm_pipeline.settings import ecm_home

AGENT_COLUMNS = ["Email", "Name", "Team", "Slack Handle", "Active", "Max Tickets"]
ASSIGNMENT_COLUMNS = [
    "Order ID", "Assigned Agent", "Assigned At", "Status", "Priority", "Currency", "Amount",
    "Hours Stuck", "Diagnosis", "Notes", "Triage Run",
]
TABS = {"Agents": AGENT_COLUMNS, "Assignments": ASSIGNMENT_COLUMNS}


class SheetError(Exception):
    """The store cannot be read or written; the message says which tab and why."""


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class LocalSheetStore:
    """SQLite stand-in for the Google Sheet with the same read/append interface."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return sqlite3.connect(self.path)

    def ensure_tabs(self) -> None:
        with closing(self._connect()) as conn, conn:
            for tab, columns in TABS.items():
                cols = ", ".join(f"{_quote(c)} TEXT" for c in columns)
                conn.execute(f"CREATE TABLE IF NOT EXISTS {_quote(tab)} ({cols})")

    def reset(self) -> None:
        with closing(self._connect()) as conn, conn:
            for tab in TABS:
                conn.execute(f"DROP TABLE IF EXISTS {_quote(tab)}")
        self.ensure_tabs()

    def read_tab(self, tab: str) -> pd.DataFrame:
        """All rows of a tab as text (blank cells as ""), in sheet order."""
        if not self.path.exists():
            raise SheetError(f"no sheet at {self.path}: run `ecm demo` to create the demo sheet")
        self.ensure_tabs()
        with closing(self._connect()) as conn:
            frame = pd.read_sql_query(f"SELECT * FROM {_quote(tab)} ORDER BY rowid", conn, dtype=str)
        return frame.fillna("")

    def append_rows(self, tab: str, rows: pd.DataFrame) -> int:
        """Append rows in one transaction; values are stored as text, never interpreted."""
        columns = TABS[tab]
        if rows.empty:
            return 0
        missing = [c for c in columns if c not in rows.columns]
        if missing:
            raise SheetError(f"{tab}: rows to append lack columns {missing}")
        values = rows[columns].astype("object").where(rows[columns].notna(), "").astype(str)
        placeholders = ", ".join("?" for _ in columns)
        self.ensure_tabs()
        with closing(self._connect()) as conn, conn:
            conn.executemany(
                f"INSERT INTO {_quote(tab)} ({', '.join(_quote(c) for c in columns)}) VALUES ({placeholders})",
                values.itertuples(index=False, name=None),
            )
        return len(values)


class AssignmentStoreResource(dg.ConfigurableResource):
    """What the assets need from the assignment store, whichever backs it: `store()` returns an
    object with `read_tab`, `append_rows` and `ensure_tabs`; `describe()` and `check()` serve `ecm check`."""

    def store(self):
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def check(self) -> str:
        raise NotImplementedError


class SheetResource(AssignmentStoreResource):
    """The local assignment store: SQLite at `$ECM_HOME/sheet.sqlite`."""

    path: str = ""

    def store(self) -> LocalSheetStore:
        return LocalSheetStore(self.path or str(ecm_home() / "sheet.sqlite"))

    def describe(self) -> str:
        return f"local sheet {self.store().path}"

    def check(self) -> str:
        store = self.store()
        agents, tickets = store.read_tab("Agents"), store.read_tab("Assignments")
        return f"{self.describe()}: {len(agents)} agents, {len(tickets)} assignment rows"
