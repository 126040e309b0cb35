"""Exactly once under faults, end to end with the real clients against the loopback fakes: writes
that land after the client gave up converge, an outage never leaves a ticket unannounced, a killed
run leaves nothing that blocks, two runs racing cannot both assign, hostile roster rows are set
aside by name, and corrupt local state is a named warning or a one-line error."""

from __future__ import annotations

import json
import os
import signal
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
from ecm_pipeline.domain import tickets
from ecm_pipeline.partitions import triage_partitions
from ecm_pipeline.resources import environment_resources
from ecm_pipeline.resources.google_sheet import GoogleSheetResource
from ecm_pipeline.resources.sheet import LocalSheetStore
from ecm_pipeline.resources.slack import Outbox, SlackResource, message_metadata
from ecm_pipeline.resources.slack_api import SlackApiResource
from ecm_pipeline_tests.conftest import QUIET
from ecm_pipeline_tests.fakes.sheets_server import FakeSheets, service_account_key
from ecm_pipeline_tests.fakes.slack_server import FakeSlack

OPEN = ["OPEN", "IN_PROGRESS", "ESCALATED"]


def materialize(key: str, resources: dict, instance: dg.DagsterInstance, **kwargs) -> dg.ExecuteInProcessResult:
    return dg.materialize([*triage_assets, *quality_gates], partition_key=key,
                          resources={**environment_resources(), **resources}, instance=instance,
                          raise_on_error=False, run_config=QUIET, **kwargs)


def materialized(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    for event in result.get_asset_materialization_events():
        if event.materialization.asset_key.to_user_string() == asset:
            return {k: v.value for k, v in event.materialization.metadata.items()}
    raise AssertionError(f"{asset} was not materialized")


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    fake = FakeSlack().start()
    yield fake
    fake.stop()


def slack_resource(fake: FakeSlack, timeout: float = 5) -> SlackApiResource:
    return SlackApiResource(token=fake.token, channel=fake.channel, base_url=fake.url, timeout_seconds=timeout,
                            backoff_seconds=0)


def briefings(fake: FakeSlack, key: str) -> list[dict]:
    return [m for m in fake.top_level() if m.get("metadata") == message_metadata("triage", key)]


def agent_replies(fake: FakeSlack, parent: dict) -> list[str]:
    return [m["metadata"]["event_payload"]["message"] for m in fake.replies(parent["ts"])]


# --- a write that lands after the client gave up ------------------------------------------------------

def test_a_slack_post_stored_after_the_timeout_converges_to_one_briefing(demo_env, slack: FakeSlack) -> None:
    _, key = demo_env
    instance = dg.DagsterInstance.ephemeral()
    slack.apply_late("chat.postMessage", seconds=0.8)       # the first post lands after the client gave up
    first = materialize(key, {"slack": slack_resource(slack, timeout=0.3)}, instance)
    assert first.success
    slack.wait_idle()
    assert len(briefings(slack, key)) == 2                 # the retry's copy and the late one
    second = materialize(key, {"slack": slack_resource(slack)}, instance)
    assert second.success
    [parent] = briefings(slack, key)
    replies = agent_replies(slack, parent)
    agents = materialized(second, "slack_briefing")["thread_replies"]
    assert agents > 0 and sorted(replies) == sorted(set(replies)) and len(replies) == agents
    triage = [m for m in slack.top_level() if m.get("metadata", {}).get("event_payload", {}).get("partition") == key
              and m["metadata"]["event_payload"]["message"].startswith("triage")]   # not the progress alerts
    assert all(m["ts"] == parent["ts"] or m.get("thread_ts") == parent["ts"] for m in triage)


@pytest.fixture
def sheets(demo_env) -> Iterator[FakeSheets]:
    """The demo's roster and tickets in a fake Google Sheet."""
    home, _ = demo_env
    fake = FakeSheets().start()
    local = LocalSheetStore(home / "sheet.sqlite").read_tabs(list(tickets.TABS))
    for tab, columns in tickets.TABS.items():
        fake.add_tab(tab, [list(columns), *local[tab][list(columns)].values.tolist()])
    yield fake
    fake.stop()


def google(fake: FakeSheets, timeout: float = 5) -> GoogleSheetResource:
    key = json.dumps(service_account_key(f"{fake.url}/token"))
    return GoogleSheetResource(spreadsheet_id=fake.spreadsheet_id, service_account_json=key, api_endpoint=fake.url,
                               timeout_seconds=timeout, backoff_seconds=0)


def open_rows(fake: FakeSheets) -> pd.DataFrame:
    rows = fake.rows("Assignments")
    frame = pd.DataFrame([r + [""] * (len(rows[0]) - len(r)) for r in rows[1:]], columns=rows[0])
    return frame[frame["Status"].isin(OPEN)]


def test_a_sheet_append_applied_after_the_timeout_leaves_no_duplicate(demo_env, sheets: FakeSheets) -> None:
    _, key = demo_env
    instance = dg.DagsterInstance.ephemeral()
    sheets.apply_late(0.8, op="append")                     # Google applies the first append late
    first = materialize(key, {"sheet": google(sheets, timeout=0.3)}, instance)
    assert first.success                                    # the pipeline's own copy never fails a run
    sheets.wait_idle()
    assert open_rows(sheets)["Order ID"].duplicated().any()  # the late append did land twice
    second = materialize(key, {"sheet": google(sheets)}, instance)
    assert second.success and materialized(second, "assignments")["new_assignments"] == 0
    rows = open_rows(sheets)
    assert not rows["Order ID"].duplicated().any()
    assert len(rows[rows["Triage Run"] == key]) == materialized(first, "assignments")["new_assignments"] > 0


# --- an outage never leaves a ticket unannounced ------------------------------------------------------

def test_tickets_written_while_slack_was_down_are_announced_once_at_the_next_tick(demo_env, slack: FakeSlack) -> None:
    home, now = demo_env
    keys = triage_partitions.get_partition_keys()
    earlier = keys[keys.index(now) - 1]
    instance = dg.DagsterInstance.ephemeral()
    # The earlier tick, while it was the live tick, with Slack down: tickets written, nothing posted.
    slack.server_error("chat.postMessage", times=1000)
    with pytest.MonkeyPatch.context() as then:
        then.setattr("ecm_pipeline.run_context.live_tick_key", lambda _=None: earlier)
        down = materialize(earlier, {"slack": slack_resource(slack)}, instance)
    assert not down.success
    failure = next(e for e in down.all_events if e.is_step_failure)
    assert "tickets are in the Sheet but not yet announced" in failure.step_failure_data.user_failure_data.description
    written = LocalSheetStore(home / "sheet.sqlite").read_tab("Assignments")
    orphans = set(written.loc[written["Triage Run"] == earlier, "Order ID"])
    assert orphans and not briefings(slack, earlier)

    # Slack is back; the next tick announces them, in the briefing and in each agent's thread, except
    # those whose orders completed meanwhile (closed as self-healed: nobody needs to hear of them).
    slack.clear_faults()
    for _ in range(2):   # and a re-run of that tick does not announce them twice
        result = materialize(now, {"slack": slack_resource(slack)}, instance)
        assert result.success
        written = LocalSheetStore(home / "sheet.sqlite").read_tab("Assignments")
        orphans = set(written.loc[(written["Triage Run"] == earlier) & (written["Status"] != "RESOLVED"), "Order ID"])
        assert materialized(result, "slack_briefing")["carried_over"] == len(orphans) > 0
    [parent] = briefings(slack, now)
    assert f"{len(orphans)} tickets from earlier ticks were never announced" in parent["text"]
    threads = "\n".join(m["text"] for m in slack.replies(parent["ts"]))
    assert all(threads.count(f"`{order}`") == 1 for order in orphans)
    assert f"Carried over from the {earlier} tick" in threads


# --- a killed run, and two runs racing ------------------------------------------------------------------

def ecm(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ecm_pipeline.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **env})


