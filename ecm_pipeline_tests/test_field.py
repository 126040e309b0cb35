"""The ops agent's commands (SPEC §8, §11): every legal and illegal lifecycle step with its ledger
rows and audit record, two agents resolving one ticket at the same moment, `ecm order` giving what
the pipeline's lake says for every order of a tick, and one-line errors for every mistake."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ecm_pipeline.cli import main
from ecm_pipeline.domain.tickets import AGENT_COLUMNS, ASSIGNMENT_COLUMNS
from ecm_pipeline.field import diagnose
from ecm_pipeline.partitions import as_of_utc
from ecm_pipeline.resources.sheet import LocalSheetStore
from ecm_pipeline.resources.warehouse import WarehouseResource
from ecm_pipeline_tests.test_pipeline import materialize

ANA, BO = "ana@aspora.example", "bo@aspora.example"
RUN = "2026-11-28-07:00"


@pytest.fixture
def sheet(ecm_env: Path) -> LocalSheetStore:
    """A sheet with two agents and one ticket in each state."""
    store = LocalSheetStore(ecm_env / "sheet.sqlite")
    store.ensure_tabs()
    agents = [[ANA, "Ana", "Ops", "", "TRUE", "10"], [BO, "Bo", "Ops", "", "TRUE", "10"]]
    store.append_rows("Agents", pd.DataFrame(agents, columns=list(AGENT_COLUMNS)))
    rows = [[order, agent, "2026-11-28 07:00:05+0400", status, "P1", "AED", "6000.00", "30.0", "stuck_at_lulu", "",
             RUN] for order, agent, status in [("OPEN1", ANA, "OPEN"), ("OPEN2", ANA, "OPEN"), ("OPEN3", ANA, "OPEN"),
                                               ("PROG1", ANA, "IN_PROGRESS"), ("ESC1", ANA, "ESCALATED"),
                                               ("ESC2", ANA, "ESCALATED"), ("DONE1", ANA, "RESOLVED"),
                                               ("BOS1", BO, "OPEN")]]
    store.append_rows("Assignments", pd.DataFrame(rows, columns=list(ASSIGNMENT_COLUMNS)))
    return store


def status(store: LocalSheetStore, order: str) -> str:
    tab = store.read_tab("Assignments")
    return tab.loc[tab["Order ID"] == order, "Status"].iloc[-1]


@pytest.mark.parametrize(("command", "order", "after"), [
    (["start"], "OPEN1", "IN_PROGRESS"),
    (["start"], "ESC1", "IN_PROGRESS"),
    (["resolve", "--notes", "credited"], "OPEN1", "RESOLVED"),
    (["resolve", "--notes", "credited"], "PROG1", "RESOLVED"),
    (["resolve", "--notes", "credited"], "ESC1", "RESOLVED"),
    (["escalate", "--reason", "Lulu silent"], "OPEN1", "ESCALATED"),
    (["escalate", "--reason", "Lulu silent"], "PROG1", "ESCALATED"),
])
def test_every_legal_step(sheet: LocalSheetStore, capsys, command: list[str], order: str, after: str) -> None:
    before = status(sheet, order)
    assert main([command[0], order, "--agent", ANA, *command[1:]]) == 0
    assert capsys.readouterr().out.startswith(f"{order}: {before} → {after}")
    assert status(sheet, order) == after
    [audit] = sheet.read_tab("Audit Log").to_dict("records")
    assert (audit["Order ID"], audit["Actor"], audit["From"], audit["To"], audit["Triage Run"]) == \
        (order, ANA, before, after, RUN)


@pytest.mark.parametrize(("command", "order", "says"), [
    (["start"], "PROG1", "is IN_PROGRESS: it cannot become IN_PROGRESS"),
    (["escalate", "--reason", "again"], "ESC2", "is ESCALATED: it cannot become ESCALATED"),
    (["resolve", "--notes", "twice"], "DONE1", "is already RESOLVED"),
    (["start"], "BOS1", "is bo@aspora.example's ticket, not yours: add --force"),
    (["resolve", "--notes", "x"], "NOPE1", "no ticket for order NOPE1"),
])
def test_illegal_steps_are_refused_in_one_line(sheet: LocalSheetStore, capsys, command, order, says) -> None:
    before = sheet.read_tabs(["Assignments", "Resolutions", "Audit Log"])
    assert main([command[0], order, "--agent", ANA, *command[1:]]) == 1
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1 and "Traceback" not in err
    after = sheet.read_tabs(["Assignments", "Resolutions", "Audit Log"])
    for tab in before:
        pd.testing.assert_frame_equal(after[tab], before[tab])


def test_a_ticket_moved_to_the_archive_is_found_there(sheet: LocalSheetStore, ecm_env: Path, capsys) -> None:
    from ecm_pipeline.archive import ARCHIVE_ASSET
    from ecm_pipeline.resources.lake import LakeResource

    old = pd.DataFrame([["OLD1", ANA, "2026-06-01 07:00:05+0400", "RESOLVED", "P2", "AED", "90.00", "30.0",
                         "stuck_at_lulu", "", "2026-06-01-07:00"]], columns=list(ASSIGNMENT_COLUMNS))
    LakeResource(url=str(ecm_env / "lake")).write(ARCHIVE_ASSET, {"2026-07-01-07:00": old}, run_id="test")
    assert main(["resolve", "OLD1", "--agent", ANA, "--notes", "late"]) == 1
    err = capsys.readouterr().err
    assert "order OLD1 is already RESOLVED (triage run 2026-06-01-07:00) and archived: nothing to do" in err
    assert sheet.read_tab("Resolutions").empty and sheet.read_tab("Audit Log").empty


def test_force_acts_on_another_agents_ticket(sheet: LocalSheetStore) -> None:
    assert main(["start", "BOS1", "--agent", ANA, "--force"]) == 0
    assert status(sheet, "BOS1") == "IN_PROGRESS"
    assert sheet.read_tab("Audit Log")["Actor"].tolist() == [ANA]


def test_resolve_and_escalate_rows(sheet: LocalSheetStore, monkeypatch) -> None:
    monkeypatch.setenv("ECM_AGENT", ANA)         # the default agent
    assert main(["resolve", "OPEN2", "--notes", "Lulu credited", "--diagnosis", "correct",
                 "--runbook", "modified"]) == 0
    assert main(["escalate", "OPEN3", "--reason", "Lulu silent for 30 h"]) == 0
    [resolution] = sheet.read_tab("Resolutions").to_dict("records")
    assert resolution["Order ID"] == "OPEN2" and resolution["Agent"] == ANA and resolution["Notes"] == "Lulu credited"
    assert resolution["Resolution Type"] == "AGENT_RESOLVED" and resolution["Triage Run"] == RUN
    assert resolution["Diagnosis Match"] == "correct" and resolution["Action Followed"] == "modified"
    assert resolution["SLA Target Minutes"] == "480" and resolution["SLA Status"] == "MISSED"   # 8 h SLA, days ago
    assert resolution["Amount"] == "6000.00" and resolution["Currency"] == "AED"
    assert int(resolution["Resolution Minutes"]) > 24 * 60
    [escalation] = sheet.read_tab("Escalations").to_dict("records")
    assert escalation["Order ID"] == "OPEN3" and escalation["Escalated By"] == ANA
    assert escalation["Reason"] == "Lulu silent for 30 h" and escalation["Assigned To"] == ANA
    assert escalation["Order Status"] == ""            # no warehouse here: left blank, never a failure


@pytest.mark.parametrize(("args", "says"), [
    (["resolve", "OPEN1", "--agent", ANA, "--notes", "  "], "say what you did: --notes TEXT"),
    (["start", "OPEN1"], "pass --agent EMAIL or set ECM_AGENT"),
    (["start", "OPEN1", "--agent", "eve@aspora.example"], "eve@aspora.example is not in the Agents tab"),
    (["order", "AE' OR '1'='1"], "is not an order id"),
    (["order", "AE1;DROP TABLE orders_goms"], "is not an order id"),
    (["order", "AE1", "--as-of", "2026-13-01-07:00"], "is not a partition key"),
])
def test_mistakes_are_one_line_errors(sheet: LocalSheetStore, capsys, monkeypatch, args, says) -> None:
    monkeypatch.delenv("ECM_AGENT", raising=False)
    assert main(args) != 0
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_missing_sheet_or_warehouse_is_one_line(ecm_env: Path, capsys) -> None:
    assert main(["tickets", "--agent", ANA]) == 1
    assert "no sheet at" in capsys.readouterr().err
    LocalSheetStore(ecm_env / "sheet.sqlite").ensure_tabs()
    assert main(["order", "AE1PSW7CI700"]) == 1
    err = capsys.readouterr().err
    assert "warehouse" in err and err.count("\n") == 1 and "Traceback" not in err


def test_two_agents_resolving_one_ticket_at_once_only_one_wins(sheet: LocalSheetStore, ecm_env: Path) -> None:
    env = {**os.environ, "ECM_HOME": str(ecm_env)}
    runs = [subprocess.Popen([sys.executable, "-m", "ecm_pipeline.cli", "resolve", "OPEN1", "--agent", agent, "--force",
                              "--notes", f"by {agent}"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for agent in (ANA, BO)]
    results = [(r.wait(timeout=120), r.stderr.read()) for r in runs]
    assert sorted(code for code, _ in results) == [0, 1], results
    assert "is already RESOLVED" in next(err for code, err in results if code == 1)
    assert len(sheet.read_tab("Resolutions")) == 1 and len(sheet.read_tab("Audit Log")) == 1


def test_tickets_lists_the_queue_most_urgent_first(demo_env, capsys) -> None:
    home, key = demo_env
    assert materialize(key).success
    tab = LocalSheetStore(home / "sheet.sqlite").read_tab("Assignments")
    agent = tab.loc[tab["Triage Run"] == key, "Assigned Agent"].value_counts().index[0]
    assert main(["tickets", "--agent", agent, "--json"]) == 0
    mine = json.loads(capsys.readouterr().out)
    tickets = pd.DataFrame(mine["tickets"])
    assert len(tickets) > 0 and mine["today"]["resolved_today"] == 0
    rank = tickets["priority"].map({"P1": 0, "P2": 1, "P3": 2, "P4": 3})
    assert rank.is_monotonic_increasing
    for _, same in tickets.groupby("priority", sort=False):
        breached = (same["sla_band"] == "BREACHED").tolist()
        assert breached == sorted(breached, reverse=True)
    assert main(["tickets", "--agent", agent]) == 0
    out = capsys.readouterr().out
    assert f"Open tickets of {agent}" in out and "\x1b[" not in out        # plain when piped
    assert "Today: 0 resolved" in out


@pytest.mark.slow
def test_order_gives_what_the_lake_says_for_every_order_of_a_tick(demo_env, capsys) -> None:
    home, key = demo_env
    assert materialize(key).success
    lake = home / "lake"
    scored = pd.read_parquet(lake / "scored_orders" / f"{key}.parquet")
    disqualified = pd.read_parquet(lake / "disqualified_orders" / f"{key}.parquet")
    excluded = pd.read_parquet(lake / "excluded_orders" / f"{key}.parquet")
    assert scored["stuck_reason"].nunique() >= 20 and disqualified["disqualification_code"].nunique() >= 4

    # Every order of the tick, in one call of the command's own function ...
    ids = [*scored["order_id"], *disqualified["order_id"], *excluded["order_id"]]
    tab = LocalSheetStore(home / "sheet.sqlite").read_tab("Assignments")
    found = diagnose(WarehouseResource(), tab, ids, as_of_utc(key))
    for row in scored.itertuples():
        d = found[row.order_id]
        assert (d["verdict"], d["stuck_reason"], d["rule_id"], d["score"], d["priority"]) == \
            ("stuck", row.stuck_reason, row.rule_id, row.score, row.priority), row.order_id
    for row in disqualified.itertuples():
        assert (found[row.order_id]["verdict"], found[row.order_id]["disqualification_code"]) == \
            ("disqualified", row.disqualification_code)
    assert all(found[i]["verdict"] == "excluded" for i in excluded["order_id"])

    # ... and through `ecm order --as-of --json` for one order of each reason and each code.
    picks = [*scored.drop_duplicates("stuck_reason")["order_id"],
             *disqualified.drop_duplicates("disqualification_code")["order_id"]]
    for order_id in picks:
        assert main(["order", order_id, "--as-of", key, "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(found[order_id], default=str))
    assert main(["order", "AE0NOSUCH000", "--as-of", key]) == 1
    assert "is not an order the warehouse knows" in capsys.readouterr().err


def test_the_field_commands_import_no_great_expectations(sheet: LocalSheetStore, ecm_env: Path) -> None:
    probe = ("import sys; from ecm_pipeline.cli import main; "
             "main(['tickets', '--agent', 'ana@aspora.example', '--json']); main(['order', 'AE1PSW7CI700']); "
             "main(['start', 'OPEN1', '--agent', 'ana@aspora.example']); "
             "print('GX' if 'great_expectations' in sys.modules else 'no GX')")
    done = subprocess.run([sys.executable, "-c", probe], env={**os.environ, "ECM_HOME": str(ecm_env)},
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().endswith("no GX"), done.stdout + done.stderr
    assert status(sheet, "OPEN1") == "IN_PROGRESS"
