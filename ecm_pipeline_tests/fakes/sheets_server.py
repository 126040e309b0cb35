"""A small fake of the Google Sheets API v4 on 127.0.0.1, for driving the real `gspread` client.

It implements just the calls the pipeline makes (spreadsheet metadata, values get / batchGet,
values append / update / batchUpdate, and batchUpdate with addSheet, deleteSheet, deleteDimension on
ROWS and updateSheetProperties of the grid size; spreadsheets.create, whose new spreadsheet the
same server then serves) with Google's response shapes and error texts,
stores cell values exactly as sent (a JSON null skips the cell, as in the real API), records every
request, and injects the faults that matter for non-idempotent writes: 429 (quota, nothing
happened), 500 (nothing happened), "applied the append, then the connection dropped" (it happened,
but the client cannot know) and "applied late" (it had not happened when the client gave up and
retried, and happens after the retry: Google applies a request that outlived gspread's timeout).

Reads return every cell as text, as `valueRenderOption=FORMATTED_VALUE` does, with trailing blank
cells and rows trimmed like Google, and are clipped to the data. Appends go after the last
non-blank row of the tab and grow the grid as needed; values.update / batchUpdate beyond the grid
fail with Google's "exceeds grid limits" 400, as they do on a tab sized to its columns. A
spreadsheet batchUpdate is atomic: if one of its requests fails, none is applied.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ecm_pipeline_tests.fakes.loopback import HeldRequests, LoopbackFake, LoopbackServer

ERRORS = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
MESSAGES = {
    429: "Quota exceeded for quota metric 'Write requests' and limit 'Write requests per minute per user'.",
    500: "Internal error encountered.",
    503: "The service is currently unavailable.",
}
OPS = ("metadata", "get", "batchGet", "append", "update", "valuesBatchUpdate", "batchUpdate")
DEFAULT_ROWS, DEFAULT_COLUMNS = 1000, 26   # the grid of a new tab


ACCESS_TOKEN = "ya29.fake-access-token"


@functools.cache
def _private_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def service_account_key(token_uri: str) -> dict[str, str]:
    """A service-account key shaped like Google's, with a real (throwaway) RSA key, whose token
    endpoint is `token_uri` (the fake's `/token`): the real google-auth grant runs against it."""
    return {
        "type": "service_account",
        "project_id": "ecm-test",
        "private_key_id": "0f3c9a1d2b7e4c5f8a6b9d0e1f2a3b4c5d6e7f80",
        "private_key": _private_key_pem(),
        "client_email": "ecm-triage-bot@ecm-test.iam.gserviceaccount.com",
        "client_id": "104242424242424242424",
        "token_uri": token_uri,
    }


@dataclass(frozen=True)
class Request:
    method: str                      # GET, POST, PUT
    path: str                        # URL path, percent-decoded
    query: dict[str, list[str]]
    body: Any                        # parsed JSON body, or None
    op: str                          # metadata, get, batchGet, append, update, valuesBatchUpdate, batchUpdate


@dataclass
class _Fault:
    kind: str            # "status": answer `status`, do nothing; "drop": apply, then drop the
                         # connection; "late": hold `seconds` unapplied, then apply and answer
    remaining: int
    op: str | None
    status: int = 0
    message: str = ""
    seconds: float = 0.0


class SheetsError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _column(letters: str) -> int:
    number = 0
    for char in letters.upper():
        number = number * 26 + ord(char) - ord("A") + 1
    return number - 1


def _letters(index: int) -> str:
    out = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        out = chr(ord("A") + rest) + out
    return out


_REF = re.compile(r"^([A-Za-z]*)(\d*)$")


def _blank(value: Any) -> bool:
    return value is None or value == ""


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    return "" if value is None else str(value)


@dataclass
class FakeSheets(LoopbackFake):
    """Start with `start()`, point `GoogleSheetResource(base_url=fake.url)` at it, `stop()` at the end."""

    spreadsheet_id: str = "sheet-test"
    tokens_issued: int = 0
    title: str = "ECM Operations (test)"
    tabs: dict[str, list[list[Any]]] = field(default_factory=dict)   # tab -> rows of cells, as sent
    requests: list[Request] = field(default_factory=list)
    _faults: list[_Fault] = field(default_factory=list)
    _sheet_ids: dict[str, int] = field(default_factory=dict)
    _grids: dict[str, list[int]] = field(default_factory=dict)     # tab -> [rowCount, columnCount]
    _last_sheet_id: int = 0        # sheet ids are never reused, so a stale id cannot hit a new tab
    # Spreadsheets created through the API (`POST /v4/spreadsheets`), served by this same server;
    # `refuse_create` answers that call with (status, message) instead, as Google does for a
    # service account without Drive storage.
    spreadsheets: dict[str, FakeSheets] = field(default_factory=dict)
    refuse_create: tuple[int, str] | None = None
    bytes_sent: int = 0           # response bytes: what the client downloaded
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: LoopbackServer | None = None
    _held: HeldRequests = field(default_factory=HeldRequests)

    # --- test controls ---------------------------------------------------------------------------
    def add_tab(self, title: str, rows: list[list[Any]] | None = None) -> None:
        """Create (or refill) a tab holding `rows`; its grid is at least 1000 rows by 26 columns."""
        with self._lock:
            if title not in self._sheet_ids:
                self._last_sheet_id += 1
                self._sheet_ids[title] = self._last_sheet_id
            self.tabs[title] = [list(r) for r in rows or []]
            self._grids[title] = [max(DEFAULT_ROWS, len(self.tabs[title])),
                                  max([DEFAULT_COLUMNS, *map(len, self.tabs[title])])]

    def sheet_id(self, title: str) -> int:
        """The sheetId of a tab, as spreadsheet metadata reports it."""
        with self._lock:
            return self._sheet_ids[title]

    def grid(self, title: str) -> tuple[int, int]:
        """(rowCount, columnCount) of a tab, as spreadsheet metadata reports them."""
        with self._lock:
            return self._book().grid(title)

    def fail_next(self, status: int, count: int = 1, op: str | None = None, message: str = "") -> None:
        """Answer the next `count` requests (of one `op`, or any) with `status`, doing nothing."""
        with self._lock:
            self._faults.append(_Fault("status", count, op, status, message or MESSAGES.get(status, "error")))

    def drop_next_append(self, count: int = 1) -> None:
        """Apply the next `count` appends, then close the connection without a response."""
        with self._lock:
            self._faults.append(_Fault("drop", count, "append"))

    def apply_late(self, seconds: float, count: int = 1, op: str = "append") -> None:
        """Hold the next `count` requests of `op` ("append", "valuesBatchUpdate", "batchUpdate", ...)
        for `seconds` WITHOUT applying them, then apply them and answer (to nobody, if the client has
        hung up). A read timeout shorter than `seconds` gives up and may retry; the retry is served at
        once, and the held request is applied after it: a held append goes after the last non-blank
        row at that moment. `wait_idle()` returns once every held request has been applied."""
        if op not in OPS:
            raise ValueError(f"unknown op {op!r}; one of {', '.join(OPS)}")
        with self._lock:
            self._faults.append(_Fault("late", count, op, seconds=seconds))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def calls(self, op: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if op is None or r.op == op]

    def downloaded(self) -> int:
        """Response bytes sent for this spreadsheet and every one created through it."""
        with self._lock:
            books = list(self.spreadsheets.values())
        return self.bytes_sent + sum(b.downloaded() for b in books)

    def rows(self, tab: str) -> list[list[str]]:
        """The tab as text with trailing blanks trimmed, as a read would return it."""
        with self._lock:
            return self._read(self.tabs[tab], 0, None, 0, None)

    # --- HTTP ------------------------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        if url.path == "/token":   # Google's OAuth token endpoint: the service-account JWT grant
            with self._lock:
                self.tokens_issued += 1
            self._send(handler, 200, {"access_token": ACCESS_TOKEN, "expires_in": 3600, "token_type": "Bearer"})
            return
        if handler.headers.get("Authorization") != f"Bearer {ACCESS_TOKEN}":
            self._send(handler, 401, {"error": {"code": 401, "status": "UNAUTHENTICATED",
                                                "message": "Request had invalid authentication credentials."}})
            return
        if url.path == "/v4/spreadsheets" and handler.command == "POST":
            self._create(handler, json.loads(raw))
            return
        other = url.path.removeprefix("/v4/spreadsheets/").split("/")[0].split(":")[0]
        with self._lock:
            book = self.spreadsheets.get(other, self)
        book._serve(handler, url, raw)

    def _create(self, handler: BaseHTTPRequestHandler, body: dict) -> None:
        """spreadsheets.create: a new spreadsheet with the tabs the body names (Google's default
        "Sheet1" when it names none), served by this server from now on."""
        if self.refuse_create:
            status, message = self.refuse_create
            self._send(handler, status, self._error(status, message))
            return
        with self._lock:
            created = FakeSheets(spreadsheet_id=f"{self.spreadsheet_id}-{len(self.spreadsheets) + 1}",
                                 title=body.get("properties", {}).get("title", "Untitled spreadsheet"))
            self.spreadsheets[created.spreadsheet_id] = created
            self.requests.append(Request("POST", "/v4/spreadsheets", {}, body, "create"))
        for sheet in body.get("sheets") or [{"properties": {"title": "Sheet1"}}]:
            properties = sheet["properties"]
            created.add_tab(properties["title"])
            grid = properties.get("gridProperties", {})
            created._grids[properties["title"]] = [grid.get("rowCount", DEFAULT_ROWS),
                                                   grid.get("columnCount", DEFAULT_COLUMNS)]
        self._send(handler, 200, {"spreadsheetId": created.spreadsheet_id, **created._metadata()})

    def _serve(self, handler: BaseHTTPRequestHandler, url: Any, raw: bytes) -> None:
        """One Sheets API request to this spreadsheet."""
        body = json.loads(raw) if raw else None
        prefix = f"/v4/spreadsheets/{self.spreadsheet_id}"
        path = url.path
        op, target = self._route(handler.command, path, prefix)
        request = Request(handler.command, unquote(path), parse_qs(url.query), body, op)
        with self._lock:
            self.requests.append(request)
            fault = next((f for f in self._faults if f.remaining > 0 and f.op in (None, op)), None)
            if fault:
                fault.remaining -= 1
        if fault and fault.kind == "status":
            self._send(handler, fault.status, self._error(fault.status, fault.message))
            return
        if fault and fault.kind == "late":
            self._apply_late(handler, fault.seconds, op, target, request)
            return
        try:
            with self._lock:
                answer = self._apply(op, target, request)
        except SheetsError as exc:
            self._send(handler, exc.status, self._error(exc.status, str(exc)))
            return
        if fault:  # applied; the client never hears about it
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(handler, 200, answer)

    def _apply_late(self, handler: BaseHTTPRequestHandler, seconds: float, op: str, target: str,
                    request: Request) -> None:
        # Not under _lock while sleeping: the client's retry and reads are served meanwhile.
        with self._held.holding():
            time.sleep(seconds)
            try:
                with self._lock:
                    status, answer = 200, self._apply(op, target, request)
            except SheetsError as exc:     # e.g. a late addSheet whose retry already added the tab
                status, answer = exc.status, self._error(exc.status, str(exc))
        handler.close_connection = True
        with contextlib.suppress(OSError):  # the client has usually hung up by now
            self._send(handler, status, answer)

    @staticmethod
    def _route(method: str, path: str, prefix: str) -> tuple[str, str]:
        if not path.startswith(prefix):
            return "unknown", ""
        rest = path[len(prefix):]
        if method == "GET" and rest == "":
            return "metadata", ""
        if method == "POST" and rest == ":batchUpdate":
            return "batchUpdate", ""
        if method == "GET" and rest == "/values:batchGet":
            return "batchGet", ""
        if method == "POST" and rest == "/values:batchUpdate":
            return "valuesBatchUpdate", ""
        if method == "POST" and rest.startswith("/values/") and rest.endswith(":append"):
            return "append", unquote(rest[len("/values/"):-len(":append")])
        if rest.startswith("/values/"):
            return {"GET": "get", "PUT": "update"}.get(method, "unknown"), unquote(rest[len("/values/"):])
        return "unknown", ""

    @staticmethod
    def _error(status: int, message: str) -> dict:
        return {"error": {"code": status, "message": message, "status": ERRORS.get(status, "UNKNOWN")}}

    def _send(self, handler: BaseHTTPRequestHandler, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        with self._lock:
            self.bytes_sent += len(data)
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=UTF-8")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    # --- the API ---------------------------------------------------------------------------------
    def _apply(self, op: str, target: str, request: Request) -> dict:
        if op == "unknown":
            raise SheetsError(404, "Requested entity was not found.")
        if op == "metadata":
            return self._metadata()
        if op == "get":
            return self._get(target)
        if op == "batchGet":
            return {"spreadsheetId": self.spreadsheet_id,
                    "valueRanges": [self._get(r) for r in request.query.get("ranges", [])]}
        if op == "append":
            return self._append(target, request.body["values"])
        if op == "update":
            return {"spreadsheetId": self.spreadsheet_id, **self._write(target, request.body["values"])}
        if op == "valuesBatchUpdate":
            return {"spreadsheetId": self.spreadsheet_id,
                    "responses": [self._write(d["range"], d["values"]) for d in request.body["data"]]}
        return self._batch_update(request.body["requests"])

    def _book(self) -> _Book:
        """The live tabs, ids and grids (changes go straight into this fake)."""
        return _Book(self.tabs, self._sheet_ids, self._grids, self._last_sheet_id)

    def _metadata(self) -> dict:
        book = self._book()
        return {
            "spreadsheetId": self.spreadsheet_id,
            "properties": {"title": self.title, "locale": "en_US", "timeZone": "Asia/Dubai"},
            "sheets": [{"properties": book.properties(t)} for t in self.tabs],
        }

    def _parse(self, a1: str) -> tuple[str, int, int | None, int, int | None]:
        """'Tab'!A2:K -> (tab, first row, last row, first column, last column), 0-based, None = open."""
        if a1.startswith("'"):
            end = 1
            while True:
                end = a1.index("'", end)
                if a1[end + 1:end + 2] == "'":
                    end += 2
                    continue
                break
            name, cells = a1[1:end].replace("''", "'"), a1[end + 1:].lstrip("!")
        else:
            name, _, cells = a1.partition("!")
        tab = next((t for t in self.tabs if t.casefold() == name.casefold()), None)
        if tab is None:
            raise SheetsError(400, f"Unable to parse range: {a1}")
        if not cells:
            return tab, 0, None, 0, None
        start, _, stop = cells.partition(":")
        first, last = _REF.match(start), _REF.match(stop or start)
        if not first or not last:
            raise SheetsError(400, f"Unable to parse range: {a1}")
        (c0, r0), (c1, r1) = first.groups(), last.groups()
        return (tab, int(r0) - 1 if r0 else 0, int(r1) - 1 if r1 else None,
                _column(c0) if c0 else 0, _column(c1) if c1 else None)

    @staticmethod
    def _read(rows: list[list[Any]], r0: int, r1: int | None, c0: int, c1: int | None) -> list[list[str]]:
        out = []
        for row in rows[r0:None if r1 is None else r1 + 1]:
            cells = [_text(v) for v in row[c0:None if c1 is None else c1 + 1]]
            while cells and cells[-1] == "":
                cells.pop()
            out.append(cells)
        while out and not out[-1]:
            out.pop()
        return out

    def _get(self, a1: str) -> dict:
        tab, r0, r1, c0, c1 = self._parse(a1)
        values = self._read(self.tabs[tab], r0, r1, c0, c1)
        answer: dict[str, Any] = {"range": a1, "majorDimension": "ROWS"}
        if values:
            answer["values"] = values
        return answer

    def _write(self, a1: str, values: list[list[Any]]) -> dict:
        tab, r0, _, c0, _ = self._parse(a1)
        rows = self.tabs[tab]
        row_count, column_count = self._book().grid(tab)
        width = max((len(v) for v in values), default=0)
        if r0 + len(values) > row_count or c0 + width > column_count:
            # Unlike an append, an update does not grow the grid (Google's text and 400).
            raise SheetsError(400, f"Range ({a1}) exceeds grid limits. Max rows: {row_count}, "
                                   f"max columns: {column_count}")
        for i, line in enumerate(values):
            while len(rows) <= r0 + i:
                rows.append([])
            row = rows[r0 + i]
            for j, value in enumerate(line):
                if value is None:  # null skips the cell
                    continue
                while len(row) <= c0 + j:
                    row.append("")
                row[c0 + j] = value
        return {"updatedRange": f"'{tab}'!{_letters(c0)}{r0 + 1}:{_letters(c0 + max(width, 1) - 1)}{r0 + len(values)}",
                "updatedRows": len(values), "updatedColumns": width,
                "updatedCells": sum(len(v) for v in values)}

    def _append(self, a1: str, values: list[list[Any]]) -> dict:
        tab, _, _, c0, _ = self._parse(a1)
        rows = self.tabs[tab]
        last = max((i for i, row in enumerate(rows) if not all(_blank(v) for v in row)), default=-1)
        for offset, line in enumerate(values):
            rows.insert(last + 1 + offset, [""] * c0 + ["" if v is None else v for v in line])
        grid = self._book().grid_of(tab)  # an append adds the rows and columns it needs
        grid[0] = max(grid[0], len(rows))
        grid[1] = max([grid[1], *(c0 + len(line) for line in values)])
        start = f"'{tab}'!{_letters(c0)}{last + 2}"
        return {"spreadsheetId": self.spreadsheet_id, "tableRange": f"'{tab}'!A1",
                "updates": {"spreadsheetId": self.spreadsheet_id, "updatedRange": start,
                            "updatedRows": len(values), "updatedCells": sum(len(v) for v in values)}}

    def _batch_update(self, changes: list[dict]) -> dict:
        """Apply the requests in order, all or none: a dry run on a copy finds the first failure
        before anything changes, then the same (deterministic) run changes the live tabs in place."""
        live = self._book()
        _Book(copy.deepcopy(self.tabs), dict(self._sheet_ids), copy.deepcopy(self._grids),
              self._last_sheet_id).run(changes)
        replies = live.run(changes)
        self._last_sheet_id = live.last_sheet_id
        return {"spreadsheetId": self.spreadsheet_id, "replies": replies}


@dataclass
class _Book:
    """The tabs of a spreadsheet with their ids and grid sizes; what a spreadsheet batchUpdate changes."""

    tabs: dict[str, list[list[Any]]]
    sheet_ids: dict[str, int]
    grids: dict[str, list[int]]
    last_sheet_id: int

    def grid_of(self, title: str) -> list[int]:
        """The stored [rowCount, columnCount] (a tab put straight into `tabs` gets the default grid)."""
        return self.grids.setdefault(title, [DEFAULT_ROWS, DEFAULT_COLUMNS])

    def grid(self, title: str) -> tuple[int, int]:
        """The grid as reported: never smaller than the data (a test may have edited `tabs` directly)."""
        rows, columns = self.grid_of(title)
        data = self.tabs[title]
        return max(rows, len(data)), max([columns, *map(len, data)])

    def properties(self, title: str) -> dict:
        rows, columns = self.grid(title)
        return {"sheetId": self.sheet_ids[title], "title": title, "index": list(self.tabs).index(title),
                "sheetType": "GRID", "gridProperties": {"rowCount": rows, "columnCount": columns}}

    def title_of(self, sheet_id: object, where: str) -> str:
        wanted = str(sheet_id)  # JSON may carry an integer as a number or as a string
        title = next((t for t, i in self.sheet_ids.items() if str(i) == wanted and t in self.tabs), None)
        if title is None:
            raise SheetsError(400, f"Invalid {where}: No grid with id: {sheet_id}")
        return title

    def run(self, changes: list[dict]) -> list[dict]:
        replies = []
        for n, change in enumerate(changes):
            kind = next(iter(change), "") if len(change) == 1 else ""
            handler = {"addSheet": self.add_sheet, "deleteSheet": self.delete_sheet,
                       "deleteDimension": self.delete_dimension,
                       "updateSheetProperties": self.update_sheet_properties}.get(kind)
            if handler is None:
                raise SheetsError(400, f"requests[{n}]: the fake only implements addSheet, deleteSheet, "
                                       f"deleteDimension and updateSheetProperties, got {sorted(change)}")
            replies.append(handler(change[kind], f"requests[{n}].{kind}"))
        return replies

    def add_sheet(self, request: dict, where: str) -> dict:
        properties = request.get("properties", {})
        title = properties.get("title")
        if not title:     # Google names an untitled tab SheetN
            title = next(f"Sheet{k}" for k in range(1, len(self.tabs) + 2)
                         if all(t.casefold() != f"sheet{k}" for t in self.tabs))
        if any(t.casefold() == title.casefold() for t in self.tabs):
            raise SheetsError(400, f'Invalid {where}: A sheet with the name "{title}" already exists. '
                                   "Please enter another name.")
        grid = properties.get("gridProperties", {})
        wanted = properties.get("sheetId")
        if wanted is not None and wanted in self.sheet_ids.values():   # Google honours a requested id if free
            raise SheetsError(400, f"Invalid {where}: A sheet with the id {wanted} already exists.")
        self.last_sheet_id += 1
        self.sheet_ids[title] = int(wanted) if wanted is not None else self.last_sheet_id
        self.tabs[title] = []
        self.grids[title] = [int(grid.get("rowCount", DEFAULT_ROWS)), int(grid.get("columnCount", DEFAULT_COLUMNS))]
        return {"addSheet": {"properties": self.properties(title)}}

    def delete_sheet(self, request: dict, where: str) -> dict:
        title = self.title_of(request.get("sheetId"), where)
        if len(self.tabs) == 1:
            raise SheetsError(400, f"Invalid {where}: You can't remove all the sheets in a document.")
        del self.tabs[title], self.sheet_ids[title]
        self.grids.pop(title, None)
        return {}

    def delete_dimension(self, request: dict, where: str) -> dict:
        span = request.get("range", {})
        title = self.title_of(span.get("sheetId"), where)
        if span.get("dimension") != "ROWS":
            raise SheetsError(400, f"Invalid {where}: the fake only deletes ROWS, not {span.get('dimension')}")
        row_count, _ = self.grid(title)
        start, end = int(span.get("startIndex", 0)), int(span.get("endIndex", row_count))
        if not 0 <= start < end:
            raise SheetsError(400, f"Invalid {where}: startIndex ({start}) must be less than endIndex ({end}) "
                                   "and not negative")
        if end > row_count:
            raise SheetsError(400, f"Invalid {where}: Cannot delete a row that doesn't exist. Tried to delete "
                                   f"row index {end - 1} but there are only {row_count} rows.")
        if end - start == row_count:
            raise SheetsError(400, f"Invalid {where}: You can't delete all the rows on the sheet.")
        del self.tabs[title][start:end]          # the rows below move up
        self.grid_of(title)[0] = row_count - (end - start)
        return {}

    def update_sheet_properties(self, request: dict, where: str) -> dict:
        properties = request.get("properties", {})
        title = self.title_of(properties.get("sheetId"), where)
        fields = {f.strip() for f in str(request.get("fields", "")).split(",") if f.strip()}
        if "gridProperties" in fields:
            fields = (fields - {"gridProperties"}) | {"gridProperties.rowCount", "gridProperties.columnCount"}
        if not fields or not fields <= {"gridProperties.rowCount", "gridProperties.columnCount"}:
            raise SheetsError(400, f"Invalid {where}: the fake only updates gridProperties.rowCount and "
                                   f"gridProperties.columnCount, got fields {request.get('fields')!r}")
        grid = properties.get("gridProperties", {})
        new = list(self.grid(title))
        for position, name in enumerate(("rowCount", "columnCount")):
            if f"gridProperties.{name}" in fields:
                new[position] = int(grid.get(name, 0))
                if new[position] < 1:
                    raise SheetsError(400, f"Invalid {where}: gridProperties.{name} must be at least 1")
        # Shrinking the grid deletes the cells that no longer fit, as in Google.
        rows = self.tabs[title]
        del rows[new[0]:]
        for row in rows:
            del row[new[1]:]
        self.grids[title] = new
        return {}