def local_state(home: Path, key: str) -> tuple[pd.DataFrame, list[dict]]:
    tab = LocalSheetStore(home / "sheet.sqlite").read_tab("Assignments")
    outbox = Outbox(home / "outbox", SlackResource().channel)
    posted = [args for args in outbox._messages().values()
              if args.get("metadata") == message_metadata("triage", key)]
    return tab[tab["Status"].isin(OPEN)], posted


@pytest.mark.slow
def test_a_killed_triage_leaves_nothing_that_blocks_the_next_one(demo_env, tmp_path: Path, capsys) -> None:
    home, key = demo_env
    env = {"ECM_HOME": str(home), "DAGSTER_HOME": os.environ["DAGSTER_HOME"]}
    victim = ecm("triage", env=env)
    scored = home / "lake" / "scored_orders" / f"{key}.parquet"
    deadline = time.monotonic() + 120
    while not scored.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)                     # mid-run: as the assignment step starts
    victim.wait()

    from ecm_pipeline.cli import main

    assert os.environ["DAGSTER_HOME"] == env["DAGSTER_HOME"]
    assert main(["triage"]) == 0                           # the next run goes through
    assert "marked run" in capsys.readouterr().err         # ... and said it cleaned up the dead one
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        runs = instance.get_runs()
        assert len(runs) == 2 and [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS,
                                                             dg.DagsterRunStatus.FAILURE]
    assert not list((home / "lake").rglob("*.tmp"))
    rows, posted = local_state(home, key)
    assert not rows["Order ID"].duplicated().any()
    assert len(posted) == 1


