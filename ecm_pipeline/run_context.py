"""What a step needs to know about the run it is in: which partitions it covers (one tick, or a
whole range in a single-run backfill) and whether it may write the Sheet or post to Slack.

Side effects belong to the live tick only (SPEC §12): the latest tick at or before the moment the
run started. A backfill, a range run or a re-run of an older tick rebuilds the data and writes the
lake, but never the Sheet or Slack; its metadata says why."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import dagster as dg

from ecm_pipeline.partitions import PartitionKeyError, live_tick_key, triage_partitions, validated_key

BACKFILL_TAG = "dagster/backfill"
# Which tick a run is for and what started it (schedule, cli, backfill): on every run we start.
TICK_TAG, TRIGGER_TAG = "ecm/tick", "ecm/trigger"
PARTITION_TAG = "dagster/partition"
# The tags Dagster gives a run over a range of partitions (a single-run backfill).
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def partition_keys(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> list[str]:
    """The canonical partition keys this step covers, or [] when it runs without a partition.
    A key that does not round-trip to an existing partition (say a hand-written run tag
    `2026-11-29-14:0`) fails the step with one line instead of being used."""
    op = context.op_execution_context
    if op.has_partition_key_range and not op.has_partition_key:
        key_range = op.partition_key_range
        keys = triage_partitions.get_partition_keys_in_range(key_range)
        if not keys or keys[0] != key_range.start or keys[-1] != key_range.end:
            raise dg.Failure(f"the partition range {key_range.start}...{key_range.end} does not name existing ticks",
                             allow_retries=False)
    elif op.has_partition_key:
        keys = [op.partition_key]
    else:
        return []
    started = run_started(context)
    try:
        return [validated_key(k, started) for k in keys]
    except PartitionKeyError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from None


def run_started(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> datetime:
    return started_at(context.instance, context.run.run_id)


def started_at(instance: dg.DagsterInstance, run_id: str) -> datetime:
    """When a run started (created, if it has not started yet); now for a run the instance lacks."""
    record = instance.get_run_record_by_id(run_id)
    stamp = (record.start_time or record.create_timestamp.timestamp()) if record else None
    return datetime.fromtimestamp(stamp, UTC) if stamp else datetime.now(UTC)


def run_ticks(tags: Mapping[str, str]) -> list[str]:
    """The ticks a run's tags name: its partition, the two ends of its range, or none."""
    if PARTITION_TAG in tags:
        return [tags[PARTITION_TAG]]
    return [tags[RANGE_START], tags[RANGE_END]] if RANGE_START in tags else []


def side_effects_blocked(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext,
                         keys: list[str]) -> str | None:
    """Why this step must not write the Sheet or post to Slack, or None when it may."""
    return why_not_live(context.run.tags, keys, run_started(context))


def why_not_live(tags: Mapping[str, str], keys: list[str], started: datetime) -> str | None:
    """Why a run with these tags over these ticks, started then, must not write the Sheet or post
    to Slack; None for a run of the live tick."""
    if tags.get(BACKFILL_TAG):
        return "backfill runs never write the Sheet or post to Slack"
    if len(keys) != 1:
        return "a run over a range of ticks never writes the Sheet or posts to Slack"
    live = live_tick_key(started)
    if keys[0] != live:
        return f"{keys[0]} is not the live tick ({live}): only the live tick writes the Sheet and posts"
    return None


def materialized_in_run(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext,
                        asset: str) -> dict | None:
    """The metadata of `asset`'s materialization in this run (its last one), or None."""
    return run_materialization(context.instance, context.run.run_id, asset)


def run_materialization(instance: dg.DagsterInstance, run_id: str, asset: str) -> dict | None:
    """The metadata of `asset`'s last materialization in a run, or None."""
    # Newest first, a page at a time: a range run holds one materialization per asset and tick, and
    # the asset asked about is usually the one just materialized.
    key, cursor = dg.AssetKey(asset), None
    while True:
        page = instance.get_records_for_run(run_id, cursor=cursor, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION,
                                            limit=100, ascending=False)
        for record in page.records:
            materialization = record.event_log_entry.asset_materialization
            if materialization and materialization.asset_key == key:
                return {k: v.value for k, v in materialization.metadata.items()}
        if not page.has_more:
            return None
        cursor = page.cursor
