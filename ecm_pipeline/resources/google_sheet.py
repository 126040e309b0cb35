"""The production assignment store: the "ECM Operations" Google Sheet, through gspread (SPEC §2, §8).

Same interface as `LocalSheetStore`, so the assets do not know which one they use. What it adds to
plain gspread calls, and why:

- Cells are written RAW (text never becomes a formula, integration notes §3.2) and read as the
  displayed text, so IDs like "007" stay text.
- Columns are matched by header name (case and spacing ignored): people reorder columns and add
  their own; a tab whose required headers are gone is refused rather than written into blindly.
- A constant number of API calls per operation (one read per tab, one append per batch): the
  Sheets quota is per minute and per user (60/min for a service account, notes §3.3).
- Bounded retries with exponential backoff on 429, 5xx and lost connections, and a retried append
  first re-reads the tab, so an append whose response was lost is never applied twice.
  gspread's BackOffHTTPClient is not used: it retries appends blindly and forever (notes §3.3).
- No credential material in any message: errors carry the tab, the operation and the API status,
  with e-mail addresses and key blocks scrubbed from whatever text Google sent back.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import gspread
import pandas as pd
import requests
from google.auth.credentials import AnonymousCredentials
from google.auth.exceptions import GoogleAuthError, TransportError
from google.auth.transport.requests import AuthorizedSession
from gspread.utils import absolute_range_name
from pydantic import Field, PrivateAttr
from requests.adapters import HTTPAdapter

from ecm_pipeline.resources.sheet import TABS, AssignmentStoreResource, SheetError

SHEETS_SCOPE = "https://www.googleapis.com/auth/spreadsheets"  # least privilege: only the Sheets API is called
GOOGLE_SHEETS_API = "https://sheets.googleapis.com"
KEY_FIELDS = ("client_email", "private_key", "token_uri")
# How a row already in the tab is recognised when a retried append checks what landed: an
# assignment is one order in one triage run; other tabs have no key, so the whole row counts.
ROW_KEYS: dict[str, list[str]] = {"Assignments": ["Order ID", "Triage Run"]}
MAX_DELAY_SECONDS = 60.0
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


def _failure(exc: Exception) -> tuple[bool, str] | None:
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
    missing = [c for c in TABS[tab] if _normal(c) not in index]
    if missing:
        found = ", ".join(_scrub(str(h)) for h in header if str(h).strip()) or "nothing"
        raise SheetError(
            f"{tab}: the header row is missing {', '.join(missing)} (row 1 has: {found}); restore these "
            f"headers - columns are matched by name, so their order and extra columns do not matter"
        )
    return [index[_normal(c)] for c in TABS[tab]]


def _frame(tab: str, values: list[list[Any]]) -> pd.DataFrame:
    """The tab's known columns as text in canonical order; blank rows (all known cells blank) dropped."""
    columns = TABS[tab]
    if not values:
        return pd.DataFrame({c: pd.Series([], dtype=str) for c in columns})
    positions = _positions(tab, values[0])
    records = []
    for row in values[1:]:
        cells = [str(row[p]) if p < len(row) else "" for p in positions]
        if any(cell.strip() for cell in cells):
            records.append(cells)
    return pd.DataFrame(records, columns=columns, dtype=str)


def _as_text(tab: str, rows: pd.DataFrame) -> pd.DataFrame:
    """The rows to write as strings in canonical column order (the same conversion as the local store)."""
    columns = TABS[tab]
    missing = [c for c in columns if c not in rows.columns]
    if missing:
        raise SheetError(f"{tab}: rows to append lack columns {missing}")
    return rows[columns].astype("object").where(rows[columns].notna(), "").astype(str).reset_index(drop=True)


def _not_yet_in(tab: str, rows: pd.DataFrame, existing: pd.DataFrame) -> pd.DataFrame:
    """The rows whose key is not in the tab yet."""
    key = ROW_KEYS.get(tab, TABS[tab])
    present = set(existing[key].apply(lambda col: col.str.strip()).itertuples(index=False, name=None))
    wanted = rows[key].apply(lambda col: col.str.strip()).itertuples(index=False, name=None)
    return rows[[k not in present for k in wanted]]


