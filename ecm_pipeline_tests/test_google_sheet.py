"""The Google Sheet store, driven through the real gspread client against a fake Sheets API: same
results as the local store, values written RAW, headers matched by name, bounded retries that never
append a row twice, a constant number of API calls, and no credential material in any message.
The last tests run the whole Dagster chain on it."""

from __future__ import annotations

import json
import logging
import shutil
import traceback
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ecm_pipeline.assets import triage_assets
from ecm_pipeline.checks import quality_gates
from ecm_pipeline.domain import tickets
from ecm_pipeline.resources import environment_resources
from ecm_pipeline.resources.google_sheet import GoogleSheetResource
from ecm_pipeline.resources.sheet import ROW, LocalSheetStore, SheetError
from ecm_pipeline_tests.conftest import QUIET, copy_demo
from ecm_pipeline_tests.fakes.sheets_server import FakeSheets

AGENT_COLUMNS = list(tickets.AGENT_COLUMNS)
ASSIGNMENT_COLUMNS = list(tickets.ASSIGNMENT_COLUMNS)

RUN = "2026-11-21-14:00"
OPEN_STATES = ["OPEN", "IN_PROGRESS", "ESCALATED"]


@pytest.fixture(scope="module")
def key_info() -> dict[str, str]:
    """A service-account key shaped like Google's, with a real (throwaway) RSA private key."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    return {
        "type": "service_account",
        "project_id": "ecm-test",
        "private_key_id": "0f3c9a1d2b7e4c5f8a6b9d0e1f2a3b4c5d6e7f80",
        "private_key": pem,
        "client_email": "ecm-triage-bot@ecm-test.iam.gserviceaccount.com",
        "client_id": "104242424242424242424",
        "token_uri": "https://oauth2.googleapis.com/token",
    }


@pytest.fixture
def key_json(key_info: dict[str, str]) -> str:
    return json.dumps(key_info)


def secrets_of(key_info: dict[str, str]) -> list[str]:
    """Strings that must never appear anywhere: the key, a line of its body, its id and e-mail."""
    body_line = key_info["private_key"].splitlines()[5]
    return [key_info["private_key"], body_line, key_info["private_key_id"], key_info["client_email"]]


@pytest.fixture
def fake() -> Iterator[FakeSheets]:
    """A spreadsheet with both tabs holding just their headers."""
    fake = FakeSheets().start()
    fake.add_tab("Agents", [AGENT_COLUMNS])
    fake.add_tab("Assignments", [ASSIGNMENT_COLUMNS])
    yield fake
    fake.stop()


@pytest.fixture
def bare_fake() -> Iterator[FakeSheets]:
    """A new spreadsheet: only Google's default tab."""
    fake = FakeSheets().start()
    fake.add_tab("Sheet1")
    yield fake
    fake.stop()


