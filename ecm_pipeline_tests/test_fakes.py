"""The fake Slack and Sheets APIs, driven by the real `slack_sdk.WebClient` and the real gspread client:
message deletion with Slack's errors and thread bookkeeping, the spreadsheet batchUpdate requests a
sheet lock and tab sizing rely on (atomic, one reply per request), and the "late apply" fault, a
write that lands after the client gave up and retried, which every convergence test builds on.

Timeouts are fractions of a second: the client gives up after CLIENT_TIMEOUT, the fake applies a
held request after HOLD, so each test stays well under two seconds. Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import gspread
import pytest
import requests
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from ecm_pipeline.resources.google_sheet import GoogleSheetResource
from ecm_pipeline_tests.fakes.sheets_server import FakeSheets, service_account_key
from ecm_pipeline_tests.fakes.slack_server import FakeSlack

CLIENT_TIMEOUT = 0.3     # the client gives up after this...
HOLD = 0.6               # ...and the fake applies a held request only after this
GOOGLE_SHEETS_API = "https://sheets.googleapis.com"
HEADER = ["Order ID", "Agent"]


# --- Slack -----------------------------------------------------------------------------------------

@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    fake = FakeSlack().start()
    yield fake
    fake.stop()


@pytest.fixture
def client(slack: FakeSlack) -> WebClient:
    # A bare client: its default ConnectionErrorRetryHandler does not retry a read timeout, so every
    # retry in these tests is one the test makes on purpose.
    return WebClient(base_url=slack.url, token=slack.token, timeout=CLIENT_TIMEOUT)  # type: ignore[arg-type]


def slack_error(call: Callable[[], Any]) -> str:
    """The `error` of a Slack call that must fail."""
    with pytest.raises(SlackApiError) as failure:
        call()
    return failure.value.response["error"]


def test_chat_delete_removes_the_bots_own_message(slack: FakeSlack, client: WebClient) -> None:
    kept = client.chat_postMessage(channel=slack.channel, text="kept")["ts"]
    gone = client.chat_postMessage(channel=slack.channel, text="gone")["ts"]

    answer = client.chat_delete(channel=slack.channel, ts=gone)

    assert answer.data == {"ok": True, "channel": slack.channel, "ts": gone}
    assert [m["ts"] for m in client.conversations_history(channel=slack.channel)["messages"]] == [kept]
    assert slack_error(lambda: client.chat_delete(channel=slack.channel, ts=gone)) == "message_not_found"


def test_chat_delete_refuses_foreign_messages_and_other_channels(slack: FakeSlack, client: WebClient) -> None:
    human = slack.add_foreign_message("a person wrote this", metadata={"event_type": "x", "event_payload": {}})
    own = client.chat_postMessage(channel=slack.channel, text="bot")["ts"]

    assert slack_error(lambda: client.chat_delete(channel=slack.channel, ts=human)) == "cant_delete_message"
    assert slack_error(lambda: client.chat_delete(channel="C0OTHER", ts=own)) == "channel_not_found"
    assert slack_error(lambda: client.chat_update(channel=slack.channel, ts=human, text="x")) == "cant_update_message"

    history = client.conversations_history(channel=slack.channel, include_all_metadata=True)["messages"]
    assert [m["ts"] for m in history] == [own, human]           # nothing was deleted or changed
    person = history[1]
    assert person["user"] == "U0HUMAN" and "bot_id" not in person and person["text"] == "a person wrote this"
    assert person["metadata"]["event_type"] == "x"


def test_deleting_a_parent_leaves_its_replies_orphaned(slack: FakeSlack, client: WebClient) -> None:
    parent = client.chat_postMessage(channel=slack.channel, text="parent")["ts"]
    replies = [client.chat_postMessage(channel=slack.channel, thread_ts=parent, text=f"r{i}")["ts"] for i in range(2)]
    human = slack.add_foreign_message("person's reply", thread_ts=parent)
    assert slack.top_level()[0]["reply_count"] == 3

    client.chat_delete(channel=slack.channel, ts=parent)

    # As in Slack: the replies stay, still pointing at the deleted parent, and are listed nowhere.
    assert [m["ts"] for m in slack.replies(parent)] == [*replies, human]
    assert all(m["thread_ts"] == parent for m in slack.replies(parent))
    assert client.conversations_history(channel=slack.channel)["messages"] == []
    assert slack_error(lambda: client.conversations_replies(channel=slack.channel, ts=parent)) == "thread_not_found"
    assert slack_error(lambda: client.chat_postMessage(channel=slack.channel, thread_ts=parent,
                                                       text="late reply")) == "thread_not_found"
    # An orphaned reply can still be deleted by its author.
    client.chat_delete(channel=slack.channel, ts=replies[0])
    assert [m["ts"] for m in slack.replies(parent)] == [replies[1], human]


def test_deleting_replies_keeps_reply_count(slack: FakeSlack, client: WebClient) -> None:
    parent = client.chat_postMessage(channel=slack.channel, text="parent")["ts"]
    first, second = (client.chat_postMessage(channel=slack.channel, thread_ts=parent, text=t)["ts"]
                     for t in ("one", "two"))

    client.chat_delete(channel=slack.channel, ts=first)
    thread = client.conversations_replies(channel=slack.channel, ts=parent)["messages"]
    assert [m["ts"] for m in thread] == [parent, second] and thread[0]["reply_count"] == 1

    client.chat_delete(channel=slack.channel, ts=second)
    [alone] = client.conversations_history(channel=slack.channel)["messages"]
    assert alone["ts"] == parent and "reply_count" not in alone   # a plain message again


def test_late_post_lands_after_the_retry_with_a_later_ts(slack: FakeSlack, client: WebClient) -> None:
    slack.apply_late("chat.postMessage", HOLD)
    started = time.monotonic()

    # slack_sdk raises the socket's bare TimeoutError on a read timeout (no SlackApiError, no retry).
    with pytest.raises(TimeoutError):
        client.chat_postMessage(channel=slack.channel, text="first attempt")
    retry = client.chat_postMessage(channel=slack.channel, text="retry")["ts"]
    seen = client.conversations_history(channel=slack.channel)["messages"]

    # The held request blocks nothing: the retry and the look-up were answered before it was applied.
    assert time.monotonic() - started < HOLD
    assert [m["text"] for m in seen] == ["retry"]

    slack.wait_idle(timeout=2)
    stored = sorted(slack.messages, key=lambda m: m["ts"])
    assert [m["text"] for m in stored] == ["retry", "first attempt"]    # the late one has the later ts
    assert retry < stored[1]["ts"] and float(retry) < float(stored[1]["ts"])
    newest_first = client.conversations_history(channel=slack.channel)["messages"]
    assert [m["text"] for m in newest_first] == ["first attempt", "retry"]
    assert len(slack.calls("chat.postMessage")) == 2


def test_late_reply_counts_in_its_thread(slack: FakeSlack, client: WebClient) -> None:
    parent = client.chat_postMessage(channel=slack.channel, text="parent")["ts"]
    slack.apply_late("chat.postMessage", HOLD)
    with pytest.raises(TimeoutError):
        client.chat_postMessage(channel=slack.channel, thread_ts=parent, text="late")
    client.chat_postMessage(channel=slack.channel, thread_ts=parent, text="retry")
    slack.wait_idle(timeout=2)

    thread = client.conversations_replies(channel=slack.channel, ts=parent)["messages"]
    assert [m["text"] for m in thread] == ["parent", "retry", "late"] and thread[0]["reply_count"] == 2


def test_wait_idle_returns_at_once_or_times_out(slack: FakeSlack, client: WebClient) -> None:
    started = time.monotonic()
    slack.wait_idle(timeout=2)                       # nothing held
    assert time.monotonic() - started < 0.1

    slack.apply_late("chat.postMessage", HOLD)
    with pytest.raises(TimeoutError):
        client.chat_postMessage(channel=slack.channel, text="held")
    with pytest.raises(TimeoutError, match="still not applied"):
        slack.wait_idle(timeout=0.05)
    slack.wait_idle(timeout=2)
    assert [m["text"] for m in slack.messages] == ["held"]


def test_ts_increase_strictly_and_sort_as_strings(slack: FakeSlack, client: WebClient) -> None:
    stamps = [client.chat_postMessage(channel=slack.channel, text=str(i))["ts"] for i in range(12)]
    stamps.append(slack.add_foreign_message("person"))
    assert stamps == sorted(stamps) == sorted(stamps, key=float) and len(set(stamps)) == len(stamps)


# --- Sheets ----------------------------------------------------------------------------------------

@pytest.fixture
def sheets() -> Iterator[FakeSheets]:
    """A spreadsheet with one data tab (a header and three rows) and Google's default tab."""
    fake = FakeSheets().start()
    fake.add_tab("Data", [HEADER, ["O1", "ana"], ["O2", "bo"], ["O3", "cy"]])
    fake.add_tab("Sheet1")
    yield fake
    fake.stop()


