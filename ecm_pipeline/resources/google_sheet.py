"""The production assignment store: the "ECM Operations" Google Sheet, through gspread (SPEC §2, §8).

Same interface as `LocalSheetStore`, so the assets do not know which one they use. What it adds to
plain gspread calls, and why:

- Cells are written RAW (text never becomes a formula, integration notes §3.2) and read as the
  displayed text, so IDs like "007" stay text.
- Columns are matched by header name (case and spacing ignored): people reorder columns and add
  their own; a tab whose required headers are gone is refused rather than written into blindly.
  Tabs the project creates get exactly the columns they use (the Sheet's cell limit counts every
  cell of the grid).
- A constant number of API calls per operation (one batch read for several tabs, one append per
  batch): the Sheets quota is per minute and per user (60/min for a service account, notes §3.3).
- Bounded retries with exponential backoff (tenacity) on 429, 5xx and lost connections. A write
  whose outcome is unknown is never repeated blindly: a retried append first re-reads the tab and
  appends only the rows not there yet; a delete removes only rows that still hold exactly what was
  read. gspread's BackOffHTTPClient is not used: it retries appends blindly and forever.
- A lock for read-plan-append: a lock tab that only one run can create (Google refuses a second tab
  of the same name, atomically), holding its owner and the time its lease runs out; a lease that ran
  out is broken by deleting that exact tab (by id), so a crashed run cannot hold the Sheet forever.
- No credential material in any message: errors carry the tab, the operation and the API status,
  with e-mail addresses and key blocks scrubbed from whatever text Google sent back.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import gspread
import pandas as pd
import requests
import tenacity
from google.auth.exceptions import GoogleAuthError, TransportError
from gspread.urls import SPREADSHEETS_API_V4_BASE_URL
from gspread.utils import absolute_range_name, rowcol_to_a1
from pydantic import Field, PrivateAttr
from requests.adapters import HTTPAdapter

from ecm_pipeline.domain.tickets import ARCHIVE_INDEX_TAB, TABS, archive_tab, not_yet_in
from ecm_pipeline.resources.endpoints import require_https
from ecm_pipeline.resources.sheet import (
    ROW,
    AssignmentStore,
    AssignmentStoreResource,
    SheetError,
    SheetLockTimeout,
    as_text,
    columns_of,
)

SHEETS_SCOPE = "https://www.googleapis.com/auth/spreadsheets"  # least privilege: only the Sheets API is called
GOOGLE_SHEETS_API = "https://sheets.googleapis.com"
KEY_FIELDS = ("client_email", "private_key", "token_uri")
MAX_DELAY_SECONDS = 60.0
LOCK_TAB_PREFIX = "_ecm_lock "
_READ_PARAMS = {"valueRenderOption": "FORMATTED_VALUE", "majorDimension": "ROWS"}
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_KEY_BLOCK = re.compile(r"-----BEGIN[^-]*-----.*?(?:-----END[^-]*-----|$)", re.S)

T = TypeVar("T")


def _normal(header: object) -> str:
    """Header identity as a person sees it: case and runs of spaces do not matter."""
    return " ".join(str(header).split()).casefold()


def _scrub(text: str) -> str:
    """Google's error text, single-line and short, with anything that could identify the key removed."""
    text = _KEY_BLOCK.sub("<key>", _EMAIL.sub("<e-mail>", text))
    return " ".join(text.split())[:200]


def _failure(exc: BaseException) -> tuple[bool, str] | None:
    """(worth retrying, what happened) for a failed API call; None if it is not an API failure."""
    if isinstance(exc, gspread.exceptions.APIError):
        status = exc.response.status_code
        detail = f"HTTP {status} {_scrub(str(exc.error.get('status', '')))}".rstrip()
        message = _scrub(str(exc.error.get("message", "")))
        return status == 429 or status >= 500, f"{detail}: {message}" if message else detail
    if isinstance(exc, requests.ConnectionError | requests.Timeout | requests.exceptions.ChunkedEncodingError
                  | TransportError):
        return True, f"no response from Google ({type(exc).__name__})"
    if isinstance(exc, requests.RequestException):
        return False, f"request failed ({type(exc).__name__})"
    if isinstance(exc, GoogleAuthError):
        reason = _scrub(str(exc.args[0])) if exc.args else type(exc).__name__
        return False, f"Google refused the service-account credentials ({reason})"
    return None


