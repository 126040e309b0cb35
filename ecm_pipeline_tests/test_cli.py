"""The `ecm` command as a user runs it: demo, triage twice, check, and clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ecm_pipeline.cli import main
from ecm_pipeline.partitions import live_tick_key
from ecm_pipeline.resources.sheet import LocalSheetStore


def ecm(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ecm_pipeline.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)


def test_demo_triage_rerun_and_check(tmp_path: Path) -> None:
    env = {"ECM_HOME": str(tmp_path / "ecm"), "DAGSTER_HOME": str(tmp_path / "dagster")}
    demo = ecm("demo", env=env)
    assert demo.returncode == 0, demo.stderr
    assert "warehouse.duckdb" in demo.stdout and "7 agents" in demo.stdout

    first = ecm("triage", env=env)
    assert first.returncode == 0, first.stderr
    key = live_tick_key()
    assert first.stdout.startswith(":dart: *ECM Triage* — ")
    assert "new assignments written to the Assignments tab" in first.stdout
    assert "DEBUG" not in first.stdout + first.stderr

    second = ecm("triage", "--partition", key, env=env)
    assert second.returncode == 0, second.stderr
    assert "Nothing assigned twice: no new assignments" in second.stdout
    assert "Re-run of this tick" in second.stdout
    assert "chat.update" in second.stdout

    tab = LocalSheetStore(str(tmp_path / "ecm" / "sheet.sqlite")).read_tab("Assignments")
    assert not tab[tab["Triage Run"] == key]["Order ID"].duplicated().any()
    posts = [json.loads(p.read_text()) for p in (tmp_path / "ecm" / "outbox").glob("*chat.postMessage*.json")]
    briefings = [p for p in posts if p["metadata"]["event_payload"]["message"] == "triage"]
    assert len(briefings) == 1
    assert (tmp_path / "dagster" / "dagster.yaml").exists()  # runs recorded for `make dev`

    check = ecm("check", env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    for name in ("settings", "warehouse", "sheet", "slack", "lake"):
        assert f"\n{name}" in "\n" + check.stdout


def test_check_without_demo_data_says_what_is_missing(ecm_env, capsys) -> None:
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert "warehouse  missing" in out and "run `ecm demo`" in out
    assert "sheet      missing" in out


@pytest.mark.parametrize("key", ["2026-11-21", "2026-11-21-15:00"])
def test_triage_with_a_bad_partition_is_a_one_line_error(ecm_env, capsys, key: str) -> None:
    assert main(["triage", "--partition", key]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ecm triage: ") and "Traceback" not in err


def test_triage_without_demo_data_fails_clearly(ecm_env, capsys) -> None:
    assert main(["triage"]) == 1
    err = capsys.readouterr().err
    assert "FAILED — step snapshot failed: no warehouse at" in err and "run `ecm demo`" in err
    assert "Traceback" not in err