@pytest.fixture
def gs(sheets: FakeSheets) -> gspread.http_client.HTTPClient:
    """gspread's HTTP client, authenticated with a service account against the fake's token endpoint
    and pointed at the fake, with a short read timeout."""
    key = json.dumps(service_account_key(f"{sheets.url}/token"))
    client = GoogleSheetResource(spreadsheet_id=sheets.spreadsheet_id, service_account_json=key,
                                 api_endpoint=sheets.url)._gspread_client()
    client.set_timeout((1.0, CLIENT_TIMEOUT))
    return client.http_client


def batch(gs: gspread.http_client.HTTPClient, sheets: FakeSheets, *changes: dict) -> list[dict]:
    return gs.batch_update(sheets.spreadsheet_id, {"requests": list(changes)})["replies"]


def api_error(call: Callable[[], Any]) -> tuple[int, str]:
    """(HTTP status, Google's message) of a call that must fail."""
    with pytest.raises(gspread.exceptions.APIError) as failure:
        call()
    return failure.value.response.status_code, failure.value.error["message"]


def grids(gs: gspread.http_client.HTTPClient, sheets: FakeSheets) -> dict[str, dict]:
    """Each tab's gridProperties, as spreadsheet metadata reports them."""
    metadata = gs.fetch_sheet_metadata(sheets.spreadsheet_id)
    return {s["properties"]["title"]: s["properties"]["gridProperties"] for s in metadata["sheets"]}


