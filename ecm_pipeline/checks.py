"""Quality gates: one Dagster asset check per expectation of `expectations/<asset>.json`, grouped in
one multi-asset check per suite, so each gate can also be executed on its own from the UI.

The checks are not partitioned, on purpose: Dagster's (preview) partitioned checks make the asset
graph resolve every check's status tick by tick, which grows without bound (README, "Quality
gates"); and a partitioned check in a single-run backfill records one evaluation for the whole
range anyway. Instead each gate validates every partition of its run in one pass — a backfill of a
month costs one validation, not ninety — and names the partitions that failed; the verdict for
each partition is recorded on the evaluation (`gates.py`) for later runs to honour.

Checks with `critical` severity are blocking ERROR checks: when one fails, the rest of the run is
skipped, and on the live tick the validation alert is posted instead of the briefing.
"""


from collections.abc import Callable, Iterator, Mapping

import dagster as dg
import pandas as pd

from ecm_pipeline.domain.briefing import GateFailure, validation_alert
from ecm_pipeline.domain.gate_frames import assignment_frames, backlog_frames, gate_parameters, stacked
from ecm_pipeline.domain.roster import parse_roster
from ecm_pipeline.domain.snapshot import SNAPSHOT_COLUMNS
from ecm_pipeline.gates import verdict_metadata
from ecm_pipeline.partitions import as_of_utc, tick_of
from ecm_pipeline.quality import PARTITION, Outcome, load_suite, suite_path, validate
from ecm_pipeline.resources.lake import LakeFrame, LakeResource
from ecm_pipeline.resources.sheet import AssignmentStoreResource
from ecm_pipeline.resources.slack import SlackDestinationResource
from ecm_pipeline.run_context import materialized_in_run, partition_keys, side_effects_blocked
from ecm_pipeline.settings import Settings, load_catalogue, load_settings

FrameBuilder = Callable[[dict[str, LakeFrame]], tuple[dict[str, pd.DataFrame], dict, dict[str, int]]]


def gate_specs(asset: str) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(e.check_name, asset=asset, blocking=e.blocking, description=e.description)
            for e in load_suite(suite_path(asset)).expectations]


def _metadata(outcome: Outcome) -> dict:
    return {k: dg.MetadataValue.json(v) if isinstance(v, list | dict) else v
            for k, v in outcome.metadata.items() if v is not None}


def gate_scope(context: dg.AssetCheckExecutionContext, asset: str, lake: LakeResource) -> dict[str, LakeFrame]:
    """The partitions this gate validates: the run's partitions as the lake holds them (nothing
    when the asset's step did nothing in this run, as a Sheet step does for a past tick), or, when
    the check runs without a partition (executed from the asset's Checks tab), the asset's latest
    materialized partition."""
    keys = partition_keys(context)
    if keys:
        if (materialized_in_run(context, asset) or {}).get("skipped"):
            return {}
        return lake.read_many(asset, [key for key in keys if lake.path(asset, key).exists()])
    latest = context.instance.get_latest_materialization_event(dg.AssetKey(asset))
    partition = latest.dagster_event.partition if latest and latest.dagster_event else None
    return {partition: lake.read(asset, partition)} if partition else {}


def run_gate(context: dg.AssetCheckExecutionContext, asset: str, lake: LakeResource,
             slack: SlackDestinationResource, build: FrameBuilder) -> Iterator[dg.AssetCheckResult]:
    suite = load_suite(suite_path(asset))
    inputs = gate_scope(context, asset, lake)
    keys = sorted(inputs)
    if not keys:
        for e in suite.expectations:
            yield dg.AssetCheckResult(check_name=e.check_name, asset_key=asset, passed=True,
                                      description=f"nothing to check: no {asset} partition was written",
                                      metadata={"partitions_checked": 0})
        return
    frames, parameters, counts = build(inputs)
    outcomes = validate(suite, frames, parameters, keys)
    for o in outcomes:
        if not o.passed:
            log = context.log.error if o.expectation.blocking else context.log.warning
            log(f"quality gate {asset}.{o.expectation.check_name} {'errored' if o.errored else 'failed'}: {o.summary}")
    verdicts = verdict_metadata({key: inputs[key].version for key in keys}, outcomes)
    for i, o in enumerate(outcomes):
        metadata = {**_metadata(o), "partitions_checked": len(keys)}
        metadata["partition" if len(keys) == 1 else "partition_range"] = (
            keys[0] if len(keys) == 1 else f"{keys[0]}...{keys[-1]}")
        if i == 0:   # the anchor carries the verdict of every expectation, per partition
            metadata |= {name: dg.MetadataValue.json(value) for name, value in verdicts.items()}
        yield dg.AssetCheckResult(
            check_name=o.expectation.check_name,
            asset_key=asset,
            passed=o.passed,
            severity=dg.AssetCheckSeverity.ERROR if o.expectation.blocking else dg.AssetCheckSeverity.WARN,
            description=o.expectation.description if o.passed else o.summary or o.expectation.description,
            metadata=metadata,
        )
    failures = [o for o in outcomes if o.expectation.blocking and not o.passed]
    if failures:  # after the results, so a Slack outage cannot hide them
        _alert(context, asset, keys, failures, counts, slack)


