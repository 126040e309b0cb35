"""The lake: each asset's frame per partition as Parquet at `<root>/<asset>/<partition_key>.parquet`,
on local disk (`$ECM_HOME/lake`) or any fsspec filesystem through universal_pathlib, e.g. S3 with
`ECM_LAKE_URL=s3://bucket/ecm` (s3fs; endpoint and credentials from the usual AWS variables).

Every write is atomic (local: a temporary file renamed into place; object stores: one PUT), so a
reader never sees half a file and re-running a partition replaces it. Each file carries, in its
Parquet metadata, its version, the run that wrote it and the versions of the lake files it was
built from (its lineage): the quality gates' verdicts apply to one version of one partition. The
version is a hash of the content and the lineage, so two runs that build the same partition from
the same data (say the schedule and a manual run racing) write the same version, and each can use
the other's gate verdict.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import time
import uuid
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field
from upath import UPath

from ecm_pipeline.osutil import os_problem, pid_alive
from ecm_pipeline.settings import ecm_home

METADATA_KEY = b"ecm"
STALE_TEMP_SECONDS = 3600
IO_THREADS = 4


def _in_parallel(fn, argument_tuples) -> list:
    """`fn` over many partitions on a few threads, results in order: Parquet encoding and file or
    object-store I/O release the GIL, so a range's files are read and written side by side."""
    items = list(argument_tuples)
    if len(items) < 4:
        return [fn(*args) for args in items]
    with ThreadPoolExecutor(max_workers=IO_THREADS) as pool:
        return list(pool.map(lambda args: fn(*args), items))


class LakeError(Exception):
    """A snapshot the pipeline needs is not in the lake, or the lake cannot be written."""


@dataclass(frozen=True)
class LakeFrame:
    frame: pd.DataFrame
    version: str
    lineage: dict[str, str] = field(default_factory=dict)   # asset -> version of the file it was built from
    run_id: str = ""


def content_version(frame: pd.DataFrame | pa.Table, lineage: dict[str, str]) -> str:
    """A deterministic id for a frame's content and what it was built from: a hash of its Arrow
    IPC encoding (schema, pandas dtypes and every buffer), which costs a copy, not a pass in Python."""
    table = frame if isinstance(frame, pa.Table) else _table(frame)
    # Each column as one fresh array: a slice of a larger table (a range written at once) keeps
    # buffers, such as a validity bitmap without nulls in the slice, that its own table would not have.
    table = pa.Table.from_arrays([pa.concat_arrays(column.chunks) if column.num_chunks else pa.array([], column.type)
                                  for column in table.columns], schema=table.schema)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    digest = hashlib.sha256(sink.getvalue())
    digest.update(json.dumps(lineage, sort_keys=True).encode())
    return digest.hexdigest()[:32]


def _table(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame, preserve_index=False).combine_chunks()


def _tables(frames: Mapping[str, pd.DataFrame]) -> dict[str, pa.Table]:
    """Each frame as an Arrow table. `from_pandas` costs some milliseconds a frame whatever its size
    (mostly Python, per column), so a range's frames of one schema are converted as one frame and
    sliced: the same table, column types and pandas metadata as each alone. Not when a column is
    `object`, whose Arrow type is inferred from its values (all missing in one partition: `null`)."""
    first = next(iter(frames.values()), None)
    same = first is not None and len(frames) > 1 and first.select_dtypes(include="object").columns.empty and all(
        list(f.columns) == list(first.columns) and (f.dtypes == first.dtypes).all() for f in frames.values())
    if not same:
        return {key: _table(frame) for key, frame in frames.items()}
    whole = _table(pd.concat(frames.values(), ignore_index=True))
    starts = np.cumsum([0, *(len(f) for f in frames.values())])
    return {key: whole.slice(start, len(frame))
            for (key, frame), start in zip(frames.items(), starts, strict=False)}


def _lake_frames(tables: list[pa.Table]) -> list[LakeFrame]:
    """The files' tables as frames with their versions. As for writes (`_tables`), files of one
    schema (pandas metadata included) are converted as one table and sliced: `to_pandas` costs a few
    milliseconds a file whatever its size."""
    metas = [json.loads((t.schema.metadata or {}).get(METADATA_KEY, b"{}")) for t in tables]

    def layout(table: pa.Table) -> tuple:
        return table.schema.remove_metadata(), (table.schema.metadata or {}).get(b"pandas")

    if len(tables) > 1 and all(layout(t) == layout(tables[0]) for t in tables[1:]):
        whole = pa.concat_tables([t.replace_schema_metadata(tables[0].schema.metadata) for t in tables])
        whole = whole.to_pandas(use_threads=False)
        starts = np.cumsum([0, *(len(t) for t in tables)])
        frames = [whole.iloc[start:start + len(t)].reset_index(drop=True)
                  for t, start in zip(tables, starts, strict=False)]
    else:
        frames = [t.to_pandas(use_threads=False) for t in tables]
    return [LakeFrame(frame, meta.get("version", ""), meta.get("lineage", {}), meta.get("run_id", ""))
            for frame, meta in zip(frames, metas, strict=True)]