def delete_rows(sheet_id: int, start: int, end: int, dimension: str = "ROWS") -> dict:
    return {"deleteDimension": {"range": {"sheetId": sheet_id, "dimension": dimension,
                                          "startIndex": start, "endIndex": end}}}


def resize(sheet_id: int, **grid: int) -> dict:
    return {"updateSheetProperties": {"properties": {"sheetId": sheet_id, "gridProperties": grid},
                                      "fields": ",".join(f"gridProperties.{k}" for k in grid)}}


def append(gs: gspread.http_client.HTTPClient, sheets: FakeSheets, tab: str, *rows: list[str]) -> dict:
    return gs.values_append(sheets.spreadsheet_id, f"'{tab}'!A1", params={"valueInputOption": "RAW"},
                            body={"values": list(rows)})


def test_delete_dimension_shifts_the_rows_below_up(gs: gspread.http_client.HTTPClient, sheets: FakeSheets) -> None:
    assert batch(gs, sheets, delete_rows(sheets.sheet_id("Data"), 1, 3)) == [{}]    # rows 2-3 in A1 terms
    assert sheets.rows("Data") == [HEADER, ["O3", "cy"]]
    assert grids(gs, sheets)["Data"]["rowCount"] == 998

    append(gs, sheets, "Data", ["O4", "di"])     # the next append goes right under what is left
    assert sheets.rows("Data") == [HEADER, ["O3", "cy"], ["O4", "di"]]


@pytest.mark.parametrize(("change", "message"), [
    (delete_rows(99, 1, 2), "Invalid requests[0].deleteDimension: No grid with id: 99"),
    (delete_rows(1, 0, 1, dimension="COLUMNS"), "only deletes ROWS"),
    (delete_rows(1, 999, 1001), "Cannot delete a row that doesn't exist. Tried to delete row index 1000 but "
                                "there are only 1000 rows."),
    (delete_rows(1, 0, 1000), "You can't delete all the rows on the sheet."),
    (delete_rows(1, 2, 2), "must be less than endIndex"),
])
def test_delete_dimension_errors_change_nothing(gs: gspread.http_client.HTTPClient, sheets: FakeSheets,
                                                 change: dict, message: str) -> None:
    assert sheets.sheet_id("Data") == 1      # the parameters above address it by id
    before = sheets.rows("Data")
    status, text = api_error(lambda: batch(gs, sheets, change))
    assert status == 400 and message in text
    assert sheets.rows("Data") == before and grids(gs, sheets)["Data"]["rowCount"] == 1000


