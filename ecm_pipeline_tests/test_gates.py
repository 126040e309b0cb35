"""Quality gates: warehouses that break each rule stop the triage on the named check, write no
assignment, post no briefing but the validation alert, and name the offending orders; later runs
refuse the failed partition; suites load (and a malformed one names its file); GX stays lazy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

import ecm_pipeline.assets.triage as assets_module
from ecm_pipeline.assets.triage import assignment, briefing, qualification, snapshot, triage_assets
from ecm_pipeline.checks import quality_gates
from ecm_pipeline.cli import main
from ecm_pipeline.domain.qualification import qualify
from ecm_pipeline.quality import gx_suite, load_suite, suite_names, suite_path, validate
from ecm_pipeline.resources import environment_resources
from ecm_pipeline.resources.sheet import LocalSheetStore
from ecm_pipeline.settings import ConfigError
from ecm_pipeline_tests.conftest import QUIET, copy_demo

SEEDED_TICKETS = 26


_instance: list[dg.DagsterInstance] = []


@pytest.fixture(autouse=True)
def one_instance_per_test() -> None:
    """Every run of a test shares one instance, so later runs see the earlier runs' verdicts."""
    _instance[:] = [dg.DagsterInstance.ephemeral()]


def run(key: str, selection: list | None = None) -> dg.ExecuteInProcessResult:
    return dg.materialize(selection or [*triage_assets, *quality_gates], partition_key=key, run_config=QUIET,
                          resources=environment_resources(), instance=_instance[0], raise_on_error=False)


