"""Environment switching and `ecm check`: each integration switches on by its own variables,
resolves secrets only at run time, and `ecm check` tests it for real without printing secrets."""

from __future__ import annotations

import socket

import dagster as dg
import pytest

from ecm_pipeline.cli import main
from ecm_pipeline.resources import environment_resources, missing_variables
from ecm_pipeline.resources.sheet import SheetResource
from ecm_pipeline.resources.slack import SlackResource
from ecm_pipeline.resources.warehouse import WarehouseResource

ALL_VARIABLES = ("ECM_WAREHOUSE_URL", "REDSHIFT_HOST", "REDSHIFT_PORT", "REDSHIFT_USER", "REDSHIFT_PASSWORD",
                 "REDSHIFT_DATABASE", "GOOGLE_SERVICE_ACCOUNT_JSON", "SPREADSHEET_ID", "SLACK_BOT_TOKEN",
                 "SLACK_CHANNEL_ID", "SLACK_API_BASE_URL")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ALL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_variables_means_the_local_default() -> None:
    resources = environment_resources()
    assert isinstance(resources["warehouse"], WarehouseResource) and not resources["warehouse"].host
    assert isinstance(resources["sheet"], SheetResource)
    assert isinstance(resources["slack"], SlackResource)
    assert missing_variables() == {}


def test_redshift_variables_build_a_read_only_redshift_resource(monkeypatch) -> None:
    monkeypatch.setenv("REDSHIFT_HOST", "cluster.example.internal")
    monkeypatch.setenv("REDSHIFT_USER", "ecm_reader")
    monkeypatch.setenv("REDSHIFT_PASSWORD", "Top-Secret-Pw")
    monkeypatch.setenv("REDSHIFT_DATABASE", "dev")
    resource = environment_resources()["warehouse"]
    assert "Top-Secret-Pw" not in repr(resource)  # an EnvVar reference until a run resolves it
    with dg.build_resources({"warehouse": resource}) as built:
        assert built.warehouse.describe() == "redshift+psycopg2://ecm_reader:***@cluster.example.internal:5439/dev"


def test_check_reports_an_unreachable_warehouse_without_the_password(ecm_env, monkeypatch, capsys) -> None:
    port = free_port()
    monkeypatch.setenv("REDSHIFT_HOST", "127.0.0.1")
    monkeypatch.setenv("REDSHIFT_PORT", str(port))
    monkeypatch.setenv("REDSHIFT_USER", "ecm_reader")
    monkeypatch.setenv("REDSHIFT_PASSWORD", "Top-Secret-Pw")
    monkeypatch.setenv("REDSHIFT_DATABASE", "dev")
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert f"warehouse  failing  cannot reach the warehouse at 127.0.0.1:{port}" in out
    assert "Top-Secret-Pw" not in out


def test_check_names_the_missing_variables_of_a_half_configured_integration(ecm_env, monkeypatch, capsys) -> None:
    monkeypatch.setenv("REDSHIFT_HOST", "cluster.example.internal")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-Secret-Token")
    assert missing_variables() == {
        "warehouse": ["REDSHIFT_USER", "REDSHIFT_PASSWORD", "REDSHIFT_DATABASE"],
        "slack": ["SLACK_CHANNEL_ID"],
    }
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert "warehouse  missing  set REDSHIFT_USER, REDSHIFT_PASSWORD, REDSHIFT_DATABASE" in out
    assert "slack      missing  set SLACK_CHANNEL_ID" in out
    assert "xoxb-Secret-Token" not in out


def test_check_on_a_real_postgres_warehouse(pg, demo_env, monkeypatch, capsys) -> None:
    monkeypatch.setenv("ECM_WAREHOUSE_URL", pg["url"])
    assert main(["check"]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "warehouse  ok       postgresql+psycopg2://ecm_reader:***@/postgres" in out
    assert "contract tables present, with orders_goms_history" in out
    assert "reader-Pa55-word" not in out


def test_check_tests_slack_for_real_and_never_prints_the_token(ecm_env, monkeypatch, capsys) -> None:
    from ecm_pipeline_tests.fakes.slack_server import FakeSlack

    fake = FakeSlack(token="xoxb-Real-Looking-Secret", channel="C0TEST").start()
    try:
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-Real-Looking-Secret")
        monkeypatch.setenv("SLACK_CHANNEL_ID", "C0TEST")
        monkeypatch.setenv("SLACK_API_BASE_URL", fake.url)
        main(["check"])
        out = capsys.readouterr().out
        assert "slack      ok       Slack ok: bot" in out and "channel C0TEST" in out
        assert [r.method for r in fake.requests][:1] == ["auth.test"]

        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-Wrong-Secret")
        main(["check"])
        out = capsys.readouterr().out
        assert "slack      failing" in out and "invalid_auth" in out and "check SLACK_BOT_TOKEN" in out
        assert "xoxb-Wrong-Secret" not in out and "xoxb-Real-Looking-Secret" not in out
    finally:
        fake.stop()


def test_check_opens_the_google_sheet_and_reads_its_headers(ecm_env) -> None:
    import json

    from ecm_pipeline.cli.pipeline import _check_integration
    from ecm_pipeline.domain.tickets import TABS
    from ecm_pipeline.resources.google_sheet import GoogleSheetResource
    from ecm_pipeline_tests.fakes.sheets_server import FakeSheets, service_account_key

    fake = FakeSheets().start()
    try:
        for tab, columns in TABS.items():
            fake.add_tab(tab, [list(columns)])
        key = json.dumps(service_account_key(f"{fake.url}/token"))
        resource = GoogleSheetResource(spreadsheet_id=fake.spreadsheet_id, service_account_json=key,
                                       api_endpoint=fake.url)
        detail = _check_integration("sheet", resource)
        assert "Agents, Assignments ok" in detail and "PRIVATE KEY" not in detail
        assert fake.tokens_issued == 1   # a real service-account grant, not an anonymous session
    finally:
        fake.stop()