def test_delete_sheet_and_its_errors(gs: gspread.http_client.HTTPClient, sheets: FakeSheets) -> None:
    data, default = sheets.sheet_id("Data"), sheets.sheet_id("Sheet1")
    assert batch(gs, sheets, {"deleteSheet": {"sheetId": default}}) == [{}]
    assert list(sheets.tabs) == ["Data"]

    assert api_error(lambda: batch(gs, sheets, {"deleteSheet": {"sheetId": default}})) == (
        400, f"Invalid requests[0].deleteSheet: No grid with id: {default}")
    assert api_error(lambda: batch(gs, sheets, {"deleteSheet": {"sheetId": data}})) == (
        400, "Invalid requests[0].deleteSheet: You can't remove all the sheets in a document.")

    # A tab added again under the same name gets a new id: a stale id never reaches the new tab.
    [added] = batch(gs, sheets, {"addSheet": {"properties": {"title": "Sheet1"}}})
    assert added["addSheet"]["properties"]["sheetId"] not in (data, default)


def test_update_sheet_properties_sizes_the_grid(gs: gspread.http_client.HTTPClient, sheets: FakeSheets) -> None:
    [added] = batch(gs, sheets, {"addSheet": {"properties": {"title": "Narrow"}}})
    narrow = added["addSheet"]["properties"]["sheetId"]
    assert added["addSheet"]["properties"]["gridProperties"] == {"rowCount": 1000, "columnCount": 26}

    assert batch(gs, sheets, resize(narrow, columnCount=2, rowCount=5)) == [{}]
    assert grids(gs, sheets)["Narrow"] == {"rowCount": 5, "columnCount": 2}
    assert grids(gs, sheets)["Data"] == {"rowCount": 1000, "columnCount": 26}      # others keep the default

    # An update beyond the grid fails as in Google; an append grows the grid instead.
    gs.values_update(sheets.spreadsheet_id, "'Narrow'!A1", params={"valueInputOption": "RAW"},
                     body={"values": [HEADER]})
    status, text = api_error(lambda: gs.values_update(
        sheets.spreadsheet_id, "'Narrow'!A2", params={"valueInputOption": "RAW"}, body={"values": [["a", "b", "c"]]}))
    assert status == 400 and "exceeds grid limits. Max rows: 5, max columns: 2" in text
    append(gs, sheets, "Narrow", *[[f"O{i}", "x", "extra"] for i in range(6)])
    assert grids(gs, sheets)["Narrow"] == {"rowCount": 7, "columnCount": 3}

    # Shrinking drops the cells that no longer fit.
    batch(gs, sheets, resize(narrow, rowCount=2, columnCount=1))
    assert sheets.rows("Narrow") == [["Order ID"], ["O0"]]

    assert api_error(lambda: batch(gs, sheets, resize(99, columnCount=3)))[1].endswith("No grid with id: 99")
    status, text = api_error(lambda: batch(gs, sheets, {"updateSheetProperties": {
        "properties": {"sheetId": narrow, "title": "Renamed"}, "fields": "title"}}))
    assert status == 400 and "only updates gridProperties" in text


def test_batch_update_applies_in_order_with_one_reply_per_request(
        gs: gspread.http_client.HTTPClient, sheets: FakeSheets) -> None:
    tiny = {"rowCount": 1, "columnCount": 1}
    replies = batch(gs, sheets,
                    {"addSheet": {"properties": {"title": "Lock", "gridProperties": tiny}}},
                    delete_rows(sheets.sheet_id("Data"), 3, 4),
                    {"deleteSheet": {"sheetId": sheets.sheet_id("Sheet1")}})
    assert [next(iter(r), None) for r in replies] == ["addSheet", None, None]
    assert replies[0]["addSheet"]["properties"] | {"sheetId": 0} == {
        "sheetId": 0, "title": "Lock", "index": 2, "sheetType": "GRID",
        "gridProperties": tiny}
    assert list(sheets.tabs) == ["Data", "Lock"] and sheets.rows("Data")[-1] == ["O2", "bo"]