def _positions(tab: str, header: Sequence[object]) -> list[int]:
    """Where each known column of `tab` is in this header row, by name; refuses a header that lost one."""
    index: dict[str, int] = {}
    for i, name in enumerate(header):
        index.setdefault(_normal(name), i)
    missing = [c for c in columns_of(tab) if _normal(c) not in index]
    if missing:
        found = ", ".join(_scrub(str(h)) for h in header if str(h).strip()) or "nothing"
        raise SheetError(
            f"{tab}: the header row is missing {', '.join(missing)} (row 1 has: {found}); restore these "
            f"headers - columns are matched by name, so their order and extra columns do not matter"
        )
    return [index[_normal(c)] for c in columns_of(tab)]


def _frame(tab: str, values: list[list[Any]]) -> pd.DataFrame:
    """The tab's known columns as text in canonical order, with each row's sheet row number in
    `_row`; blank rows (all known cells blank) dropped."""
    columns = list(columns_of(tab))
    if not values:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in [ROW, *columns]})
    positions = _positions(tab, values[0])
    records = []
    for number, row in enumerate(values[1:], start=2):
        cells = [str(row[p]) if p < len(row) else "" for p in positions]
        if any(cell.strip() for cell in cells):
            records.append([number, *cells])
    frame = pd.DataFrame(records, columns=[ROW, *columns])
    return frame.astype({ROW: int, **{c: object for c in columns}})


WHOLE_TAB_ABOVE = 200   # delete_rows re-reads the whole tab rather than this many single rows


def _runs(rows_descending: list[int]) -> list[tuple[int, int]]:
    """Row numbers (descending) as (first, last) runs of adjacent rows, bottom run first: one
    deleteDimension per run, so deleting a year of closed tickets is a handful of requests."""
    runs: list[tuple[int, int]] = []
    for row in rows_descending:
        if runs and runs[-1][0] == row + 1:
            runs[-1] = (row, runs[-1][1])
        else:
            runs.append((row, row))
    return runs