class GoogleSheetStore:
    """The assignment store on a Google Sheet; one instance serves one asset or command."""

    def __init__(self, client: gspread.Client, spreadsheet_id: str, max_attempts: int = 4,
                 backoff_seconds: float = 2.0, sleep: Callable[[float], None] = time.sleep) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.http = client.http_client
        self.spreadsheet_id = spreadsheet_id
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.sleep = sleep
        self._titles: dict[str, str] | None = None

    def describe(self) -> str:
        return f"Google Sheet {self.spreadsheet_id}"

    # -- the store interface -------------------------------------------------------------------

    def ensure_tabs(self) -> None:
        """Create the pipeline's missing tabs with their headers: one addSheet batch and one header write."""
        missing = [tab for tab in TABS if tab.casefold() not in self._tab_titles()]
        if not missing:
            return

        def add(attempt: int) -> None:
            # A lost response may hide a tab that was added: look again before adding on a retry.
            titles = self._tab_titles() if attempt == 1 else self._metadata()
            still_missing = [tab for tab in missing if tab.casefold() not in titles]
            if still_missing:
                self.http.batch_update(self.spreadsheet_id, {"requests": [
                    {"addSheet": {"properties": {"title": tab}}} for tab in still_missing]})
            self._titles = {**titles, **{tab.casefold(): tab for tab in still_missing}}

        self._with_retries(f"creating tabs {', '.join(missing)}", add)
        body = {"valueInputOption": "RAW",
                "data": [{"range": absolute_range_name(tab, "A1"), "values": [TABS[tab]]} for tab in missing]}
        self._with_retries(f"writing the headers of {', '.join(missing)}",
                           lambda _: self.http.values_batch_update(self.spreadsheet_id, body))

    def read_tab(self, tab: str) -> pd.DataFrame:
        """All rows of a tab as text (blank cells as ""), in sheet order, in one API call."""
        title = self._title(tab)
        values = self._with_retries(f"{tab}: reading the tab", lambda _: self._values(absolute_range_name(title)))
        return _frame(tab, values)

    def append_rows(self, tab: str, rows: pd.DataFrame) -> int:
        """Append rows in one API call, RAW, each value under its header wherever that column is.

        Each attempt reads the header row first (one call); a retry reads the whole tab instead and
        appends only the rows that are not there yet, so a write whose response was lost is not
        repeated. Returns the number of rows given, all of which are in the tab once it returns."""
        if rows.empty:
            return 0
        text = _as_text(tab, rows)
        title = self._title(tab)

        def append(attempt: int) -> None:
            values = self._values(absolute_range_name(title, "1:1") if attempt == 1 else absolute_range_name(title))
            header = values[0] if values else list(TABS[tab])
            pending = text if attempt == 1 or not values else _not_yet_in(tab, text, _frame(tab, values))
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

        self._with_retries(f"{tab}: appending {len(text)} rows", append)
        return len(text)

    def check(self) -> str:
        """Open the spreadsheet and verify every tab's header row (two read calls)."""
        metadata = self._with_retries("opening the spreadsheet", lambda _: self._fetch_metadata())
        name = metadata["properties"]["title"]
        titles = self._titles_from(metadata)
        missing = [tab for tab in TABS if tab.casefold() not in titles]
        if missing:
            plural = "s" if len(missing) > 1 else ""
            raise SheetError(
                f"spreadsheet {name}: tab{plural} {', '.join(missing)} not found (tabs: {', '.join(titles.values())}); "
                + "; ".join(f"create {tab} with the headers {', '.join(TABS[tab])}" for tab in missing)
            )
        ranges = [absolute_range_name(titles[tab.casefold()], "1:1") for tab in TABS]
        answer = self._with_retries("reading the header rows", lambda _: self.http.values_batch_get(
            self.spreadsheet_id, ranges, params=dict(_READ_PARAMS)))
        for tab, value_range in zip(TABS, answer.get("valueRanges", []), strict=True):
            header = (value_range.get("values") or [[]])[0]
            if not header:
                raise SheetError(f"spreadsheet {name}: tab {tab} is empty; put the headers "
                                 f"{', '.join(TABS[tab])} in row 1")
            _positions(tab, header)
        return f"spreadsheet {name}: tabs {', '.join(TABS)} ok"

    # -- API plumbing --------------------------------------------------------------------------

    def _values(self, a1_range: str) -> list[list[Any]]:
        answer = self.http.values_get(self.spreadsheet_id, a1_range, params=dict(_READ_PARAMS))
        return answer.get("values", [])

    def _fetch_metadata(self) -> dict[str, Any]:
        return self.http.fetch_sheet_metadata(
            self.spreadsheet_id, params={"includeGridData": "false", "fields": "properties.title,sheets.properties"})

    @staticmethod
    def _titles_from(metadata: dict[str, Any]) -> dict[str, str]:
        # Google Sheets refuses two tabs whose names differ only in case, so "agents" is the Agents tab.
        return {s["properties"]["title"].casefold(): s["properties"]["title"] for s in metadata.get("sheets", [])}

    def _metadata(self) -> dict[str, str]:
        return self._titles_from(self._fetch_metadata())

    def _tab_titles(self) -> dict[str, str]:
        """casefolded title -> actual title, fetched once per store (one call)."""
        if self._titles is None:
            self._titles = self._with_retries("opening the spreadsheet", lambda _: self._metadata())
        return self._titles

    def _title(self, tab: str) -> str:
        """The tab's actual title, creating the pipeline's tabs first if any is missing."""
        if tab.casefold() not in self._tab_titles():
            self.ensure_tabs()
        return self._tab_titles()[tab.casefold()]

    def _with_retries(self, what: str, call: Callable[[int], T]) -> T:
        """Run `call(attempt)` up to max_attempts times, backing off exponentially on quota, server
        and connection failures; anything else, or the last failure, becomes a SheetError."""
        attempt = 1
        while True:
            try:
                return call(attempt)
            except Exception as exc:
                failure = _failure(exc)
                if failure is None:
                    raise
                retryable, detail = failure
                if not retryable or attempt == self.max_attempts:
                    tries = f" after {attempt} attempts" if attempt > 1 else ""
                    raise SheetError(f"Google Sheet {self.spreadsheet_id}: {what} failed{tries}: {detail}") from None
                delay = min(self.backoff_seconds * 2 ** (attempt - 1), MAX_DELAY_SECONDS)
                dg.get_dagster_logger("google_sheet").warning(
                    f"Google Sheet: {what}: {detail} (retry {attempt + 1}/{self.max_attempts} in {delay:g}s)")
                self.sleep(delay)
                attempt += 1