def test_batch_update_is_all_or_nothing(gs: gspread.http_client.HTTPClient, sheets: FakeSheets) -> None:
    before = {tab: sheets.rows(tab) for tab in sheets.tabs}
    status, text = api_error(lambda: batch(gs, sheets,
                                           {"addSheet": {"properties": {"title": "Lock"}}},
                                           delete_rows(sheets.sheet_id("Data"), 1, 2),
                                           {"deleteSheet": {"sheetId": 99}}))
    assert (status, text) == (400, "Invalid requests[2].deleteSheet: No grid with id: 99")
    assert {tab: sheets.rows(tab) for tab in sheets.tabs} == before     # no Lock tab, no row deleted

    # The same name twice in one batch: the second addSheet fails, so the first is not applied either.
    add_lock = {"addSheet": {"properties": {"title": "Lock"}}}
    status, text = api_error(lambda: batch(gs, sheets, add_lock, add_lock))
    assert status == 400 and text.startswith('Invalid requests[1].addSheet: A sheet with the name "Lock" already')
    assert "Lock" not in sheets.tabs


def test_late_append_lands_after_a_second_append(gs: gspread.http_client.HTTPClient, sheets: FakeSheets) -> None:
    sheets.apply_late(HOLD)
    started = time.monotonic()

    # gspread lets requests' ReadTimeout through (no APIError, no retry of its own).
    with pytest.raises(requests.exceptions.ReadTimeout):
        append(gs, sheets, "Data", ["O4", "late"])
    append(gs, sheets, "Data", ["O5", "retry"])
    seen = gs.values_get(sheets.spreadsheet_id, "'Data'")["values"]
    assert time.monotonic() - started < HOLD          # served while the first append was held
    assert seen[-1] == ["O5", "retry"] and ["O4", "late"] not in seen

    sheets.wait_idle(timeout=2)
    assert sheets.rows("Data")[-2:] == [["O5", "retry"], ["O4", "late"]]   # after the last row at apply time
    assert len(sheets.calls("append")) == 2


def test_late_add_sheet_fails_once_the_retry_added_the_tab(
        gs: gspread.http_client.HTTPClient, sheets: FakeSheets) -> None:
    # What a lock built on addSheet meets: the first attempt is applied after the retry took the lock.
    sheets.apply_late(HOLD, op="batchUpdate")
    add_lock = {"addSheet": {"properties": {"title": "Lock"}}}
    with pytest.raises(requests.exceptions.ReadTimeout):
        batch(gs, sheets, add_lock)
    [added] = batch(gs, sheets, add_lock)
    sheets.wait_idle(timeout=2)

    assert list(sheets.tabs).count("Lock") == 1
    assert sheets.sheet_id("Lock") == added["addSheet"]["properties"]["sheetId"]     # the retry's tab stays
    assert len(sheets.calls("batchUpdate")) == 2


def test_late_values_batch_update_and_unknown_ops(gs: gspread.http_client.HTTPClient, sheets: FakeSheets) -> None:
    sheets.apply_late(HOLD, op="valuesBatchUpdate")
    body = {"valueInputOption": "RAW", "data": [{"range": "'Data'!B2", "values": [["late"]]}]}
    with pytest.raises(requests.exceptions.ReadTimeout):
        gs.values_batch_update(sheets.spreadsheet_id, body)
    assert sheets.rows("Data")[1] == ["O1", "ana"]      # not applied yet
    sheets.wait_idle(timeout=2)
    assert sheets.rows("Data")[1] == ["O1", "late"]

    with pytest.raises(ValueError, match="unknown op"):
        sheets.apply_late(HOLD, op="appendRows")


def test_drop_next_append_still_applies_then_drops(gs: gspread.http_client.HTTPClient, sheets: FakeSheets) -> None:
    sheets.drop_next_append()
    with pytest.raises(requests.exceptions.ConnectionError):
        append(gs, sheets, "Data", ["O4", "dropped"])
    assert sheets.rows("Data")[-1] == ["O4", "dropped"]