class GoogleSheetStore(AssignmentStore):
    """The assignment store on a Google Sheet; one instance serves one asset or command."""

    late_writes = True

    def __init__(self, client: gspread.Client, spreadsheet_id: str, max_attempts: int = 4,
                 backoff_seconds: float = 2.0, lock_poll_seconds: float = 2.0) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.client = client
        self.http = client.http_client
        self.spreadsheet_id = spreadsheet_id
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.lock_poll_seconds = lock_poll_seconds
        self._sheets: dict[str, dict[str, Any]] | None = None   # casefolded title -> sheet properties
        self._name = ""                                          # the spreadsheet's title
        self._archives: dict[int, GoogleSheetStore] = {}

    def describe(self) -> str:
        return f"Google Sheet {self.spreadsheet_id}"

    # -- the store interface -------------------------------------------------------------------

    def read_tabs(self, tabs: Sequence[str]) -> dict[str, pd.DataFrame]:
        """Several tabs in one API call; the pipeline's own tabs are created if missing, a ledger tab
        that does not exist yet reads as empty."""
        missing_own = [t for t in tabs if t in TABS and t.casefold() not in self._titles()]
        if missing_own:
            self._create_tabs(missing_own)
        present = [t for t in tabs if t.casefold() in self._titles()]
        ranges = [absolute_range_name(self._titles()[t.casefold()]) for t in present]
        answer = self._call(f"reading {', '.join(present)}", lambda _: self.http.values_batch_get(
            self.spreadsheet_id, ranges, params=dict(_READ_PARAMS))) if present else {"valueRanges": []}
        out = {t: _frame(t, []) for t in tabs}
        for tab, value_range in zip(present, answer.get("valueRanges", []), strict=True):
            out[tab] = _frame(tab, value_range.get("values", []))
        return out

    def append_rows(self, tab: str, rows: pd.DataFrame) -> int:
        """Append rows in one API call, RAW, each value under its header wherever that column is.

        Each attempt reads the header row first (one call); a retry reads the whole tab instead and
        appends only the rows that are not there yet, so a write whose response was lost is not
        repeated. Returns the number of rows given, all of which are in the tab once it returns."""
        if rows.empty:
            return 0
        text = as_text(tab, rows)
        title = self._title(tab)

        def append(attempt: int) -> None:
            values = self._values(absolute_range_name(title, "1:1") if attempt == 1 else absolute_range_name(title))
            header = values[0] if values else list(columns_of(tab))
            pending = text if attempt == 1 or not values else not_yet_in(text, _frame(tab, values), tab)
            if pending.empty:
                return
            positions = _positions(tab, header)
            width = max(positions) + 1
            lines: list[list[str | None]] = [] if values else [list(header)]
            for record in pending.itertuples(index=False, name=None):
                line: list[str | None] = [None] * width  # None leaves the people's extra columns alone
                for position, value in zip(positions, record, strict=True):
                    line[position] = value
                lines.append(line)
            self.http.values_append(
                self.spreadsheet_id, absolute_range_name(title, "A1"),
                params={"valueInputOption": "RAW", "insertDataOption": "INSERT_ROWS"},
                body={"majorDimension": "ROWS", "values": lines},
            )

        self._call(f"{tab}: appending {len(text)} rows", append)
        return len(text)

    def delete_rows(self, tab: str, rows: pd.DataFrame, key: Sequence[str]) -> int:
        """Delete the given rows, bottom-up in one batch, but only those that still hold exactly the
        cells read before (rows move when people insert or delete rows). The remaining window is
        one API round trip between that re-read and the delete."""
        if rows.empty:
            return 0
        title = self._title(tab)
        columns = list(columns_of(tab))
        if len(rows) > WHOLE_TAB_ABOVE:   # many rows (an archive run): one read of the tab, not a range each
            current = _frame(tab, self._values(absolute_range_name(title))).set_index(ROW)
            lines = [current.loc[r, columns].tolist() if r in current.index else None for r in rows[ROW]]
        else:
            ranges = [absolute_range_name(title, f"{int(r)}:{int(r)}") for r in rows[ROW]]
            answer = self._call(f"{tab}: re-reading {len(ranges)} rows", lambda _: self.http.values_batch_get(
                self.spreadsheet_id, ranges, params=dict(_READ_PARAMS)))
            positions = _positions(tab, self._values(absolute_range_name(title, "1:1"))[0])
            lines = []
            for value_range in answer.get("valueRanges", []):
                cells = (value_range.get("values") or [[]])[0]
                lines.append([str(cells[p]) if p < len(cells) else "" for p in positions])
        confirmed = [int(expected[ROW]) for (_, expected), now in zip(rows.iterrows(), lines, strict=True)
                     if now is not None and [str(v) for v in now] == [str(expected[c]) for c in columns]]
        if not confirmed:
            return 0
        sheet_id = self._sheets_by_title()[title.casefold()]["sheetId"]
        requests_ = [{"deleteDimension": {"range": {"sheetId": sheet_id, "dimension": "ROWS",
                                                   "startIndex": start - 1, "endIndex": end}}}
                     for start, end in _runs(sorted(set(confirmed), reverse=True))]
        # Not retried: after a lost response the rows have moved; the next run re-reads and converges.
        self._call(f"{tab}: deleting {len(requests_)} rows",
                   lambda _: self.http.batch_update(self.spreadsheet_id, {"requests": requests_}), attempts=1)
        return len(set(confirmed))

    def update_row(self, tab: str, row: int, expect: Mapping[str, str], values: Mapping[str, str]) -> bool:
        """Read-check-write of one row, then read it back: a change someone made in between is
        detected (False). The window is the time between the check and the write (one round trip);
        ecm commands also hold the tab lock, so only hand edits can fall into it."""
        title = self._title(tab)
        header = self._values(absolute_range_name(title, "1:1"))[0]
        positions = dict(zip(columns_of(tab), _positions(tab, header), strict=True))
        current = self._values(absolute_range_name(title, f"{row}:{row}"))
        cells = current[0] if current else []

        def cell(column: str, line: list[Any]) -> str:
            p = positions[column]
            return str(line[p]) if p < len(line) else ""

        if any(cell(c, cells) != str(v) for c, v in expect.items()):
            return False
        body = {"valueInputOption": "RAW",
                "data": [{"range": absolute_range_name(title, rowcol_to_a1(row, positions[c] + 1)), "values": [[v]]}
                         for c, v in values.items()]}
        self._call(f"{tab}: updating row {row}", lambda _: self.http.values_batch_update(self.spreadsheet_id, body))
        after = self._values(absolute_range_name(title, f"{row}:{row}"))
        return all(cell(c, after[0] if after else []) == str(v) for c, v in values.items())

    def update_rows(self, tab: str, rows: pd.DataFrame, expect: Sequence[str], values: Mapping[str, str]) -> int:
        """`update_row` for many rows in a constant number of calls: one read of the rows, one batch
        write of those still as expected, one read-back. Same window as `update_row`."""
        if rows.empty:
            return 0
        title = self._title(tab)
        header = self._values(absolute_range_name(title, "1:1"))[0]
        positions = dict(zip(columns_of(tab), _positions(tab, header), strict=True))
        numbers = [int(r) for r in rows[ROW]]
        ranges = [absolute_range_name(title, f"{r}:{r}") for r in numbers]

        def read_rows() -> list[list[Any]]:
            answer = self._call(f"{tab}: reading {len(ranges)} rows", lambda _: self.http.values_batch_get(
                self.spreadsheet_id, ranges, params=dict(_READ_PARAMS)))
            return [(v.get("values") or [[]])[0] for v in answer.get("valueRanges", [])]

        def cell(column: str, line: list[Any]) -> str:
            p = positions[column]
            return str(line[p]) if p < len(line) else ""

        still = [n for n, (_, want), line in zip(numbers, rows.iterrows(), read_rows(), strict=True)
                 if all(cell(c, line) == str(want[c]) for c in expect)]
        if not still:
            return 0
        body = {"valueInputOption": "RAW",
                "data": [{"range": absolute_range_name(title, rowcol_to_a1(n, positions[c] + 1)), "values": [[v]]}
                         for n in still for c, v in values.items()]}
        self._call(f"{tab}: updating {len(still)} rows", lambda _: self.http.values_batch_update(
            self.spreadsheet_id, body))
        after = dict(zip(numbers, read_rows(), strict=True))
        return sum(all(cell(c, after[n]) == str(v) for c, v in values.items()) for n in still)

    @contextlib.contextmanager
    def lock(self, tab: str, owner: str, timeout_seconds: float) -> Iterator[None]:
        lock_title = f"{LOCK_TAB_PREFIX}{tab}"
        deadline = time.monotonic() + timeout_seconds
        first_seen_empty: float | None = None
        while True:
            sheet_id = self._try_lock(lock_title, owner, timeout_seconds)
            if sheet_id is not None:
                break
            holder, expires, held_id = self._lock_holder(lock_title)
            now = datetime.now(UTC)
            if held_id is not None and expires is None:
                # Created but not yet labelled: its owner is writing the lease now, or died doing it.
                first_seen_empty = first_seen_empty or time.monotonic()
                stale = time.monotonic() - first_seen_empty > timeout_seconds
            else:
                stale = expires is not None and expires < now
            if held_id is not None and stale:
                self._break_lock(held_id)
                continue
            if time.monotonic() > deadline:
                raise SheetLockTimeout(f"{tab} is held by {holder or 'another run'} for longer than "
                                       f"{timeout_seconds:g} s (lock tab {lock_title!r})")
            time.sleep(self.lock_poll_seconds)
        try:
            yield
        finally:
            self._break_lock(sheet_id)

    def check(self) -> str:
        """Open the spreadsheet and verify every tab's header row (two read calls)."""
        metadata = self._call("opening the spreadsheet", lambda _: self._fetch_metadata())
        name = metadata["properties"]["title"]
        titles = {s["properties"]["title"].casefold(): s["properties"]["title"] for s in metadata.get("sheets", [])}
        missing = [tab for tab in TABS if tab.casefold() not in titles]
        if missing:
            plural = "s" if len(missing) > 1 else ""
            raise SheetError(
                f"spreadsheet {name}: tab{plural} {', '.join(missing)} not found (tabs: {', '.join(titles.values())}); "
                + "; ".join(f"create {tab} with the headers {', '.join(TABS[tab])}" for tab in missing)
            )
        ranges = [absolute_range_name(titles[tab.casefold()], "1:1") for tab in TABS]
        answer = self._call("reading the header rows", lambda _: self.http.values_batch_get(
            self.spreadsheet_id, ranges, params=dict(_READ_PARAMS)))
        for tab, value_range in zip(TABS, answer.get("valueRanges", []), strict=True):
            header = (value_range.get("values") or [[]])[0]
            if not header:
                raise SheetError(f"spreadsheet {name}: tab {tab} is empty; put the headers "
                                 f"{', '.join(TABS[tab])} in row 1")
            _positions(tab, header)
        return f"spreadsheet {name}: tabs {', '.join(TABS)} ok"

    def archive_store(self, year: int) -> GoogleSheetStore:
        """The spreadsheet of `year`'s archive: Google's cell limit (10 million) is per spreadsheet,
        so each year of closed tickets gets its own. Found in the Archive Spreadsheets tab, where a
        manager may also enter one made by hand; otherwise created and recorded there. Under the
        Assignments lock, so two runs cannot both create one."""
        if year not in self._archives:
            index = self.read_tab(ARCHIVE_INDEX_TAB)
            known = index.loc[index["Year"].str.strip() == str(year), "Spreadsheet ID"].str.strip()
            known = known[known != ""]
            if len(known):
                spreadsheet_id = str(known.iloc[-1])
            else:
                spreadsheet_id = self._create_archive(year)
                self.append_rows(ARCHIVE_INDEX_TAB, pd.DataFrame([{
                    "Year": str(year), "Spreadsheet ID": spreadsheet_id,
                    "Created At": datetime.now(UTC).isoformat(timespec="seconds")}]))
            self._archives[year] = GoogleSheetStore(self.client, spreadsheet_id, self.max_attempts,
                                                    self.backoff_seconds, self.lock_poll_seconds)
        return self._archives[year]

    def _create_archive(self, year: int) -> str:
        """A new spreadsheet holding just `year`'s archive tab (a one-row grid of its columns).
        Not retried: a lost answer leaves at worst an empty spreadsheet nobody refers to."""
        self._sheets_by_title()
        tab = archive_tab(year)
        body = {"properties": {"title": f"{self._name or 'ECM Operations'} — {tab}"},
                "sheets": [{"properties": {"title": tab, "gridProperties": {
                    "rowCount": 1, "columnCount": len(columns_of(tab)), "frozenRowCount": 1}}}]}
        try:
            reply = self._call(f"creating the spreadsheet for the {year} archive", lambda _: self.http.request(
                "post", SPREADSHEETS_API_V4_BASE_URL, json=body).json(), attempts=1)
        except SheetError as exc:
            raise SheetError(f"{str(exc).rstrip('.')}. Create a spreadsheet for the {year} archive yourself, "
                             f"share it with the service account as an editor and add a row to the "
                             f"{ARCHIVE_INDEX_TAB} tab: Year "
                             f"{year}, Spreadsheet ID (the long ID in its URL); until then old closed tickets "
                             "stay in Assignments") from None
        return str(reply["spreadsheetId"])

    # -- tabs ------------------------------------------------------------------------------------

    def _create_tabs(self, tabs: Sequence[str], hidden: bool = False) -> None:
        """Create tabs with exactly their columns and a frozen header row: one addSheet batch and
        one header write. A retry after a lost response looks again first."""

        def add(attempt: int) -> None:
            titles = self._titles() if attempt == 1 else self._titles(refresh=True)
            still_missing = [tab for tab in tabs if tab.casefold() not in titles]
            if still_missing:
                reply = self.http.batch_update(self.spreadsheet_id, {"requests": [
                    {"addSheet": {"properties": {
                        "title": tab, "hidden": hidden,
                        "gridProperties": {"rowCount": 1, "columnCount": len(columns_of(tab)), "frozenRowCount": 1},
                    }}} for tab in still_missing]})
                for answer in reply.get("replies", []):
                    properties = answer["addSheet"]["properties"]
                    self._sheets_by_title()[properties["title"].casefold()] = properties

        self._call(f"creating tabs {', '.join(tabs)}", add)
        body = {"valueInputOption": "RAW",
                "data": [{"range": absolute_range_name(tab, "A1"), "values": [list(columns_of(tab))]} for tab in tabs]}
        self._call(f"writing the headers of {', '.join(tabs)}",
                   lambda _: self.http.values_batch_update(self.spreadsheet_id, body))

    def _title(self, tab: str) -> str:
        """The tab's actual title, creating it first if it is missing."""
        if tab.casefold() not in self._titles():
            self._create_tabs([tab])
        return self._titles()[tab.casefold()]

    def _sheets_by_title(self, refresh: bool = False) -> dict[str, dict[str, Any]]:
        if self._sheets is None or refresh:
            metadata = self._call("opening the spreadsheet", lambda _: self._fetch_metadata())
            self._name = str(metadata.get("properties", {}).get("title", ""))
            # Google refuses two tabs whose names differ only in case, so "agents" is the Agents tab.
            self._sheets = {s["properties"]["title"].casefold(): s["properties"] for s in metadata.get("sheets", [])}
        return self._sheets

    def _titles(self, refresh: bool = False) -> dict[str, str]:
        return {k: v["title"] for k, v in self._sheets_by_title(refresh).items()}

    # -- the lock tab ----------------------------------------------------------------------------

    def _try_lock(self, title: str, owner: str, lease_seconds: float) -> int | None:
        """Create the lock tab (Google refuses it atomically if it exists); None when someone has it."""
        sheet_id = uuid.uuid4().int % 2_000_000_000
        try:
            self._call(f"taking the lock {title!r}", lambda _: self.http.batch_update(self.spreadsheet_id, {
                "requests": [{"addSheet": {"properties": {"sheetId": sheet_id, "title": title, "hidden": True,
                                                          "gridProperties": {"rowCount": 1, "columnCount": 2}}}}]}),
                       attempts=1)
        except SheetError as exc:
            if "already exists" in str(exc):
                return None
            # No answer: the tab may have been created all the same; it is ours if it has our id.
            if not any(s.get("sheetId") == sheet_id for s in self._sheets_by_title(refresh=True).values()):
                raise
        expires = (datetime.now(UTC) + timedelta(seconds=lease_seconds)).isoformat(timespec="seconds")
        self._call(f"labelling the lock {title!r}", lambda _: self.http.values_update(
            self.spreadsheet_id, absolute_range_name(title, "A1"), params={"valueInputOption": "RAW"},
            body={"values": [[owner, expires]]}))
        return sheet_id

    def _lock_holder(self, title: str) -> tuple[str, datetime | None, int | None]:
        sheet = self._sheets_by_title(refresh=True).get(title.casefold())
        if sheet is None:
            return "", None, None
        values = self._values(absolute_range_name(title, "A1:B1"))
        cells = values[0] if values else []
        expires = None
        if len(cells) > 1:
            with contextlib.suppress(ValueError):
                expires = datetime.fromisoformat(str(cells[1]))
        return (str(cells[0]) if cells else ""), expires, int(sheet["sheetId"])

    def _break_lock(self, sheet_id: int) -> None:
        with contextlib.suppress(SheetError):   # gone already: someone else broke or released it
            self._call("releasing the lock", lambda _: self.http.batch_update(
                self.spreadsheet_id, {"requests": [{"deleteSheet": {"sheetId": sheet_id}}]}), attempts=2)

    # -- API plumbing --------------------------------------------------------------------------

    def _values(self, a1_range: str) -> list[list[Any]]:
        answer = self._call(f"reading {a1_range}", lambda _: self.http.values_get(
            self.spreadsheet_id, a1_range, params=dict(_READ_PARAMS)))
        return answer.get("values", [])

    def _fetch_metadata(self) -> dict[str, Any]:
        return self.http.fetch_sheet_metadata(
            self.spreadsheet_id, params={"includeGridData": "false", "fields": "properties.title,sheets.properties"})

    def _call(self, what: str, call: Callable[[int], T], attempts: int | None = None) -> T:
        """Run `call(attempt)` up to `attempts` (default max_attempts) times, backing off exponentially
        on quota, server and connection failures; anything else, or the last failure, is a SheetError."""
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(attempts or self.max_attempts),
            wait=tenacity.wait_exponential(multiplier=self.backoff_seconds, max=MAX_DELAY_SECONDS),
            retry=tenacity.retry_if_exception(lambda exc: bool((_failure(exc) or (False, ""))[0])),
            before_sleep=lambda state: dg.get_dagster_logger("google_sheet").warning(
                f"Google Sheet: {what}: {_failure(state.outcome.exception())[1]} "
                f"(attempt {state.attempt_number + 1}/{attempts or self.max_attempts} next)"),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return call(attempt.retry_state.attempt_number)
        except SheetError:
            raise
        except Exception as exc:
            failure = _failure(exc)
            if failure is None:
                raise
            tries = retrying.statistics.get("attempt_number", 1)
            after = f" after {tries} attempts" if tries > 1 else ""
            raise SheetError(f"Google Sheet {self.spreadsheet_id}: {what} failed{after}: {failure[1]}") from None
        raise AssertionError("unreachable")


