"""The assignment store: the "ECM Operations" Sheet. Local default: `$ECM_HOME/sheet.sqlite`, one
table per tab with the Sheet's headers, every cell stored as the raw text written. Production: the
Google Sheet (`google_sheet.py`), behind the same interface.

What every store offers the pipeline, and why:
- one batch read of several tabs (a run reads each tab once per step);
- rows carry their position (`_row`), so a copy the pipeline itself wrote can be removed and a
  ticket's status changed as a compare-and-set: the change applies only if the row still holds
  what was read;
- a lock around read-plan-append on a tab, so two runs (or two ticks) racing cannot both assign an
  order. Locally it is an OS file lock, released by the kernel if the process dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing
from pathlib import Path

import dagster as dg
import pandas as pd

from ecm_pipeline.domain.tickets import ALL_TABS, TABS, archived_from, not_yet_in, tab_columns
from ecm_pipeline.settings import ecm_home

ROW = "_row"   # the row's position in its tab, as the store knows it


class SheetError(Exception):
    """The store cannot be read or written; the message says which tab and why."""


class SheetLockTimeout(SheetError):
    """Another run held the tab for longer than the lock timeout."""


def columns_of(tab: str) -> tuple[str, ...]:
    columns = tab_columns(tab)
    if columns is None:
        raise SheetError(f"{tab!r} is not a tab this project knows")
    return columns


def as_text(tab: str, rows: pd.DataFrame) -> pd.DataFrame:
    """The rows to write as strings in canonical column order; a value is never interpreted."""
    columns = list(columns_of(tab))
    missing = [c for c in columns if c not in rows.columns]
    if missing:
        raise SheetError(f"{tab}: rows to append lack columns {missing}")
    return rows[columns].astype("object").where(rows[columns].notna(), "").astype(str).reset_index(drop=True)


def _records(frame: pd.DataFrame) -> list[tuple]:
    """Rows as tuples of plain Python values, column by column (iterating Arrow-backed string
    rows one by one costs seconds at archive sizes)."""
    return list(zip(*(frame[c].tolist() for c in frame.columns), strict=True))


class AssignmentStore(ABC):
    """The Sheet's tabs as frames of text (blank cells as "") in sheet order, with `_row`."""

    # Whether a write can land after the call gave up on it (a remote API can; a local file cannot).
    late_writes = False

    @abstractmethod
    def describe(self) -> str: ...

    @abstractmethod
    def read_tabs(self, tabs: Sequence[str]) -> dict[str, pd.DataFrame]:
        """Several tabs in one read; a ledger tab that does not exist yet reads as empty."""

    def read_tab(self, tab: str) -> pd.DataFrame:
        return self.read_tabs([tab])[tab]

    @abstractmethod
    def append_rows(self, tab: str, rows: pd.DataFrame) -> int:
        """Append rows in one write; returns how many."""

    @abstractmethod
    def delete_rows(self, tab: str, rows: pd.DataFrame, key: Sequence[str]) -> int:
        """Delete the rows at `rows[_row]` whose `key` cells still hold what `rows` says; returns
        how many went. Call it under `lock(tab)`."""

    @abstractmethod
    def update_row(self, tab: str, row: int, expect: Mapping[str, str], values: Mapping[str, str]) -> bool:
        """Compare-and-set: write `values` into row `row` only if its cells still equal `expect`."""

    def update_rows(self, tab: str, rows: pd.DataFrame, expect: Sequence[str], values: Mapping[str, str]) -> int:
        """Compare-and-set on many rows: write `values` into each row at `rows[_row]` whose `expect`
        cells still hold what `rows` says; returns how many changed. Call it under `lock(tab)`."""
        return sum(self.update_row(tab, int(r[ROW]), {c: str(r[c]) for c in expect}, values)
                   for _, r in rows.iterrows())

    def append_once(self, tab: str, rows: pd.DataFrame, existing: pd.DataFrame) -> int:
        """Append the rows whose identity (`tickets.row_key`) is not in `existing` (the tab as just
        read, under `lock(tab)`); returns how many were appended. A copy that a remote store applies
        late is for `later_copies` to find on the next read."""
        return self.append_rows(tab, not_yet_in(as_text(tab, rows), existing, tab))

    def archive_store(self, year: int) -> AssignmentStore:
        """The store holding `archive_tab(year)`: this one, unless the store keeps each year's
        archive in a spreadsheet of its own. Call it under `lock("Assignments")`."""
        return self

    @abstractmethod
    def lock(self, tab: str, owner: str, timeout_seconds: float) -> contextlib.AbstractContextManager[None]:
        """Hold `tab` against every other run's `lock(tab)` for the duration of the block."""

    @abstractmethod
    def check(self) -> str: ...


