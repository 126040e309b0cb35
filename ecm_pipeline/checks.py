"""Quality gates: one Dagster asset check per expectation of `expectations/<asset>.json`.

Checks with `critical` severity are blocking ERROR checks: when one fails, the rest of the triage in
that run is skipped, the verdict is recorded (so later runs refuse the partition too) and the
validation-failed alert is posted instead of the briefing.
"""

import warnings
from collections.abc import Iterator

import dagster as dg
import pandas as pd

from ecm_pipeline.domain.briefing import GateFailure, validation_alert
from ecm_pipeline.domain.gate_frames import assignment_frames, backlog_frames
from ecm_pipeline.domain.roster import parse_roster
from ecm_pipeline.gates import record_verdict
from ecm_pipeline.partitions import as_of_utc, tick_of, triage_partitions
from ecm_pipeline.quality import Outcome, load_suite, suite_path, validate
from ecm_pipeline.resources.lake import LakeResource
from ecm_pipeline.resources.sheet import AssignmentStoreResource
from ecm_pipeline.resources.slack import SlackDestinationResource, posting_blocked
from ecm_pipeline.settings import load_catalogue, load_settings
from ecm_pipeline.snapshot import SNAPSHOT_COLUMNS


def gate_specs(asset: str) -> list[dg.AssetCheckSpec]:
    # Partitioned checks are a Dagster 1.13 preview; they give per-tick check history in the UI,
    # which is what data engineers need here, so the preview warning is expected.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return [
            dg.AssetCheckSpec(e.check_name, asset=asset, blocking=e.blocking, description=e.description,
                              partitions_def=triage_partitions)
            for e in load_suite(suite_path(asset)).expectations
        ]


def _metadata(outcome: Outcome) -> dict:
    return {k: dg.MetadataValue.json(v) if isinstance(v, list | dict) else v
            for k, v in outcome.metadata.items() if v is not None}


def _run_gate(context: dg.AssetCheckExecutionContext, asset: str, frames: dict[str, pd.DataFrame],
              parameters: dict, counts: dict[str, int], lake: LakeResource,
              slack: SlackDestinationResource) -> Iterator[dg.AssetCheckResult]:
    key = context.partition_key
    outcomes = validate(load_suite(suite_path(asset)), frames, parameters)
    failures = record_verdict(lake, key, asset, outcomes)
    for o in outcomes:
        if not o.passed:
            log = context.log.error if o.expectation.blocking else context.log.warning
            log(f"quality gate {asset}.{o.expectation.check_name} {'errored' if o.errored else 'failed'}: {o.summary}")
    for o in outcomes:
        yield dg.AssetCheckResult(
            check_name=o.expectation.check_name,
            asset_key=asset,
            passed=o.passed,
            severity=dg.AssetCheckSeverity.ERROR if o.expectation.blocking else dg.AssetCheckSeverity.WARN,
            description=o.expectation.description if o.passed else o.summary or o.expectation.description,
            metadata=_metadata(o),
        )
    if failures:  # after the results, so a Slack outage cannot hide them
        tick = tick_of(key)
        alert = validation_alert(
            tick, [GateFailure(asset, f.expectation.check_name, f.summary) for f in failures], counts)
        blocked = posting_blocked(context.run.tags, tick, load_settings().slack.post_max_age_hours)
        if blocked:
            context.log.info(f"validation alert not posted: {blocked}")
            return
        try:
            slack.publish([alert], key)
        except Exception as exc:  # the blocking check already stops the run; say the alert is missing
            context.log.error(f"validation alert could not be posted to {slack.describe()}: {exc}")


@dg.multi_asset_check(specs=gate_specs("stuck_orders"), name="stuck_orders_quality_gate")
def stuck_orders_quality_gate(context: dg.AssetCheckExecutionContext, lake: LakeResource,
                              slack: SlackDestinationResource) -> Iterator[dg.AssetCheckResult]:
    """The snapshot honours the warehouse contract (expectations/stuck_orders.json)."""
    key = context.partition_key
    snapshot = lake.read("stuck_orders", key)
    yield from _run_gate(
        context, "stuck_orders", {"orders": snapshot},
        {"as_of": pd.Timestamp(as_of_utc(key)), "snapshot_columns": list(SNAPSHOT_COLUMNS)},
        {"candidates": len(snapshot)}, lake, slack)


@dg.multi_asset_check(specs=gate_specs("qualified_orders"), name="qualified_orders_quality_gate")
def qualified_orders_quality_gate(context: dg.AssetCheckExecutionContext, lake: LakeResource,
                                  slack: SlackDestinationResource) -> Iterator[dg.AssetCheckResult]:
    """The actionable backlog looks like the business (expectations/qualified_orders.json)."""
    settings = load_settings()
    key = context.partition_key
    qualified = lake.read("qualified_orders", key)
    counts = {"qualified": len(qualified), "disqualified": len(lake.read("disqualified_orders", key))}
    yield from _run_gate(
        context, "qualified_orders", backlog_frames(qualified, settings.qualification),
        {"currencies": list(settings.snapshot.currencies), "stuck_reasons": list(load_catalogue().reasons)},
        counts, lake, slack)


@dg.multi_asset_check(specs=gate_specs("assignments"), name="assignments_quality_gate")
def assignments_quality_gate(context: dg.AssetCheckExecutionContext, lake: LakeResource, sheet: AssignmentStoreResource,
                             slack: SlackDestinationResource) -> Iterator[dg.AssetCheckResult]:
    """The Sheet keeps the assignment invariants after this tick's write (expectations/assignments.json)."""
    settings = load_settings()
    key = context.partition_key
    outcome = lake.read("assignments", key)
    store = sheet.store()
    roster, _ = parse_roster(store.read_tab("Agents"), settings.assignment)
    frames = assignment_frames(outcome, store.read_tab("Assignments"), lake.read("assignment_agents", key), roster)
    counts = {"assigned this tick": len(frames["assigned"]),
              "overflow": int((outcome["assignment"] == "overflow").sum())}
    yield from _run_gate(context, "assignments", frames, {}, counts, lake, slack)


quality_gates = [stuck_orders_quality_gate, qualified_orders_quality_gate, assignments_quality_gate]