@pytest.fixture
def dagster_logs() -> Iterator[list[str]]:
    """Every line logged through Dagster's Python loggers during the test (pytest's logging plugin is off)."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Collect()
    logger = logging.getLogger("dagster")
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)


def everything_in(error: BaseException) -> str:
    """The error as a traceback would show it, chained causes and contexts included."""
    return "".join(traceback.format_exception(error))


def for_fake(key_json: str, fake: FakeSheets) -> str:
    """The key, its token endpoint on the fake: the real google-auth JWT grant runs against it."""
    return json.dumps({**json.loads(key_json), "token_uri": f"{fake.url}/token"})


def sheet(fake: FakeSheets, key_json: str, **overrides) -> GoogleSheetResource:
    return GoogleSheetResource(spreadsheet_id=fake.spreadsheet_id, service_account_json=for_fake(key_json, fake),
                               api_endpoint=fake.url, **{"backoff_seconds": 0, **overrides})


def assignment_rows(count: int, start: int = 0, run: str = RUN, **overrides: str) -> pd.DataFrame:
    rows = [{"Order ID": f"AE{i:010d}", "Assigned Agent": "ana.lopez@aspora.com",
             "Assigned At": "2026-11-21 14:00:05+0400", "Status": "OPEN", "Priority": "P1", "Currency": "AED",
             "Amount": "5250.0", "Hours Stuck": "30.5", "Diagnosis": "falcon_failed", "Notes": "Retry payout",
             "Triage Run": run, **overrides} for i in range(start, start + count)]
    return pd.DataFrame(rows, columns=ASSIGNMENT_COLUMNS)


def ops(fake: FakeSheets) -> Counter[str]:
    return Counter(r.op for r in fake.requests)


def as_read(frame: pd.DataFrame) -> pd.DataFrame:
    """A tab as read, without the row positions the store adds."""
    return frame.drop(columns=ROW).reset_index(drop=True)


# --- the store ---------------------------------------------------------------------------------------


def test_read_append_round_trip(fake: FakeSheets, key_json: str) -> None:
    fake.add_tab("Agents", [AGENT_COLUMNS, ["Ana.Lopez@aspora.com", "Ana", "Ops", "@ana", "TRUE", "007"]])
    store = sheet(fake, key_json).store()

    agents = store.read_tab("Agents")
    assert as_read(agents).to_dict("records") == [dict(zip(AGENT_COLUMNS, ["Ana.Lopez@aspora.com", "Ana", "Ops",
                                                                          "@ana", "TRUE", "007"], strict=True))]
    assert agents[ROW].tolist() == [2]
    assert store.read_tab("Assignments").empty
    assert list(store.read_tab("Assignments").columns) == [ROW, *ASSIGNMENT_COLUMNS]

    rows = assignment_rows(3)
    assert store.append_rows("Assignments", rows) == 3
    pd.testing.assert_frame_equal(as_read(store.read_tab("Assignments")), rows.astype(object))
    assert fake.tabs["Assignments"][1:] == rows.values.tolist()
    assert ops(fake)["append"] == 1 and len(fake.calls("append")[0].body["values"]) == 3
    assert store.append_rows("Assignments", rows.iloc[:0]) == 0


def test_values_are_written_raw_and_stay_text(fake: FakeSheets, key_json: str) -> None:
    tricky = ["=SUM(A1)", "+1", "-1", "@x"]
    rows = pd.concat([assignment_rows(1, start=i, Notes=v, Diagnosis=v) for i, v in enumerate(tricky)],
                     ignore_index=True)
    store = sheet(fake, key_json).store()
    store.append_rows("Assignments", rows)

    notes = ASSIGNMENT_COLUMNS.index("Notes")
    assert [r[notes] for r in fake.tabs["Assignments"][1:]] == tricky
    assert store.read_tab("Assignments")["Notes"].tolist() == tricky
    writes = fake.calls("append") + fake.calls("update")
    assert writes and all(r.query["valueInputOption"] == ["RAW"] for r in writes)
    assert all(r.body["valueInputOption"] == "RAW" for r in fake.calls("valuesBatchUpdate"))


def test_missing_tabs_are_created_with_exactly_their_columns(bare_fake: FakeSheets, key_json: str) -> None:
    store = sheet(bare_fake, key_json).store()
    store.read_tabs(["Agents", "Assignments"])

    assert bare_fake.tabs["Agents"] == [AGENT_COLUMNS]
    assert bare_fake.tabs["Assignments"] == [ASSIGNMENT_COLUMNS]
    assert bare_fake.grid("Assignments")[1] == len(ASSIGNMENT_COLUMNS)   # not Google's default 26 columns
    (add,) = bare_fake.calls("batchUpdate")
    assert [r["addSheet"]["properties"]["title"] for r in add.body["requests"]] == list(tickets.TABS)
    assert ops(bare_fake) == {"metadata": 1, "batchUpdate": 1, "valuesBatchUpdate": 1, "batchGet": 1}

    again = sheet(bare_fake, key_json).store()
    assert again.read_tab("Agents").empty
    assert ops(bare_fake) == {"metadata": 2, "batchUpdate": 1, "valuesBatchUpdate": 1, "batchGet": 2}


def test_tabs_are_found_whatever_their_case_and_empty_tabs_get_headers(bare_fake: FakeSheets, key_json: str) -> None:
    bare_fake.add_tab("agents", [AGENT_COLUMNS, ["ana@aspora.com", "Ana", "Ops", "@ana", "yes", ""]])
    bare_fake.add_tab("Assignments")          # someone made the tab but left it empty
    store = sheet(bare_fake, key_json).store()

    assert store.read_tab("Agents")["Email"].tolist() == ["ana@aspora.com"]
    assert store.append_rows("Assignments", assignment_rows(2)) == 2
    assert bare_fake.tabs["Assignments"] == [ASSIGNMENT_COLUMNS, *assignment_rows(2).values.tolist()]
    assert set(bare_fake.tabs) == {"Sheet1", "agents", "Assignments"} and not bare_fake.calls("batchUpdate")


def test_unrecognisable_headers_are_refused(fake: FakeSheets, key_json: str) -> None:
    header = ["Order", *ASSIGNMENT_COLUMNS[1:-1]]      # "Order ID" renamed, "Triage Run" deleted
    fake.add_tab("Assignments", [header, ["AE1", "ana@aspora.com"]])
    store = sheet(fake, key_json).store()

    for call in (lambda: store.read_tab("Assignments"), lambda: store.append_rows("Assignments", assignment_rows(1))):
        with pytest.raises(SheetError) as error:
            call()
        message = str(error.value)
        assert message.startswith("Assignments: the header row is missing Order ID, Triage Run")
        assert "row 1 has: Order, Assigned Agent" in message
    assert not fake.calls("append")
    assert fake.tabs["Assignments"] == [header, ["AE1", "ana@aspora.com"]]


def test_blank_rows_and_extra_columns_are_tolerated(fake: FakeSheets, key_json: str) -> None:
    # People moved columns, changed case and spacing, added their own columns and left blank rows.
    header = ["Comment", "triage run", "  ORDER   id ", "Assigned Agent", "Escalated To", *ASSIGNMENT_COLUMNS[2:10]]
    first = ["call back", RUN, "AE1", "ana@aspora.com", "", "t", "OPEN", "P1", "AED", "10", "13", "x", "n"]
    fake.add_tab("Assignments", [header, first, [], ["", "", ""], ["only a comment"], ["", "r2", "AE2"]])
    store = sheet(fake, key_json).store()

    before = store.read_tab("Assignments")
    assert list(before.columns) == [ROW, *ASSIGNMENT_COLUMNS] and before[ROW].tolist() == [2, 6]
    assert before[["Order ID", "Triage Run", "Assigned Agent", "Notes"]].values.tolist() == [
        ["AE1", RUN, "ana@aspora.com", "n"], ["AE2", "r2", "", ""]]

    rows = assignment_rows(2, start=7)
    store.append_rows("Assignments", rows)
    (append,) = fake.calls("append")
    line = append.body["values"][0]
    assert line[0] is None and line[4] is None            # people's own columns are left alone
    added = fake.tabs["Assignments"][-2:]
    for cells, expected in zip(added, rows.to_dict("records"), strict=True):
        assert cells[header.index("  ORDER   id ")] == expected["Order ID"]
        assert cells[header.index("triage run")] == expected["Triage Run"]
        assert cells[header.index("Notes")] == expected["Notes"]
        assert cells[0] == "" and cells[4] == ""
    after = store.read_tab("Assignments")
    assert after["Order ID"].tolist() == ["AE1", "AE2", *rows["Order ID"]]
    pd.testing.assert_frame_equal(as_read(after.iloc[2:]), rows.astype(object))


@pytest.mark.parametrize("status", [429, 500, 503])
def test_quota_and_server_errors_are_retried_with_backoff(fake: FakeSheets, key_json: str, status: int,
                                                          dagster_logs: list[str]) -> None:
    store = sheet(fake, key_json, backoff_seconds=0.01).store()
    fake.fail_next(status, count=2, op="append")
    assert store.append_rows("Assignments", assignment_rows(5)) == 5
    assert ops(fake)["append"] == 3 and len(fake.tabs["Assignments"]) == 6
    assert [line.rsplit("(", 1)[-1] for line in dagster_logs if "appending" in line] == [
        "attempt 2/4 next)", "attempt 3/4 next)"]

    fake.fail_next(status, count=1, op="batchGet")
    assert store.read_tab("Assignments")["Order ID"].tolist() == assignment_rows(5)["Order ID"].tolist()
    assert ops(fake)["batchGet"] == 2


@pytest.mark.parametrize("tab", ["Assignments", "Agents"])
def test_append_whose_response_was_lost_is_not_repeated(fake: FakeSheets, key_json: str, tab: str) -> None:
    rows = assignment_rows(4) if tab == "Assignments" else pd.DataFrame(
        [[f"agent{i}@aspora.com", f"Agent {i}", "Ops", f"@a{i}", "TRUE", "10"] for i in range(4)],
        columns=AGENT_COLUMNS)
    fake.drop_next_append()
    store = sheet(fake, key_json).store()

    assert store.append_rows(tab, rows) == 4
    assert fake.tabs[tab][1:] == rows.values.tolist()
    assert ops(fake)["append"] == 1                       # the retry saw the rows and wrote nothing
    assert fake.calls("get")[-1].path.endswith(f"/values/'{tab}'")  # ... after reading the whole tab


def test_a_retry_appends_only_the_rows_not_already_there(fake: FakeSheets, key_json: str) -> None:
    rows = assignment_rows(3)
    fake.fail_next(500, count=1, op="append")
    store = sheet(fake, key_json).store()
    fake.add_tab("Assignments", [ASSIGNMENT_COLUMNS, rows.values.tolist()[0]])  # e.g. written by a parallel run

    assert store.append_rows("Assignments", rows) == 3
    assert fake.tabs["Assignments"][1:] == rows.values.tolist()


def test_persistent_server_error_is_a_clear_error_and_a_later_call_succeeds(
        fake: FakeSheets, key_json: str, key_info: dict, dagster_logs: list[str]) -> None:
    store = sheet(fake, key_json).store()
    fake.fail_next(500, count=100, op="append")
    with pytest.raises(SheetError) as error:
        store.append_rows("Assignments", assignment_rows(3))
    assert str(error.value) == ("Google Sheet sheet-test: Assignments: appending 3 rows failed after 4 attempts: "
                                "HTTP 500 INTERNAL: Internal error encountered.")
    assert error.value.__cause__ is None and error.value.__suppress_context__
    assert ops(fake)["append"] == 4 and len(fake.tabs["Assignments"]) == 1
    assert len([line for line in dagster_logs if "next)" in line]) == 3

    fake.clear_faults()
    assert store.append_rows("Assignments", assignment_rows(3)) == 3
    assert fake.tabs["Assignments"][1:] == assignment_rows(3).values.tolist()


def test_permission_errors_are_not_retried(fake: FakeSheets, key_json: str) -> None:
    store = sheet(fake, key_json).store()
    fake.fail_next(403, op="batchGet", message="The caller does not have permission")
    with pytest.raises(SheetError, match="reading Agents failed: HTTP 403 PERMISSION_DENIED: The caller "
                                         "does not have permission$"):
        store.read_tab("Agents")
    assert ops(fake)["batchGet"] == 1


def test_update_rows_is_a_compare_and_set_in_a_constant_number_of_calls(fake: FakeSheets, key_json: str) -> None:
    store = sheet(fake, key_json).store()
    store.append_rows("Assignments", assignment_rows(30))
    tab = store.read_tab("Assignments")
    fake.tabs["Assignments"][3][3] = "IN_PROGRESS"        # someone started row 3 after the read
    before = sum(ops(fake).values())
    changed = store.update_rows("Assignments", tab, ["Order ID", "Status"], {"Status": "RESOLVED"})
    assert changed == 29 and sum(ops(fake).values()) - before <= 5
    statuses = store.read_tab("Assignments")["Status"].tolist()
    assert statuses[2] == "IN_PROGRESS" and statuses.count("RESOLVED") == 29


def test_api_calls_do_not_grow_with_rows(key_json: str) -> None:
    counts = []
    for size in (10, 1_000):
        with_fake = FakeSheets().start()
        try:
            with_fake.add_tab("Agents", [AGENT_COLUMNS])
            with_fake.add_tab("Assignments", [ASSIGNMENT_COLUMNS, *assignment_rows(size, run="old").values.tolist()])
            store = sheet(with_fake, key_json).store()
            tabs = store.read_tabs(["Agents", "Assignments"])
            assert len(tabs["Assignments"]) == size
            assert store.append_rows("Assignments", assignment_rows(size, start=size)) == size
            assert len(store.read_tab("Assignments")) == 2 * size
            counts.append(ops(with_fake))
        finally:
            with_fake.stop()
    assert counts[0] == counts[1] == {"metadata": 1, "batchGet": 2, "get": 1, "append": 1}


def test_check_opens_the_spreadsheet_and_reads_every_header(fake: FakeSheets, bare_fake: FakeSheets,
                                                            key_json: str) -> None:
    assert sheet(fake, key_json).check() == "spreadsheet ECM Operations (test): tabs Agents, Assignments ok"
    assert ops(fake) == {"metadata": 1, "batchGet": 1}

    with pytest.raises(SheetError, match=r"tabs Agents, Assignments not found \(tabs: Sheet1\); create Agents with "
                                         r"the headers Email, Name"):
        sheet(bare_fake, key_json).check()
    fake.add_tab("Agents", [["Email", "Name"]])
    with pytest.raises(SheetError, match="^Agents: the header row is missing Team, Slack Handle, Active, Max Tickets"):
        sheet(fake, key_json).check()
    fake.add_tab("Agents")
    with pytest.raises(SheetError, match="tab Agents is empty; put the headers Email, Name"):
        sheet(fake, key_json).check()


def test_key_may_be_a_file_path(fake: FakeSheets, key_json: str, tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    path.write_text(for_fake(key_json, fake))
    resource = GoogleSheetResource(spreadsheet_id=fake.spreadsheet_id, service_account_json=str(path),
                                   api_endpoint=fake.url)
    assert resource.check().endswith("ok")


def test_no_secret_in_errors_describe_or_logs(fake: FakeSheets, key_info: dict, key_json: str,
                                              dagster_logs: list[str]) -> None:
    secrets = secrets_of(key_info)
    messages: list[str] = []
    resource = sheet(fake, key_json, max_attempts=2)
    messages += [resource.describe(), repr(resource), str(resource)]

    # Google's error text may name the account: it is scrubbed.
    for status, op, text in [(403, "batchGet", "{} does not have permission to access it"),
                             (429, "metadata", "Quota exceeded for {}")]:
        fake.fail_next(status, count=2, op=op, message=text.format(key_info["client_email"]))
        with pytest.raises(SheetError) as error:
            resource.store().read_tab("Agents")
        messages.append(str(error.value))
        messages.append(everything_in(error.value))
    assert "<e-mail> does not have permission" in messages[-4] and "Quota exceeded for <e-mail>" in messages[-2]

    # Production mode builds its client offline from the key; broken keys are reported without echoing them.
    production = GoogleSheetResource(spreadsheet_id="prod-sheet", service_account_json=key_json)
    production.store()
    messages.append(production.describe())
    broken = {
        "not json": key_json[:-1],
        "a key with a corrupt private key": json.dumps({**key_info, "private_key": key_info["private_key"][:300]}),
        "a key without an e-mail": json.dumps({k: v for k, v in key_info.items() if k != "client_email"}),
        "a path that does not exist": "/nonexistent/" + key_info["private_key_id"] + ".json",
    }
    for value in broken.values():
        with pytest.raises(SheetError) as error:
            GoogleSheetResource(spreadsheet_id="prod-sheet", service_account_json=value).store()
        messages.append(everything_in(error.value))
        messages.append(str(error.value))
    assert messages[-7::2] == [
        "GOOGLE_SERVICE_ACCOUNT_JSON is not valid JSON",
        "GOOGLE_SERVICE_ACCOUNT_JSON: the private key could not be loaded",
        "GOOGLE_SERVICE_ACCOUNT_JSON is not a service-account key (missing client_email)",
        "GOOGLE_SERVICE_ACCOUNT_JSON is neither a service-account key in JSON nor the path of a readable key file",
    ]
    assert dagster_logs
    for text in messages + dagster_logs:
        assert not any(secret in text for secret in secrets), text


# --- the whole chain ---------------------------------------------------------------------------------


def seed_from_demo(fake: FakeSheets, home: Path, max_tickets: str | None = None) -> None:
    """Copy the demo's local sheet (roster and earlier tickets) into the fake Google Sheet, optionally
    giving every agent room for `max_tickets`."""
    local = LocalSheetStore(str(home / "sheet.sqlite"))
    for tab, columns in tickets.TABS.items():
        frame = local.read_tab(tab)
        if tab == "Agents" and max_tickets:
            frame["Max Tickets"] = max_tickets
        fake.add_tab(tab, [list(columns), *frame[list(columns)].values.tolist()])


def run_chain(key: str, fake: FakeSheets, key_json: str, instance: dg.DagsterInstance | None = None,
              **kwargs) -> dg.ExecuteInProcessResult:
    resources = {**environment_resources(),
                 "sheet": sheet(fake, key_json)}
    return dg.materialize([*triage_assets, *quality_gates], partition_key=key, resources=resources,
                          instance=instance or dg.DagsterInstance.ephemeral(), run_config=QUIET, **kwargs)


def new_assignments(result: dg.ExecuteInProcessResult) -> int:
    for event in result.get_asset_materialization_events():
        if event.materialization.asset_key.to_user_string() == "assignments":
            return event.materialization.metadata["new_assignments"].value
    raise AssertionError("assignments was not materialized")


def tab(fake: FakeSheets) -> pd.DataFrame:
    rows = fake.rows("Assignments")
    return pd.DataFrame([r + [""] * (len(ASSIGNMENT_COLUMNS) - len(r)) for r in rows[1:]], columns=ASSIGNMENT_COLUMNS)


def assert_no_open_duplicates(fake: FakeSheets) -> None:
    sheet_rows = tab(fake)
    open_rows = sheet_rows[sheet_rows["Status"].str.strip().str.upper().isin(OPEN_STATES)]
    assert not open_rows["Order ID"].duplicated().any()
    assert not sheet_rows.duplicated(["Order ID", "Triage Run"]).any()


def assert_wrote_once(fake: FakeSheets, key: str, result: dg.ExecuteInProcessResult, rows_before: int) -> pd.DataFrame:
    """The run's new tickets are in the sheet exactly once, and no order is open twice."""
    mine = tab(fake)[lambda t: t["Triage Run"] == key]
    assert len(mine) == new_assignments(result) > 0
    assert len(tab(fake)) == rows_before + len(mine)
    assert_no_open_duplicates(fake)
    return mine