class LocalSheetStore(AssignmentStore):
    """SQLite stand-in for the Google Sheet with the same interface."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def describe(self) -> str:
        return f"local sheet {self.path}"

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30)
        try:
            conn.execute("PRAGMA schema_version").fetchone()
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise SheetError(f"{self.path} is not a readable sheet ({exc}): restore it from a backup, or run "
                             "`ecm demo` to create a new demo sheet") from None
        return conn

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            with closing(self._connect()) as conn, conn:
                yield conn
        except sqlite3.OperationalError as exc:
            raise SheetError(f"{self.path}: {exc}") from None

    @staticmethod
    def _quote(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def _create(self, conn: sqlite3.Connection, tabs: Mapping[str, Sequence[str]]) -> None:
        for tab, columns in tabs.items():
            cols = ", ".join(f"{self._quote(c)} TEXT" for c in columns)
            conn.execute(f"CREATE TABLE IF NOT EXISTS {self._quote(tab)} ({cols})")

    def ensure_tabs(self) -> None:
        with self._transaction() as conn:
            self._create(conn, TABS)

    def reset(self) -> None:
        with self._transaction() as conn:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for tab in [t for t in tables if t in ALL_TABS or archived_from(t)]:
                conn.execute(f"DROP TABLE IF EXISTS {self._quote(tab)}")
            self._create(conn, TABS)

    def read_tabs(self, tabs: Sequence[str]) -> dict[str, pd.DataFrame]:
        if not self.path.exists():
            raise SheetError(f"no sheet at {self.path}: run `ecm demo` to create the demo sheet")
        out = {}
        with self._transaction() as conn:
            self._create(conn, {tab: columns_of(tab) for tab in tabs if tab in TABS})
            existing = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            for tab in tabs:
                columns = list(columns_of(tab))
                if tab not in existing:
                    out[tab] = pd.DataFrame({c: pd.Series(dtype=object) for c in [ROW, *columns]})
                    continue
                select = ", ".join(self._quote(c) for c in columns)
                frame = pd.read_sql_query(f"SELECT rowid AS {ROW}, {select} FROM {self._quote(tab)} ORDER BY rowid",
                                          conn, dtype={c: str for c in columns})
                out[tab] = frame.fillna({c: "" for c in columns})
        return out

    def append_rows(self, tab: str, rows: pd.DataFrame) -> int:
        if rows.empty:
            return 0
        values = as_text(tab, rows)
        columns = list(values.columns)
        placeholders = ", ".join("?" for _ in columns)
        with self._transaction() as conn:
            self._create(conn, {tab: columns_of(tab)})
            names = ", ".join(self._quote(c) for c in columns)
            conn.executemany(f"INSERT INTO {self._quote(tab)} ({names}) VALUES ({placeholders})", _records(values))
        return len(values)

    def delete_rows(self, tab: str, rows: pd.DataFrame, key: Sequence[str]) -> int:
        where = " AND ".join(f"COALESCE({self._quote(c)}, '') = ?" for c in key)
        records = _records(rows[[ROW, *key]].astype({ROW: int}))
        with self._transaction() as conn:
            before = conn.total_changes
            conn.executemany(f"DELETE FROM {self._quote(tab)} WHERE rowid = ? AND {where}", records)
            return conn.total_changes - before

    def update_row(self, tab: str, row: int, expect: Mapping[str, str], values: Mapping[str, str]) -> bool:
        assignments = ", ".join(f"{self._quote(c)} = ?" for c in values)
        where = " AND ".join(f"COALESCE({self._quote(c)}, '') = ?" for c in expect)
        with self._transaction() as conn:
            cursor = conn.execute(f"UPDATE {self._quote(tab)} SET {assignments} WHERE rowid = ? AND {where}",
                                  (*values.values(), int(row), *expect.values()))
            return cursor.rowcount == 1

    @contextlib.contextmanager
    def lock(self, tab: str, owner: str, timeout_seconds: float) -> Iterator[None]:
        """An exclusive OS lock on `<sheet>.<tab>.lock`: the kernel releases it if the process dies,
        so a killed run never leaves the tab held."""
        lock_path = self.path.with_name(f"{self.path.name}.{tab}.lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout_seconds
        with open(lock_path, "a+") as handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        handle.seek(0)
                        holder = handle.read().strip() or "another run"
                        raise SheetLockTimeout(f"{tab} is held by {holder} for longer than "
                                               f"{timeout_seconds:g} s ({lock_path})") from None
                    time.sleep(0.05)
            handle.seek(0)
            handle.truncate()
            handle.write(f"{owner} (pid {os.getpid()})")
            handle.flush()
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def check(self) -> str:
        tabs = self.read_tabs(["Agents", "Assignments"])
        return f"{self.describe()}: {len(tabs['Agents'])} agents, {len(tabs['Assignments'])} assignment rows"


class AssignmentStoreResource(dg.ConfigurableResource, ABC):
    """What the assets need from the assignment store, whichever backs it."""

    @abstractmethod
    def store(self) -> AssignmentStore: ...

    def describe(self) -> str:
        return self.store().describe()

    def check(self) -> str:
        return self.store().check()


class SheetResource(AssignmentStoreResource):
    """The local assignment store: SQLite at `$ECM_HOME/sheet.sqlite`."""

    path: str = ""

    def store(self) -> LocalSheetStore:
        return LocalSheetStore(self.path or ecm_home() / "sheet.sqlite")
