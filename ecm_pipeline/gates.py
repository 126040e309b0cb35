"""Gate verdicts: what the quality checks decided for a partition, kept beside the lake so that an
asset started later (for example re-materialized alone from the UI) refuses to build on a
partition whose gate failed. A verdict applies only to the snapshot version it checked."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from ecm_pipeline.quality import Outcome
from ecm_pipeline.resources.lake import LakeResource

VERDICTS = "_gates"


def record_verdict(lake: LakeResource, key: str, asset: str, outcomes: list[Outcome]) -> list[Outcome]:
    """Store the gate's verdict for (asset, partition); return the blocking failures."""
    failures = [o for o in outcomes if not o.passed and o.expectation.blocking]
    verdicts = lake.read_json(VERDICTS, key)
    verdicts[asset] = {
        "passed": not failures,
        "version": lake.version(asset, key),
        "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "failed": [{"check": o.expectation.check_name, "summary": o.summary} for o in failures],
    }
    lake.write_json(VERDICTS, key, verdicts)
    return failures


def require_gates_passed(lake: LakeResource, key: str, upstream: tuple[str, ...], action: str) -> None:
    """Raise a clear Failure unless every upstream gate passed on the snapshot that is there now."""
    verdicts = lake.read_json(VERDICTS, key)
    for asset in upstream:
        verdict = verdicts.get(asset)
        if verdict is None:
            problem = f"the {asset} quality gate has not run for partition {key}"
        elif verdict["version"] != lake.version(asset, key):
            problem = f"{asset} for partition {key} changed since its quality gate ran"
        elif not verdict["passed"]:
            failed = "; ".join(f"{f['check']}: {f['summary']}" for f in verdict["failed"])
            problem = f"the {asset} quality gate failed for partition {key} ({failed})"
        else:
            continue
        raise dg.Failure(
            description=f"Refusing to {action}: {problem}. Materialize {asset} with its checks and let them "
                        "pass first.",
            allow_retries=False,
        )