class _EndpointAdapter(HTTPAdapter):
    """Sends requests meant for Google's public Sheets endpoint to another one (a private or
    regional endpoint), keeping the authorization."""

    def __init__(self, endpoint: str) -> None:
        super().__init__()
        self.endpoint = endpoint.rstrip("/")

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        request.url = self.endpoint + str(request.url)[len(GOOGLE_SHEETS_API):]
        return super().send(request, *args, **kwargs)


def _service_account_info(value: str) -> dict[str, Any]:
    """The key as a dict, from its JSON text or a path to the file. Messages never echo the value."""
    text = value.strip()
    if not text:
        raise SheetError("GOOGLE_SERVICE_ACCOUNT_JSON is empty: set it to a service-account key (JSON or a file path)")
    if not text.startswith("{"):
        try:
            text = Path(text).expanduser().read_text()
        except (OSError, ValueError):
            raise SheetError("GOOGLE_SERVICE_ACCOUNT_JSON is neither a service-account key in JSON nor the path "
                             "of a readable key file") from None
    try:
        info = json.loads(text)
    except ValueError:
        raise SheetError("GOOGLE_SERVICE_ACCOUNT_JSON is not valid JSON") from None
    if not isinstance(info, dict):
        raise SheetError("GOOGLE_SERVICE_ACCOUNT_JSON is not a service-account key (expected a JSON object)")
    missing = [f for f in KEY_FIELDS if not info.get(f)]
    if info.get("type") != "service_account" or missing:
        lacking = f" (missing {', '.join(missing)})" if missing else ""
        raise SheetError(f"GOOGLE_SERVICE_ACCOUNT_JSON is not a service-account key{lacking}")
    return info


