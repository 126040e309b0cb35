"""Gate verdicts, read back from the Dagster instance. A blocking check stops the rest of its own run;
this module makes the verdict hold for later runs too, so an asset started on its own (say
`scored_orders` re-materialized from the UI) refuses to build on a partition whose gate failed, or
whose current data no gate has checked.

Each gate check validates every partition in its run at once (see `checks.py`) and records, on the
evaluation of its suite's first expectation (the anchor), which version of each partition's lake
file it checked and which blocking expectations failed there. A verdict therefore belongs to one
version of one partition: re-materializing an asset makes its downstream refuse until the checks run
again. The event log is append-only, so two runs can never lose each other's verdicts.
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

from ecm_pipeline.quality import Outcome, load_suite, suite_names, suite_path
from ecm_pipeline.resources.lake import LakeError, LakeFrame, LakeResource

CHECKED = "checked_versions"
FAILURES = "gate_failures"
HISTORY_LIMIT = 200   # evaluations of a gate looked back over; a verdict older than that must be re-run


def gated_assets() -> tuple[str, ...]:
    return tuple(suite_names())


def anchor_check(asset: str) -> str:
    return load_suite(suite_path(asset)).expectations[0].check_name


def verdict_metadata(versions: Mapping[str, str], outcomes: list[Outcome]) -> dict[str, dict]:
    """What the anchor's evaluation records: the versions checked, and per partition the blocking
    expectations that failed there (with their summary)."""
    failures: dict[str, list[str]] = {}
    for outcome in outcomes:
        if outcome.expectation.blocking and not outcome.passed:
            for key in outcome.failed_partitions:
                failures.setdefault(key, []).append(f"{outcome.expectation.check_name}: {outcome.summary or 'failed'}")
    return {CHECKED: dict(versions), FAILURES: failures}


def gate_problems(instance: dg.DagsterInstance, asset: str, versions: Mapping[str, str]) -> dict[str, str]:
    """For each partition whose `asset` gate did not pass on exactly this version, why not."""
    pending = dict(versions)
    problems: dict[str, str] = {}
    check_key = dg.AssetCheckKey(dg.AssetKey(asset), anchor_check(asset))
    for record in instance.event_log_storage.get_asset_check_execution_history(check_key, limit=HISTORY_LIMIT):
        if not pending:
            break
        if record.event is None or record.event.dagster_event is None:
            continue
        evaluation = record.event.dagster_event.event_specific_data
        metadata = getattr(evaluation, "metadata", {}) or {}
        checked = metadata[CHECKED].value if CHECKED in metadata else {}
        failures = metadata[FAILURES].value if FAILURES in metadata else {}
        for key in [k for k, v in pending.items() if checked.get(k) == v]:
            del pending[key]
            if failures.get(key):
                problems[key] = f"the {asset} quality gate failed for {key} ({'; '.join(failures[key])})"
    for key in pending:
        problems[key] = (f"the {asset} quality gate has not checked the current {asset} for {key} "
                         f"(materialize {asset} with its checks, or execute its checks)")
    return problems


def require_gates_passed(context: dg.AssetExecutionContext, inputs: Mapping[str, LakeFrame], input_asset: str,
                         action: str) -> None:
    """Refuse (one clear Failure) unless every gate on the data these inputs were built from passed:
    the input asset's own gate if it has one, and the gates of everything in its lineage."""
    wanted: dict[str, dict[str, str]] = {}
    gated = set(gated_assets())
    for key, lake_frame in inputs.items():
        for asset, version in {**lake_frame.lineage, input_asset: lake_frame.version}.items():
            if asset in gated:
                wanted.setdefault(asset, {})[key] = version
    problems = [problem for asset, versions in wanted.items()
                for problem in gate_problems(context.instance, asset, versions).values()]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise dg.Failure(description=f"Refusing to {action}: {'; '.join(problems[:3])}{more}.", allow_retries=False)


def read_checked(context: dg.AssetExecutionContext, lake: LakeResource, asset: str, keys: list[str],
                 action: str) -> dict[str, LakeFrame]:
    """The lake files of `asset` for these partitions, once every gate on what they were built from
    passed; otherwise one clear Failure (a missing file included)."""
    try:
        inputs = lake.read_many(asset, keys)
    except LakeError as exc:
        raise dg.Failure(description=f"Refusing to {action}: {exc}.", allow_retries=False) from None
    require_gates_passed(context, inputs, asset, action)
    return inputs
