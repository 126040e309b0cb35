"""The lake: local or on an S3-compatible store (a moto server on 127.0.0.1), one Parquet file per
asset and partition, written atomically, versioned by content, with its lineage; the whole chain
runs on S3 the same as on disk; temporary files of killed writes are swept."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from ecm_pipeline.assets import triage_assets
from ecm_pipeline.checks import quality_gates
from ecm_pipeline.resources import environment_resources
from ecm_pipeline.resources.lake import LakeError, LakeResource, content_version, sweep_temporary_files
from ecm_pipeline_tests.conftest import QUIET


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A local S3-compatible server (moto) with one bucket; yields its endpoint URL."""
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                 aws_secret_access_key="test").create_bucket(Bucket="ecm-lake")
    yield endpoint
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def s3_env(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The standard AWS variables pointing at the local server, and ECM_LAKE_URL on its bucket."""
    for name, value in {"AWS_ENDPOINT_URL": s3_server, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    url = f"s3://ecm-lake/run-{os.getpid()}-{time.monotonic_ns()}"
    monkeypatch.setenv("ECM_LAKE_URL", url)
    return url


def frame(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame({"order_id": [f"AE{i:010d}" for i in range(n)], "amount": [1.5 * i for i in range(n)],
                         "at": pd.to_datetime(["2026-11-20 10:00"] * n)})


@pytest.mark.parametrize("where", ["local", "s3"])
def test_round_trip_with_version_and_lineage(where: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    lake = LakeResource(url=request.getfixturevalue("s3_env")) if where == "s3" else LakeResource(url=str(tmp_path))
    versions = lake.write("stuck_orders", {"2026-11-20-14:00": frame(3), "2026-11-20-20:00": frame(5)},
                          run_id="r1", lineage={"2026-11-20-14:00": {"x": "v1"}})
    got = lake.read("stuck_orders", "2026-11-20-14:00")
    pd.testing.assert_frame_equal(got.frame, frame(3))
    assert got.version == versions["2026-11-20-14:00"] and got.lineage == {"x": "v1"} and got.run_id == "r1"
    assert lake.partitions("stuck_orders") == ["2026-11-20-14:00", "2026-11-20-20:00"]
    # writing the same content again replaces the file and keeps the version; other content changes it
    again = lake.write("stuck_orders", {"2026-11-20-14:00": frame(3)}, run_id="r2",
                       lineage={"2026-11-20-14:00": {"x": "v1"}})
    assert again == {"2026-11-20-14:00": versions["2026-11-20-14:00"]}
    assert lake.read("stuck_orders", "2026-11-20-14:00").run_id == "r2"
    changed = lake.write("stuck_orders", {"2026-11-20-14:00": frame(4)})
    assert changed["2026-11-20-14:00"] != versions["2026-11-20-14:00"]
    with pytest.raises(LakeError, match="no scored_orders snapshot for partition 2026-11-20-14:00"):
        lake.read("scored_orders", "2026-11-20-14:00")
    if where == "s3":
        assert lake.uri("stuck_orders", "2026-11-20-14:00").startswith("s3://ecm-lake/")


def test_versions_depend_on_content_and_lineage_only() -> None:
    assert content_version(frame(3), {}) == content_version(frame(3).copy(), {})
    assert content_version(frame(3), {}) != content_version(frame(3), {"stuck_orders": "v"})
    changed = frame(3)
    changed.loc[0, "amount"] = 99.0
    assert content_version(frame(3), {}) != content_version(changed, {})


def test_a_range_written_at_once_gives_each_partition_what_it_gets_alone(tmp_path: Path) -> None:
    """A range's frames are converted to Arrow as one and sliced; each file, its version and what
    reads back must be what writing that partition on its own gives — nulls in other partitions,
    an empty partition and nullable integers included."""
    rows = frame(17).assign(reason=["stuck_at_lulu" if i % 5 else None for i in range(17)],
                            held=[i % 3 == 0 for i in range(17)],
                            count=pd.array([None if i in (1, 12) else i for i in range(17)], dtype="Int64"))
    rows = rows.astype({"reason": "str"})
    # Slices of one frame, as `unstacked` hands a range over: one set of dtypes, so one conversion.
    frames = {"2026-11-20-07:00": rows.iloc[:5], "2026-11-20-14:00": rows.iloc[5:5],
              "2026-11-20-20:00": rows.iloc[5:8], "2026-11-21-07:00": rows.iloc[8:]}
    ranged, alone = LakeResource(url=str(tmp_path / "ranged")), LakeResource(url=str(tmp_path / "alone"))
    versions = ranged.write("scored_orders", frames)
    for key, expected in frames.items():
        assert alone.write("scored_orders", {key: expected}) == {key: versions[key]}
        pd.testing.assert_frame_equal(ranged.read("scored_orders", key).frame, alone.read("scored_orders", key).frame)
        assert ranged.path("scored_orders", key).read_bytes() == alone.path("scored_orders", key).read_bytes()
        assert len(ranged.read("scored_orders", key).frame) == len(expected)
    # Reads of many files are converted as one too, and give what each read alone gives; a file of
    # another schema (an older layout, say) among them is converted on its own.
    alone.write("scored_orders", {"2026-11-19-20:00": frame(2)})
    for lake in (ranged, alone):
        keys = lake.partitions("scored_orders")
        many = lake.read_many("scored_orders", keys)
        for key in keys:
            one = lake.read("scored_orders", key)
            pd.testing.assert_frame_equal(many[key].frame, one.frame)
            assert (many[key].version, many[key].lineage) == (one.version, one.lineage)
    # An object column's Arrow type depends on its values: such frames are converted one by one.
    mixed = {"a": pd.DataFrame({"x": pd.Series([None], dtype=object)}), "b": pd.DataFrame({"x": ["y"]}).astype(object)}
    assert ranged.write("mixed", mixed) == {k: content_version(f, {}) for k, f in mixed.items()}


def test_temporary_files_of_dead_writers_are_swept(tmp_path: Path) -> None:
    from upath import UPath

    directory = tmp_path / "stuck_orders"
    directory.mkdir()
    dead = directory / ".2026-11-20-14:00.parquet.999999.abcd1234.tmp"   # no such process
    mine = directory / f".2026-11-20-20:00.parquet.{os.getpid()}.abcd1234.tmp"
    dead.write_bytes(b"half a file")
    mine.write_bytes(b"being written")
    assert sweep_temporary_files(UPath(directory)) == 1
    assert not dead.exists() and mine.exists()
    LakeResource(url=str(tmp_path)).write("stuck_orders", {"2026-11-20-14:00": frame()})
    assert not list(directory.glob(".*.tmp")) or list(directory.glob(".*.tmp")) == [mine]


def test_the_whole_chain_on_an_s3_lake(demo_env, s3_env: str) -> None:
    home, key = demo_env
    result = dg.materialize([*triage_assets, *quality_gates], partition_key=key, resources=environment_resources(),
                            instance=dg.DagsterInstance.ephemeral(), run_config=QUIET)
    assert result.success
    lake = LakeResource(url=s3_env)
    for asset in ("stuck_orders", "excluded_orders", "qualified_orders", "disqualified_orders", "scored_orders",
                  "assignments", "assignment_agents", "ticket_announcements"):
        assert lake.partitions(asset) == [key], asset
    assert not (home / "lake").exists()
    uri = next(e.materialization.metadata["dagster/uri"].value for e in result.get_asset_materialization_events()
               if e.materialization.asset_key.to_user_string() == "scored_orders")
    assert uri == f"{s3_env}/scored_orders/{key}.parquet"