def sweep_temporary_files(directory: UPath) -> int:
    """Remove temporary files that a killed or failed write left behind (their process is gone, or
    they are older than an hour). Returns how many were removed."""
    removed = 0
    if not directory.exists():
        return 0
    for path in directory.glob(".*.tmp"):
        parts = path.name.split(".")
        pid = int(parts[-3]) if len(parts) >= 4 and parts[-3].isdigit() else None
        stale = time.time() - path.stat().st_mtime > STALE_TEMP_SECONDS
        if stale or (pid is not None and pid != os.getpid() and not pid_alive(pid)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
    return removed


def writable(path: UPath) -> str:
    """Prove a location can be written (for `ecm check`)."""
    path.mkdir(parents=True, exist_ok=True)
    probe = path / f".ecm-check-{uuid.uuid4().hex}"
    probe.write_text("ok")
    probe.unlink()
    return "writable"


class LakeResource(dg.ConfigurableResource):
    """Reads and writes per-partition Parquet snapshots, locally or on an object store."""

    url: str = Field(default="", description="ECM_LAKE_URL (e.g. s3://bucket/ecm); default $ECM_HOME/lake.")

    def root(self) -> UPath:
        return UPath(self.url) if self.url else UPath(ecm_home() / "lake")

    def describe(self) -> str:
        return str(self.root())

    def path(self, asset: str, partition_key: str) -> UPath:
        return self.root() / asset / f"{partition_key}.parquet"

    def uri(self, asset: str, partition_key: str) -> str:
        path = self.path(asset, partition_key)
        return path.as_uri() if path.protocol in ("", "file", "local") else str(path)

    def write(self, asset: str, frames: Mapping[str, pd.DataFrame], *, run_id: str = "",
              lineage: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, str]:
        """Write one file per partition (one call for a whole range); returns each partition's
        version. `lineage[key]` names the versions of the files that partition was built from."""
        directory = self.root() / asset
        local = directory.protocol in ("", "file", "local")
        try:
            directory.mkdir(parents=True, exist_ok=True)
            if local:
                sweep_temporary_files(directory)

            def write_one(key: str, table: pa.Table) -> str:
                built_from = dict((lineage or {}).get(key, {}))
                version = content_version(table, built_from)
                meta = {"version": version, "run_id": run_id, "lineage": built_from}
                table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                                       METADATA_KEY: json.dumps(meta).encode()})
                target = directory / f"{key}.parquet"
                if local:
                    self._write_local(table, target)
                else:
                    buffer = io.BytesIO()
                    pq.write_table(table, buffer)
                    target.fs.pipe_file(target.path, buffer.getvalue())  # one PUT: atomic
                return version

            return dict(zip(frames, _in_parallel(write_one, _tables(frames).items()), strict=True))
        except OSError as exc:
            raise LakeError(f"cannot write {asset} to the lake: {os_problem(exc, directory)}") from None

    @staticmethod
    def _write_local(table: pa.Table, target: UPath) -> None:
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            pq.write_table(table, str(tmp.path))
            os.replace(tmp.path, target.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp.path)

    def read(self, asset: str, partition_key: str, columns: list[str] | None = None) -> LakeFrame:
        """One partition's file; `columns` reads only those (a large table's few needed columns)."""
        return _lake_frames([self._read_table(asset, partition_key, columns)])[0]

    def _read_table(self, asset: str, partition_key: str, columns: list[str] | None) -> pa.Table:
        target = self.path(asset, partition_key)
        try:
            # ParquetFile reads one file without the dataset machinery `read_table` sets up, and one
            # thread per file decodes faster than a pool (reads run side by side already).
            with pq.ParquetFile(target.path, filesystem=target.fs) as file:
                return file.read(columns=columns, use_threads=False)
        except FileNotFoundError:
            raise LakeError(
                f"no {asset} snapshot for partition {partition_key} ({target}): materialize {asset} "
                "for this partition first"
            ) from None
        except (OSError, pa.ArrowInvalid) as exc:
            raise LakeError(f"cannot read {target}: {exc}") from None

    def find(self, asset: str, partition_key: str | None) -> LakeFrame | None:
        """The partition's file, or None when the lake has none (an unreadable file still raises)."""
        if partition_key is None or not self.path(asset, partition_key).exists():
            return None
        return self.read(asset, partition_key)

    def read_many(self, asset: str, partition_keys: Iterable[str], columns: list[str] | None = None,
                  ) -> dict[str, LakeFrame]:
        keys = list(partition_keys)
        tables = _in_parallel(lambda key: self._read_table(asset, key, columns), ((k,) for k in keys))
        return dict(zip(keys, _lake_frames(tables), strict=True))

    def partitions(self, asset: str) -> list[str]:
        """The partition keys the lake holds for an asset, sorted."""
        directory = self.root() / asset
        if not directory.exists():
            return []
        return sorted(p.name.removesuffix(".parquet") for p in directory.glob("*.parquet"))

    def check(self) -> str:
        return f"{self.describe()} {writable(self.root())}"