def test_whole_chain_on_google_sheet_and_reruns_add_nothing(demo_env, bare_fake: FakeSheets, key_json: str) -> None:
    home, key = demo_env
    seed_from_demo(bare_fake, home)
    local_before = len(LocalSheetStore(str(home / "sheet.sqlite")).read_tab("Assignments"))
    rows_before = len(tab(bare_fake))

    instance = dg.DagsterInstance.ephemeral()
    result = run_chain(key, bare_fake, key_json, instance)
    assert result.success
    mine = assert_wrote_once(bare_fake, key, result, rows_before)
    assert len(LocalSheetStore(str(home / "sheet.sqlite")).read_tab("Assignments")) == local_before

    for _ in range(2):
        again = run_chain(key, bare_fake, key_json, instance)
        assert again.success and new_assignments(again) == 0
    assert len(tab(bare_fake)) == rows_before + len(mine)
    assert_no_open_duplicates(bare_fake)


@pytest.mark.parametrize("fault", ["500 once", "response lost", "500 every time"])
def test_whole_chain_survives_sheet_faults(demo_env, bare_fake: FakeSheets, key_json: str, fault: str) -> None:
    home, key = demo_env
    seed_from_demo(bare_fake, home)
    rows_before = len(tab(bare_fake))
    if fault == "500 once":
        bare_fake.fail_next(500, op="append")
    elif fault == "response lost":
        bare_fake.drop_next_append()
    else:
        bare_fake.fail_next(500, count=100, op="append")

    instance = dg.DagsterInstance.ephemeral()
    result = run_chain(key, bare_fake, key_json, instance, raise_on_error=False)
    if fault == "500 every time":
        assert not result.success
        (failure,) = result.get_step_failure_events()
        assert failure.step_key == "assignment"
        error = failure.step_failure_data.error
        messages = [error.message] + ([error.cause.message] if error.cause else [])
        assert any("Assignments: appending" in m and "failed after 4 attempts: HTTP 500 INTERNAL" in m
                   for m in messages), messages
        assert len(tab(bare_fake)) == rows_before
        bare_fake.clear_faults()
        result = run_chain(key, bare_fake, key_json, instance)
    assert result.success
    assert_wrote_once(bare_fake, key, result, rows_before)
    # the fault happened: one failed append, none repeated after the lost one, four failed then the re-run's
    assert len(bare_fake.calls("append")) == {"500 once": 2, "response lost": 1, "500 every time": 5}[fault]


