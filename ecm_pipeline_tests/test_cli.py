"""The `ecm` command as a user runs it: demo, triage twice, check, and clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ecm_pipeline.cli import main
from ecm_pipeline.partitions import triage_partitions
from ecm_pipeline.resources.sheet import LocalSheetStore


def ecm(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ecm_pipeline.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)


def test_demo_prints_what_it_made(ecm_env: Path, capsys) -> None:
    assert main(["demo", "--days", "3"]) == 0
    out = capsys.readouterr().out
    assert "warehouse.duckdb" in out and "7 agents" in out
    assert (ecm_env / "warehouse.duckdb").exists() and (ecm_env / "sheet.sqlite").exists()


def test_triage_rerun_and_check(demo_env, capsys) -> None:
    home, key = demo_env
    assert main(["triage"]) == 0
    first = capsys.readouterr()
    assert first.out.startswith(":dart: *ECM Triage* — ")
    assert "new assignments written to the Assignments tab" in first.out
    assert "DEBUG" not in first.out + first.err and "Traceback" not in first.err
    assert "warning: " in first.err and "out_of_scope_currency" in first.err   # warnings, one line each

    assert main(["triage", "--partition", key]) == 0
    second = capsys.readouterr().out
    assert "Nothing assigned twice: no new assignments" in second
    assert "Re-run of this tick" in second
    assert "chat.update" in second

    tab = LocalSheetStore(str(home / "sheet.sqlite")).read_tab("Assignments")
    assert not tab[tab["Triage Run"] == key]["Order ID"].duplicated().any()
    posts = [json.loads(p.read_text()) for p in (home / "outbox").glob("*chat.postMessage*.json")]
    briefings = [p for p in posts if p["metadata"]["event_payload"]["message"] == "triage"]
    assert len(briefings) == 1
    assert (Path(os.environ["DAGSTER_HOME"]) / "dagster.yaml").exists()  # runs recorded for `make dev`

    assert main(["check"]) == 0
    check = capsys.readouterr().out
    for name in ("settings", "warehouse", "sheet", "slack", "lake"):
        assert f"\n{name}" in "\n" + check


def test_an_old_tick_is_rebuilt_but_never_assigned_or_posted(demo_env, capsys) -> None:
    home, key = demo_env
    old = triage_partitions.get_partition_keys()[-5]
    assert main(["triage", "--partition", old]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Triage {old}: ") and "nothing assigned or posted" in out and "not the live tick" in out
    assert not (home / "outbox").exists()


def test_check_without_demo_data_says_what_is_missing(ecm_env, capsys) -> None:
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert "warehouse  missing" in out and "run `ecm demo`" in out
    assert "sheet      missing" in out


@pytest.mark.parametrize(("key", "says"), [
    ("2026-11-21", "is not a partition key like 2026-11-21-14:00"),
    ("2026-11-21-15:00", "is not a tick (ticks are 07:00, 14:00, 20:00 Asia/Dubai)"),
    ("2026-11-21-14:0", "did you mean 2026-11-21-14:00?"),
    ("2030-01-01-07:00", "is in the future (valid ticks: 2026-01-01-07:00 to "),
    ("2025-01-01-07:00", "is before the first partition (valid ticks: 2026-01-01-07:00 to "),
])
def test_triage_with_a_bad_partition_is_a_one_line_error(ecm_env, capsys, key: str, says: str) -> None:
    assert main(["triage", "--partition", key]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ecm triage: ") and says in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_triage_without_demo_data_fails_clearly(ecm_env, capsys) -> None:
    assert main(["triage"]) == 1
    err = capsys.readouterr().err
    assert "FAILED — step snapshot failed: no warehouse at" in err and "run `ecm demo`" in err
    assert "Traceback" not in err


def test_a_bad_settings_file_is_one_line_for_every_command(ecm_env: Path, tmp_path: Path) -> None:
    """The commands' modules read the settings when they load: a mistake there is the same one-line
    error as any other, not an import traceback."""
    bad = tmp_path / "settings.yaml"
    bad.write_text("retention: {closed_days: 0}\n")
    done = ecm("triage", env={"ECM_SETTINGS": str(bad)})
    assert done.returncode == 2
    assert done.stderr.startswith("ecm: ") and f"{bad}: retention.closed_days" in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