def failed_checks(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    return {f"{e.asset_key.to_user_string()}.{e.check_name}": {k: v.value for k, v in e.metadata.items()}
            for e in result.get_asset_check_evaluations()
            if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR}


def messages(home: Path) -> list[tuple[str, str]]:
    outbox = home / "outbox"
    if not outbox.exists():
        return []
    return [(p.name.split("-")[1], json.loads(p.read_text())["metadata"]["event_payload"]["message"])
            for p in sorted(outbox.glob("*.json"))]


def tickets(home: Path, key: str) -> pd.DataFrame:
    tab = LocalSheetStore(str(home / "sheet.sqlite")).read_tab("Assignments")
    assert len(tab) == SEEDED_TICKETS + (tab["Triage Run"] == key).sum()
    return tab[tab["Triage Run"] == key]


def assert_stopped(result: dg.ExecuteInProcessResult, home: Path, key: str, check: str) -> dict:
    """The run failed on `check`, assigned nothing, posted the alert and no briefing."""
    assert not result.success
    failed = failed_checks(result)
    assert check in failed, sorted(failed)
    materialized = {e.materialization.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    if not check.startswith("assignments."):
        assert "assignments" not in materialized and tickets(home, key).empty
    assert "slack_briefing" not in materialized
    sent = messages(home)
    assert ("chat.postMessage", "validation_failed") in sent
    assert all(message == "validation_failed" for _, message in sent)
    alert = next((home / "outbox").glob("*.txt")).read_text()
    assert "ECM triage validation failed: " in alert and "Manual review required." in alert
    return failed[check]


@pytest.fixture
def small_demo(ecm_env: Path, small_live_demo: tuple[Path, str]) -> tuple[Path, str]:
    template, key = small_live_demo
    return copy_demo(template, ecm_env), key


def sql(home: Path, *statements: str) -> None:
    with duckdb.connect(str(home / "warehouse.duckdb")) as con:
        for statement in statements:
            con.execute(statement)


# --- the normal demo ------------------------------------------------------------------------------

def test_the_normal_demo_passes_every_check(demo_env) -> None:
    home, key = demo_env
    result = run(key)
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    expected = sum(len(load_suite(suite_path(a)).expectations) for a in ("stuck_orders", "qualified_orders",
                                                                         "assignments"))
    assert len(evaluations) == expected
    assert [e.check_name for e in evaluations if not e.passed] == []
    assert ("chat.postMessage", "triage") in messages(home)


# --- broken warehouses ----------------------------------------------------------------------------

def test_too_many_actionable_orders_stop_the_triage(small_demo, settings_overlay) -> None:
    home, key = small_demo
    settings_overlay("gates: {backlog_stop: 150}\n")   # a deployment's limit, here below the demo's backlog
    meta = assert_stopped(run(key), home, key, "qualified_orders.backlog_count_within_stop_limit")
    assert meta["observed_value"] > 150


def test_all_aed_backlog_stops_the_triage(small_demo) -> None:
    home, key = small_demo
    sql(home, "DELETE FROM orders_goms WHERE meta_postscript_pricing_info_send_currency <> 'AED'")
    meta = assert_stopped(run(key), home, key, "qualified_orders.currency_mix_not_all_aed")
    assert meta["unexpected_values"] == ["True"]


def test_ninety_percent_gbp_stops_the_triage(small_demo) -> None:
    home, key = small_demo
    sql(home, "DELETE FROM orders_goms WHERE meta_postscript_pricing_info_send_currency = 'EUR'",
        "DELETE FROM orders_goms WHERE meta_postscript_pricing_info_send_currency = 'AED' AND hash(order_id) % 15 <> 0")
    meta = assert_stopped(run(key), home, key, "qualified_orders.currency_mix_not_dominated_by_gbp_eur")
    assert meta["observed_value"] > 0.85
    share = pd.read_parquet(home / "lake" / "qualified_orders" / f"{key}.parquet")["currency"].value_counts(
        normalize=True)
    assert share["GBP"] > 0.85


def test_a_duplicated_order_stops_the_triage(small_demo) -> None:
    home, key = small_demo
    result = run(key, [snapshot])  # which orders are candidates right now
    victim = pd.read_parquet(home / "lake" / "stuck_orders" / f"{key}.parquet")["order_id"].iloc[0]
    assert result.success
    sql(home, f"INSERT INTO orders_goms SELECT * FROM orders_goms WHERE order_id = '{victim}'")
    meta = assert_stopped(run(key), home, key, "stuck_orders.snapshot_has_one_row_per_order")
    assert meta["failing_ids"] == [f"{victim}", f"{victim}"]


def _leaky(code: str):
    """A qualification regression: orders the `code` rule should drop slip into the backlog."""
    def leaky_qualify(classified, settings):
        qualified, disqualified = qualify(classified, settings)
        leaked = disqualified[disqualified["disqualification_code"] == code]
        leaked = leaked.drop(columns=["disqualification_code", "disqualification_rule", "disqualification_reason"])
        return pd.concat([qualified, leaked], ignore_index=True), disqualified
    return leaky_qualify


@pytest.mark.parametrize(("code", "check"), [("dead_no_lulu", "qualified_orders.no_aed_order_without_lulu"),
                                             ("unpaid", "qualified_orders.no_unpaid_order"),
                                             ("dead_order", "qualified_orders.no_dead_order_survivor")])
def test_an_order_slipped_past_qualification_stops_the_triage(small_demo, monkeypatch, code, check) -> None:
    home, key = small_demo
    monkeypatch.setattr(assets_module, "qualify", _leaky(code))
    meta = assert_stopped(run(key), home, key, check)
    dropped = pd.read_parquet(home / "lake" / "disqualified_orders" / f"{key}.parquet")
    offenders = set(dropped.loc[dropped["disqualification_code"] == code, "order_id"])
    assert meta["unexpected_count"] == len(offenders) > 0
    assert set(meta["failing_ids"]) <= offenders and len(meta["failing_ids"]) == min(20, len(offenders))


# --- later runs refuse a failed partition ---------------------------------------------------------

def test_rematerializing_downstream_alone_refuses_a_failed_partition(small_demo, capsys) -> None:
    home, key = small_demo
    sql(home, "DELETE FROM orders_goms WHERE meta_postscript_pricing_info_send_currency <> 'AED'")
    assert not run(key).success
    scored = run(key, [assets_module.scored_orders])   # re-materialized alone, as from the UI
    assert not scored.success
    failure = next(e for e in scored.all_events if e.is_step_failure)
    assert failure.step_failure_data.user_failure_data.description.startswith(
        f"Refusing to score orders: the qualified_orders quality gate failed for {key} (currency_mix_not_all_aed")
    for asset, verb in ((assignment, "assign orders"), (briefing, "brief")):
        alone = run(key, [asset])
        assert not alone.success
        failure = next(e for e in alone.all_events if e.is_step_failure)
        assert failure.step_failure_data.user_failure_data.description.startswith(f"Refusing to {verb}: no ")
    assert tickets(home, key).empty
    assert all(message == "validation_failed" for _, message in messages(home))

    assert main(["triage", "--partition", key]) == 1  # and the CLI says which gate failed
    err = capsys.readouterr().err
    assert "gate qualified_orders.currency_mix_not_all_aed failed" in err and "Traceback" not in err


def test_a_changed_snapshot_needs_its_gate_again(small_demo) -> None:
    home, key = small_demo
    assert run(key).success
    assert run(key, [assignment]).success      # built on what the gates passed: fine
    assert run(key, [qualification]).success  # the same data again: the same version, its verdict holds
    stuck = pd.read_parquet(home / "lake" / "stuck_orders" / f"{key}.parquet")["order_id"].head(3).tolist()
    sql(home, *[f"DELETE FROM orders_goms WHERE order_id = '{order}'" for order in stuck])
    assert run(key, [snapshot]).success       # a changed snapshot, materialized without its checks
    refused = run(key, [qualification])
    description = next(e for e in refused.all_events if e.is_step_failure).step_failure_data.user_failure_data
    assert "the stuck_orders quality gate has not checked the current stuck_orders" in description.description
    # executing the gate on its own (as from the UI) checks the latest partition; then it proceeds
    checks_alone = dg.materialize([snapshot, quality_gates[0]], instance=_instance[0], run_config=QUIET,
                                  resources=environment_resources(),
                                  selection=dg.AssetSelection.checks_for_assets("stuck_orders"))
    evaluations = checks_alone.get_asset_check_evaluations()
    assert checks_alone.success and len(evaluations) == 7
    assert evaluations[0].metadata["partition"].value == key
    assert run(key, [qualification]).success


def test_verdicts_are_kept_per_partition_in_a_range_run(small_demo) -> None:
    home, key = small_demo
    from ecm_pipeline.definitions import defs
    from ecm_pipeline.partitions import triage_partitions

    keys = triage_partitions.get_partition_keys_in_range(dg.PartitionKeyRange(
        triage_partitions.get_partition_keys()[-4], key))
    job = defs.resolve_implicit_global_asset_job_def()
    instance = dg.DagsterInstance.ephemeral()
    result = job.execute_in_process(instance=instance, raise_on_error=False, asset_selection=[
        dg.AssetKey("stuck_orders"), dg.AssetKey("excluded_orders"), dg.AssetKey("qualified_orders"),
        dg.AssetKey("disqualified_orders"), dg.AssetKey("scored_orders")],
        tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]})
    assert result.success
    anchor = next(e for e in result.get_asset_check_evaluations()
                  if e.asset_key == dg.AssetKey("qualified_orders")
                  and e.check_name == "backlog_count_within_stop_limit")
    checked = anchor.metadata["checked_versions"].value
    assert sorted(checked) == keys and anchor.metadata["gate_failures"].value == {}
    assert anchor.metadata["partitions_checked"].value == len(keys)