class _LocalAPIAdapter(HTTPAdapter):
    """Sends requests meant for the Sheets API to a local stand-in (tests only, integration notes §3.4)."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        request.url = self.base_url + str(request.url)[len(GOOGLE_SHEETS_API):]
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
    import or definition load, and the key never appears in a message, a log line or `describe()`."""

    spreadsheet_id: str = Field(description="The spreadsheet key (the long ID in the sheet's URL).")
    service_account_json: str = Field(
        repr=False,
        description="A service-account key: its JSON text or the path of the key file. The sheet must be "
                    "shared with the account's e-mail as an editor.")
    base_url: str = Field(
        default="",
        description="Tests only: send every Sheets API request to this local base URL, unauthenticated.")
    max_attempts: int = Field(default=4, description="Attempts per API operation before giving up (at least 1).")
    backoff_seconds: float = Field(
        default=2.0, description="First retry delay; it doubles on each retry (capped at 60 s).")
    timeout_seconds: float = Field(default=60.0, description="How long to wait for one API response.")

    _client: gspread.Client | None = PrivateAttr(default=None)

    def _gspread_client(self) -> gspread.Client:
        """One client per resource, so the access token is fetched once and reused."""
        if self._client is None:
            info = _service_account_info(self.service_account_json)
            if self.base_url:
                session = AuthorizedSession(AnonymousCredentials())
                session.mount(GOOGLE_SHEETS_API, _LocalAPIAdapter(self.base_url))
                client = gspread.Client(auth=None, session=session)
            else:
                try:
                    client = gspread.service_account_from_dict(info, scopes=[SHEETS_SCOPE])
                except ValueError:
                    raise SheetError("GOOGLE_SERVICE_ACCOUNT_JSON: the private key could not be loaded") from None
            client.set_timeout((10.0, self.timeout_seconds))  # gspread waits forever by default
            self._client = client
        return self._client

    def store(self) -> GoogleSheetStore:
        return GoogleSheetStore(self._gspread_client(), self.spreadsheet_id, max_attempts=self.max_attempts,
                                backoff_seconds=self.backoff_seconds)

    def describe(self) -> str:
        where = f" via {self.base_url}" if self.base_url else ""
        return f"Google Sheet {self.spreadsheet_id}{where}"

    def check(self) -> str:
        return self.store().check()