def test_api_calls_per_run_do_not_depend_on_scale(ecm_env: Path, key_json: str, live_demo, small_live_demo) -> None:
    counts, written = {}, {}
    for name, (template, key) in {"small": small_live_demo, "full": live_demo}.items():
        shutil.rmtree(ecm_env, ignore_errors=True)
        copy_demo(template, ecm_env)
        fake = FakeSheets().start()
        try:
            seed_from_demo(fake, ecm_env, max_tickets="200")   # room for everything: rows grow with scale
            result = run_chain(key, fake, key_json)
            assert result.success
            counts[name], written[name] = ops(fake), new_assignments(result)
        finally:
            fake.stop()
    assert written["full"] > written["small"] > 0
    assert counts["small"] == counts["full"]
    assert counts["full"]["append"] == 1


def test_the_field_commands_work_on_google_sheets(fake: FakeSheets, key_json: str, ecm_env: Path, monkeypatch,
                                                  capsys) -> None:
    from ecm_pipeline.cli import main

    fake.add_tab("Agents", [AGENT_COLUMNS, ["ana.lopez@aspora.com", "Ana", "Ops", "", "TRUE", "10"]])
    fake.add_tab("Assignments", [ASSIGNMENT_COLUMNS, *assignment_rows(3).values.tolist()])
    monkeypatch.setenv("SPREADSHEET_ID", fake.spreadsheet_id)
    monkeypatch.setenv("GOOGLE_SERVICE_ACCOUNT_JSON", for_fake(key_json, fake))
    monkeypatch.setenv("GOOGLE_SHEETS_API_ENDPOINT", fake.url)
    monkeypatch.setenv("ECM_AGENT", "Ana.Lopez@aspora.com")
    first, second = assignment_rows(2)["Order ID"]
    assert main(["start", first]) == 0
    assert main(["resolve", first, "--notes", "done"]) == 0
    assert main(["escalate", second, "--reason", "partner silent"]) == 0
    assert main(["resolve", first, "--notes", "again"]) == 1
    assert "already RESOLVED" in capsys.readouterr().err
    assert tab(fake)["Status"].tolist()[:2] == ["RESOLVED", "ESCALATED"]
    assert [r[1] for r in fake.rows("Resolutions")[1:]] == [first]
    assert [r[1] for r in fake.rows("Escalations")[1:]] == [second]
    assert [(r[4], r[5]) for r in fake.rows("Audit Log")[1:]] == [("OPEN", "IN_PROGRESS"), ("IN_PROGRESS", "RESOLVED"),
                                                                  ("OPEN", "ESCALATED")]
    assert not any(t.startswith("_ecm_lock") for t in fake.tabs)     # every lock released