@pytest.mark.slow
def test_two_triage_runs_of_one_tick_at_once_assign_once(demo_env, capsys) -> None:
    from ecm_pipeline.cli import main

    home, key = demo_env
    env = {"ECM_HOME": str(home), "DAGSTER_HOME": os.environ["DAGSTER_HOME"]}
    assert main(["check"]) == 0                              # the instance exists before the race
    other = ecm("triage", "--partition", key, env=env)      # another process: a manual run, say
    snapshot = home / "lake" / "stuck_orders" / f"{key}.parquet"
    deadline = time.monotonic() + 120
    while not snapshot.exists() and other.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)                                     # ... and this one starts as it gets going
    assert main(["triage", "--partition", key]) == 0
    mine = capsys.readouterr().out
    theirs, err = other.communicate(timeout=300)
    assert other.returncode == 0, err.splitlines()[-3:]
    said = [mine, theirs]
    assert sum("new assignments written" in out for out in said) == 1
    assert sum("Nothing assigned twice" in out for out in said) == 1
    rows, posted = local_state(home, key)
    assert not rows["Order ID"].duplicated().any()
    assert len(posted) == 1


# --- hostile roster rows ----------------------------------------------------------------------------------

HOSTILE = [
    ("inf.agent@aspora.example", "Max Tickets 'inf'", "inf"),
    ("big.agent@aspora.example", "Max Tickets '1e9'", "1e9"),
    ("not-an-email", "Email 'not-an-email' is not an e-mail address", "10"),
    ("eve@aspora.example,bob@aspora.example", "is not one e-mail address", "10"),
    ("eve@aspora.example\nbob@aspora.example", "is not one e-mail address", "10"),
    ("\u200bamira.haddad@aspora.example", "duplicate agent", "10"),
]


def test_hostile_roster_rows_are_named_and_get_no_ticket(demo_env) -> None:
    home, key = demo_env
    store = LocalSheetStore(home / "sheet.sqlite")
    hostile = [[email, "Hostile", "Ops", "", "TRUE", max_tickets] for email, _, max_tickets in HOSTILE]
    store.append_rows("Agents", pd.DataFrame(hostile, columns=list(tickets.AGENT_COLUMNS)))
    result = materialize(key, {}, dg.DagsterInstance.ephemeral())
    assert result.success
    problems = materialized(result, "assignments")["roster_problems"]
    briefing = materialized(result, "slack_briefing")["briefing"]
    for _, problem, _ in HOSTILE:
        assert problem in problems
    assert "Max Tickets 'inf'" in briefing          # the first warnings reach the briefing too
    tab = store.read_tab("Assignments")
    given = set(tab.loc[tab["Triage Run"] == key, "Assigned Agent"])
    assert given and not given & {email for email, _, _ in HOSTILE}
    amira = tab[(tab["Triage Run"] == key) & (tab["Assigned Agent"].str.contains("amira"))]
    assert len(amira) <= 12                            # her twin did not give her a second set of slots


# --- keys and local state -------------------------------------------------------------------------------

def test_a_hand_written_partition_tag_that_is_not_canonical_is_refused(demo_env) -> None:
    home, key = demo_env
    from ecm_pipeline.definitions import defs

    sloppy = key[:-1]                                  # 2026-11-29-14:0
    result = defs.resolve_job_def("ecm_triage").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False, tags={"dagster/partition": sloppy})
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert f"did you mean {key}" in failure.step_failure_data.user_failure_data.description
    assert LocalSheetStore(home / "sheet.sqlite").read_tab("Assignments")["Triage Run"].ne(sloppy).all()


def test_a_corrupt_outbox_record_is_quarantined_not_fatal(demo_env) -> None:
    home, key = demo_env
    outbox = home / "outbox"
    outbox.mkdir()
    (outbox / "0001-chat.postMessage-1.000001.json").write_text("")        # a disk-full leftover
    result = materialize(key, {}, dg.DagsterInstance.ephemeral())
    assert result.success
    assert (outbox / "quarantine" / "0001-chat.postMessage-1.000001.json").exists()
    _, posted = local_state(home, key)
    assert len(posted) == 1


def test_a_corrupt_sheet_names_the_file(demo_env, capsys) -> None:
    from ecm_pipeline.cli import main

    home, _ = demo_env
    (home / "sheet.sqlite").write_bytes(b"this is not a database" * 100)
    assert main(["triage"]) == 1
    err = capsys.readouterr().err
    assert f"{home / 'sheet.sqlite'} is not a readable sheet" in err and "Traceback" not in err


@pytest.mark.parametrize("damage", ["not a directory", "corrupt"])
def test_an_unusable_dagster_home_is_one_line_naming_it(demo_env, tmp_path: Path, monkeypatch, capsys,
                                                         damage: str) -> None:
    from ecm_pipeline.cli import main

    if damage == "not a directory":
        (tmp_path / "file").write_text("x")
        home = tmp_path / "file" / "dagster"
    else:
        home = tmp_path / "dagster-corrupt"
        (home / "history").mkdir(parents=True)
        (home / "history" / "runs.db").write_bytes(b"garbage" * 1000)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    assert main(["triage"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ecm triage: ") and str(home) in err and len(err.splitlines()) == 1


def test_os_problems_say_what_and_where() -> None:
    import errno

    from ecm_pipeline.osutil import os_problem

    assert os_problem(OSError(errno.ENOSPC, "No space left on device"), "/data/lake") == \
        "no space left on the device holding /data/lake"
    assert os_problem(OSError(errno.EROFS, "Read-only file system", "/mnt/x")) == "/mnt/x is on a read-only file system"