# --- suites ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", suite_names())
def test_every_suite_file_loads(name: str) -> None:
    path = suite_path(name)
    suite = load_suite(path)
    assert suite.expectations and len(gx_suite(suite).expectations) == len(suite.expectations)
    raw = json.loads(path.read_text())
    assert "id" not in raw and not any("id" in item for item in raw["expectations"])


def _write_suite(tmp_path: Path, expectation: dict | str) -> Path:
    path = tmp_path / "broken.json"
    body = expectation if isinstance(expectation, str) else json.dumps(
        {"name": "broken", "meta": {"frames": {"orders": {"index": "order_id"}}}, "expectations": [expectation]})
    path.write_text(body)
    return path


GOOD = {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "order_id"},
        "meta": {"check_name": "ids_unique", "frame": "orders", "description": "unique ids"}}


@pytest.mark.parametrize(("broken", "message"), [
    ("{not json", "not a valid suite"),
    ({**GOOD, "meta": {"frame": "orders", "description": "x"}}, "meta.check_name is required"),
    ({**GOOD, "meta": {**GOOD["meta"], "frame": "elsewhere"}}, "frame 'elsewhere' is not declared"),
    ({**GOOD, "id": "1234"}, "without ids"),
    ({**GOOD, "severity": "fatal"}, "severity must be one of"),
])
def test_a_malformed_suite_names_its_file(tmp_path: Path, broken, message: str) -> None:
    path = _write_suite(tmp_path, broken)
    with pytest.raises(ConfigError, match=message) as info:
        load_suite(path)
    assert str(path) in str(info.value)


def test_an_unknown_expectation_type_names_its_file(tmp_path: Path) -> None:
    path = _write_suite(tmp_path, {**GOOD, "type": "expect_the_moon"})
    with pytest.raises(ConfigError) as info:
        gx_suite(load_suite(path))
    assert str(path) in str(info.value)


def test_a_gx_error_is_reported_as_errored_not_as_bad_data() -> None:
    suite = load_suite(suite_path("qualified_orders"))
    frames = {"orders": pd.DataFrame({"partition_key": ["k"], "order_id": ["A"]}),
              "profile": pd.DataFrame({"partition_key": ["k"], "gbp_eur_share": [0.1]})}
    outcomes = {o.expectation.check_name: o for o in validate(suite, frames, {"currencies": ["AED"],
                                                                                "stuck_reasons": ["x"]}, ["k"])}
    lulu = outcomes["no_aed_order_without_lulu"]
    assert lulu.errored and not lulu.passed
    assert lulu.summary.startswith("check errored (GX could not evaluate it)")
    assert lulu.metadata["outcome"] == "errored"
    assert outcomes["order_ids_unique"].passed and not outcomes["order_ids_unique"].errored


# --- GX is imported only where something is validated --------------------------------------------

@pytest.mark.parametrize("code", [
    "import ecm_pipeline.definitions",
    "from ecm_pipeline.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
    "from ecm_pipeline.cli import main\ntry:\n    main(['triage', '--help'])\nexcept SystemExit:\n    pass",
])
def test_paths_that_do_not_validate_never_import_gx(code: str) -> None:
    probe = code + "\nimport sys\nprint('GX_LOADED' if 'great_expectations' in sys.modules else 'GX_ABSENT')"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "GX_ABSENT", out.stderr
