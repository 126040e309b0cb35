"""Asset snapshots as Parquet: `$ECM_HOME/lake/<asset>/<partition_key>.parquet` (one file per
partition, replaced atomically, so re-running a partition is idempotent)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg
import pandas as pd

from ecm_pipeline.settings import ecm_home


def writable(path: Path) -> str:
    """Prove a directory can be written (for `ecm check`)."""
    path.mkdir(parents=True, exist_ok=True)
    probe = path / ".ecm-check"
    probe.write_text("ok")
    probe.unlink()
    return "writable"


class LakeError(Exception):
    """A snapshot the pipeline needs is not in the lake."""


class LakeResource(dg.ConfigurableResource):
    """Reads and writes per-partition Parquet snapshots."""

    root: str = ""

    def base(self) -> Path:
        return Path(self.root) if self.root else ecm_home() / "lake"

    def path(self, asset: str, partition_key: str) -> Path:
        return self.base() / asset / f"{partition_key}.parquet"

    def write(self, asset: str, partition_key: str, frame: pd.DataFrame) -> Path:
        target = self.path(asset, partition_key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        frame.to_parquet(tmp, index=False)
        tmp.replace(target)
        return target

    def read(self, asset: str, partition_key: str) -> pd.DataFrame:
        target = self.path(asset, partition_key)
        if not target.exists():
            raise LakeError(
                f"no {asset} snapshot for partition {partition_key} ({target}): materialize {asset} "
                "for this partition first"
            )
        return pd.read_parquet(target)

    def check(self) -> str:
        return f"{self.base()} {writable(self.base())}"

    def json_path(self, name: str, partition_key: str) -> Path:
        return self.base() / name / f"{partition_key}.json"

    def write_json(self, name: str, partition_key: str, data: dict) -> None:
        target = self.json_path(name, partition_key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=2, default=str))
        tmp.replace(target)

    def read_json(self, name: str, partition_key: str) -> dict:
        target = self.json_path(name, partition_key)
        return json.loads(target.read_text()) if target.exists() else {}

    def version(self, asset: str, partition_key: str) -> int | None:
        """Identifies one write of a snapshot: a gate verdict applies to the version it checked."""
        target = self.path(asset, partition_key)
        return target.stat().st_mtime_ns if target.exists() else None