class GoogleSheetResource(AssignmentStoreResource):
    """The assignment store on Google Sheets (production). The client is built on first use, never at
    import or definition load, and the key never appears in a message, a log line, `repr` or
    `describe()`."""

    spreadsheet_id: str = Field(description="The spreadsheet key (the long ID in the sheet's URL).")
    service_account_json: str = Field(
        repr=False,
        description="A service-account key: its JSON text or the path of the key file. The sheet must be "
                    "shared with the account's e-mail as an editor.")
    api_endpoint: str = Field(
        default="",
        description="Sheets API endpoint (GOOGLE_SHEETS_API_ENDPOINT), e.g. a private endpoint; default Google's.")
    max_attempts: int = Field(default=4, description="Attempts per API operation before giving up (at least 1).")
    backoff_seconds: float = Field(
        default=2.0, description="First retry delay; it doubles on each retry (capped at 60 s).")
    timeout_seconds: float = Field(default=60.0, description="How long to wait for one API response.")

    _client: gspread.Client | None = PrivateAttr(default=None)

    def _gspread_client(self) -> gspread.Client:
        """One client per resource, so the access token is fetched once and reused."""
        if self._client is None:
            info = _service_account_info(self.service_account_json)
            try:
                client = gspread.service_account_from_dict(info, scopes=[SHEETS_SCOPE])
            except ValueError:
                raise SheetError("GOOGLE_SERVICE_ACCOUNT_JSON: the private key could not be loaded") from None
            if self.api_endpoint:
                endpoint = require_https(self.api_endpoint, "GOOGLE_SHEETS_API_ENDPOINT")
                client.http_client.session.mount(GOOGLE_SHEETS_API, _EndpointAdapter(endpoint))
            client.set_timeout((10.0, self.timeout_seconds))  # gspread waits forever by default
            self._client = client
        return self._client

    def store(self) -> GoogleSheetStore:
        return GoogleSheetStore(self._gspread_client(), self.spreadsheet_id, max_attempts=self.max_attempts,
                                backoff_seconds=self.backoff_seconds,
                                lock_poll_seconds=min(2.0, max(self.backoff_seconds, 0.05)))

    def describe(self) -> str:
        where = f" via {self.api_endpoint}" if self.api_endpoint else ""
        return f"Google Sheet {self.spreadsheet_id}{where}"
