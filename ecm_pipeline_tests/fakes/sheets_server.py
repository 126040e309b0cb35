"""A small fake of the Google Sheets API v4 on 127.0.0.1, for driving the real `gspread` client.

It implements just the calls `GoogleSheetStore` makes (spreadsheet metadata, values get / batchGet,
values append / update / batchUpdate, batchUpdate addSheet) with Google's response shapes, stores
cell values exactly as sent (a JSON null skips the cell, as in the real API), records every request,
and injects the faults that matter for a non-idempotent append: 429 (quota, nothing happened), 500
(nothing happened) and "applied the append, then the connection dropped" (it happened, but the
client cannot know).

Reads return every cell as text, as `valueRenderOption=FORMATTED_VALUE` does, with trailing blank
cells and rows trimmed like Google. Appends go after the last non-blank row of the tab.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ecm_pipeline_tests.fakes.loopback import LoopbackFake, LoopbackServer

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


@dataclass(frozen=True)
class Request:
    method: str                      # GET, POST, PUT
    path: str                        # URL path, percent-decoded
    query: dict[str, list[str]]
    body: Any                        # parsed JSON body, or None
    op: str                          # metadata, get, batchGet, append, update, valuesBatchUpdate, batchUpdate


@dataclass
class _Fault:
    status: int          # 0 = apply the request, then drop the connection without answering
    remaining: int
    op: str | None
    message: str


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
    title: str = "ECM Operations (test)"
    tabs: dict[str, list[list[Any]]] = field(default_factory=dict)   # tab -> rows of cells, as sent
    requests: list[Request] = field(default_factory=list)
    _faults: list[_Fault] = field(default_factory=list)
    _sheet_ids: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: LoopbackServer | None = None

    # --- test controls ---------------------------------------------------------------------------
    def add_tab(self, title: str, rows: list[list[Any]] | None = None) -> None:
        with self._lock:
            self._sheet_ids.setdefault(title, len(self._sheet_ids) + 1)
            self.tabs[title] = [list(r) for r in rows or []]

    def fail_next(self, status: int, count: int = 1, op: str | None = None, message: str = "") -> None:
        """Answer the next `count` requests (of one `op`, or any) with `status`, doing nothing."""
        with self._lock:
            self._faults.append(_Fault(status, count, op, message or MESSAGES.get(status, "error")))

    def drop_next_append(self, count: int = 1) -> None:
        """Apply the next `count` appends, then close the connection without a response."""
        with self._lock:
            self._faults.append(_Fault(0, count, "append", ""))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def calls(self, op: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if op is None or r.op == op]

    def rows(self, tab: str) -> list[list[str]]:
        """The tab as text with trailing blanks trimmed, as a read would return it."""
        with self._lock:
            return self._read(self.tabs[tab], 0, None, 0, None)

    # --- HTTP ------------------------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
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
        if fault and fault.status:
            self._send(handler, fault.status, self._error(fault.status, fault.message))
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

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
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

    def _metadata(self) -> dict:
        return {
            "spreadsheetId": self.spreadsheet_id,
            "properties": {"title": self.title, "locale": "en_US", "timeZone": "Asia/Dubai"},
            "sheets": [{"properties": self._sheet_properties(t, i)} for i, t in enumerate(self.tabs)],
        }

    def _sheet_properties(self, title: str, index: int) -> dict:
        return {"sheetId": self._sheet_ids[title], "title": title, "index": index, "sheetType": "GRID",
                "gridProperties": {"rowCount": max(1000, len(self.tabs[title])), "columnCount": 26}}

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
        width = max((len(v) for v in values), default=0)
        return {"updatedRange": f"'{tab}'!{_letters(c0)}{r0 + 1}:{_letters(c0 + max(width, 1) - 1)}{r0 + len(values)}",
                "updatedRows": len(values), "updatedColumns": width,
                "updatedCells": sum(len(v) for v in values)}

    def _append(self, a1: str, values: list[list[Any]]) -> dict:
        tab, _, _, c0, _ = self._parse(a1)
        rows = self.tabs[tab]
        last = max((i for i, row in enumerate(rows) if not all(_blank(v) for v in row)), default=-1)
        for offset, line in enumerate(values):
            rows.insert(last + 1 + offset, [""] * c0 + ["" if v is None else v for v in line])
        start = f"'{tab}'!{_letters(c0)}{last + 2}"
        return {"spreadsheetId": self.spreadsheet_id, "tableRange": f"'{tab}'!A1",
                "updates": {"spreadsheetId": self.spreadsheet_id, "updatedRange": start,
                            "updatedRows": len(values), "updatedCells": sum(len(v) for v in values)}}

    def _batch_update(self, changes: list[dict]) -> dict:
        titles = [c["addSheet"]["properties"]["title"] for c in changes if "addSheet" in c]
        if len(titles) != len(changes):
            raise SheetsError(400, "The fake only implements addSheet requests.")
        for title in titles:
            if any(t.casefold() == title.casefold() for t in self.tabs):
                raise SheetsError(400, f'Invalid requests[0].addSheet: A sheet with the name "{title}" already '
                                       "exists. Please enter another name.")
        replies = []
        for title in titles:
            self._sheet_ids.setdefault(title, max(self._sheet_ids.values(), default=0) + 1)
            self.tabs[title] = []
            replies.append({"addSheet": {"properties": self._sheet_properties(title, len(self.tabs) - 1)}})
        return {"spreadsheetId": self.spreadsheet_id, "replies": replies}
