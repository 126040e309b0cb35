"""What Dagster itself costs per materialized partition, whatever the asset computes: one
partitioned asset with nothing to compute, materialized over N partitions in one run (a
single-run backfill, as `ecm backfill` runs it), with small or large metadata per partition, on a
SQLite instance in a temporary directory (the local default). Prints milliseconds per partition;
asserts nothing.

The floor of a backfill: `ecm backfill` materializes 9 partitioned assets per tick, so 270 ticks
are 2,430 asset partitions. Run from the project root: `.venv/bin/python bench/bench_dagster_events.py
[--partitions 270]`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

import dagster as dg
from machine import print_machine

warnings.filterwarnings("ignore")
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def per_partition_ms(partitions: int, metadata: str) -> float:
    keys = [f"p{i:04d}" for i in range(partitions)]

    @dg.asset(partitions_def=dg.StaticPartitionsDefinition(keys), backfill_policy=dg.BackfillPolicy.single_run())
    def nothing(context):   # no annotation: a nested function's string annotation is not resolved
        for key in context.partition_keys:
            values: dict = {"dagster/partition_row_count": 400}
            if metadata == "large":   # about what qualified_orders records per tick
                values |= {f"figure_{i}": float(i) for i in range(20)}
                values["orders_per_reason"] = dg.MetadataValue.json({f"reason_{i}": i for i in range(30)})
                values["orders_per_rule"] = dg.MetadataValue.json({f"rule_{i}": i for i in range(48)})
            context.add_asset_metadata(values, partition_key=key)
        return dg.MaterializeResult()

    with tempfile.TemporaryDirectory() as directory, dg.instance_for_test(temp_dir=directory) as instance:
        started = time.perf_counter()
        result = dg.materialize([nothing], instance=instance, run_config=QUIET, tags={
            "dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]})
        assert result.success
        return (time.perf_counter() - started) / partitions * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, default=270)
    args = parser.parse_args()
    print_machine()
    # As `ecm backfill` runs: one "planned" event per asset for the range, not one per partition.
    os.environ["DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"] = "1"
    print(f"\n{'metadata':>9} {'partitions':>11} {'ms per partition':>17}")
    for metadata in ("small", "large"):
        print(f"{metadata:>9} {args.partitions:>11} {per_partition_ms(args.partitions, metadata):>17.1f}", flush=True)


if __name__ == "__main__":
    main()