def _alert(context: dg.AssetCheckExecutionContext, asset: str, keys: list[str], failures: list[Outcome],
           counts: dict[str, int], slack: SlackDestinationResource) -> None:
    blocked = side_effects_blocked(context, keys)
    if blocked:
        context.log.info(f"validation alert not posted: {blocked}")
        return
    key = keys[0]
    alert = validation_alert(tick_of(key), [GateFailure(asset, f.expectation.check_name, f.summary) for f in failures],
                             counts)
    try:
        slack.publish([alert], key)
    except Exception as exc:  # the blocking check already stops the run; say the alert is missing
        context.log.error(f"validation alert could not be posted to {slack.describe()}: {exc}")


def contract_inputs(snapshots: Mapping[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], dict]:
    """The stuck_orders suite's frames and parameters for these partitions' snapshots."""
    orders = stacked(snapshots, as_of={key: pd.Timestamp(as_of_utc(key)) for key in snapshots})
    return {"orders": orders}, {"snapshot_columns": [*SNAPSHOT_COLUMNS, PARTITION, "as_of"]}


def business_rule_inputs(qualified: Mapping[str, pd.DataFrame], settings: Settings,
                         ) -> tuple[dict[str, pd.DataFrame], dict]:
    """The qualified_orders suite's frames and parameters for these partitions' backlogs."""
    parameters = {"currencies": list(settings.snapshot.currencies),
                  "stuck_reasons": list(load_catalogue().reasons), **gate_parameters(settings.gates)}
    return backlog_frames(qualified, settings.qualification, settings.gates), parameters


@dg.multi_asset_check(specs=gate_specs("stuck_orders"), name="stuck_orders_contract")
def stuck_orders_contract(context: dg.AssetCheckExecutionContext, lake: LakeResource,
                          slack: SlackDestinationResource) -> Iterator[dg.AssetCheckResult]:
    """The snapshot honours the warehouse contract (expectations/stuck_orders.json)."""

    def build(inputs: dict[str, LakeFrame]):
        snapshots = {key: f.frame for key, f in inputs.items()}
        return *contract_inputs(snapshots), {"candidates": sum(len(f) for f in snapshots.values())}

    yield from run_gate(context, "stuck_orders", lake, slack, build)


@dg.multi_asset_check(specs=gate_specs("qualified_orders"), name="qualified_orders_business_rules")
def qualified_orders_business_rules(context: dg.AssetCheckExecutionContext, lake: LakeResource,
                                    slack: SlackDestinationResource) -> Iterator[dg.AssetCheckResult]:
    """The actionable backlog looks like the business (expectations/qualified_orders.json)."""
    settings = load_settings()

    def build(inputs: dict[str, LakeFrame]):
        qualified = {key: f.frame for key, f in inputs.items()}
        return *business_rule_inputs(qualified, settings), {"qualified": sum(len(f) for f in qualified.values())}

    yield from run_gate(context, "qualified_orders", lake, slack, build)


@dg.multi_asset_check(specs=gate_specs("assignments"), name="assignments_invariants")
def assignments_invariants(context: dg.AssetCheckExecutionContext, lake: LakeResource,
                           sheet: AssignmentStoreResource,
                           slack: SlackDestinationResource) -> Iterator[dg.AssetCheckResult]:
    """The Sheet keeps the assignment invariants after this tick's write (expectations/assignments.json)."""
    settings = load_settings()

    def build(inputs: dict[str, LakeFrame]):
        tabs = sheet.store().read_tabs(["Agents", "Assignments"])
        roster, _ = parse_roster(tabs["Agents"], settings.assignment)
        per_key = [assignment_frames(key, f.frame, tabs["Assignments"], lake.read("assignment_agents", key).frame,
                                     roster) for key, f in inputs.items()]
        frames = {name: pd.concat([p[name] for p in per_key], ignore_index=True) for name in per_key[0]}
        outcome = pd.concat([f.frame for f in inputs.values()], ignore_index=True)
        counts = {"assigned this tick": len(frames["assigned"]),
                  "overflow": int((outcome["assignment"] == "overflow").sum()) if len(outcome) else 0}
        return frames, {}, counts

    yield from run_gate(context, "assignments", lake, slack, build)


quality_gates = [stuck_orders_contract, qualified_orders_business_rules, assignments_invariants]
