"""The Dagster instance as `ecm` uses it: `$DAGSTER_HOME` (default `$ECM_HOME/dagster`, seeded with
the package's dagster.yaml), runs tagged with their tick and trigger, and the clean-up of runs a
killed `ecm` left behind (their process is gone, so they would hold the queue and the Sheet's pool
for ever: run monitoring only watches runs the daemon launched)."""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from ecm_pipeline.osutil import os_problem, pid_alive
from ecm_pipeline.run_context import TICK_TAG, TRIGGER_TAG
from ecm_pipeline.settings import PACKAGE, ecm_home

HOST_TAG, PID_TAG = "ecm/host", "ecm/pid"
ALIVE = (dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.NOT_STARTED,
         dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.CANCELING)


class InstanceError(Exception):
    """The Dagster instance in DAGSTER_HOME cannot be used; the message names the path."""


def dagster_home() -> Path:
    """$DAGSTER_HOME, default $ECM_HOME/dagster, with the project's dagster.yaml in it."""
    home = Path(os.environ.get("DAGSTER_HOME") or ecm_home() / "dagster")
    os.environ["DAGSTER_HOME"] = str(home)
    target = home / "dagster.yaml"
    try:
        home.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            with (PACKAGE / "dagster.yaml").open("rb") as source, open(target, "wb") as out:
                shutil.copyfileobj(source, out)
    except OSError as exc:
        raise InstanceError(f"DAGSTER_HOME: {os_problem(exc, target)}") from None
    return home


@contextmanager
def open_instance() -> Iterator[dg.DagsterInstance]:
    """The instance, or one line naming DAGSTER_HOME when it cannot be opened (corrupt, read-only, full)."""
    home = dagster_home()
    try:
        # Two `ecm` processes starting at once on a new DAGSTER_HOME would both create the SQLite
        # schema and collide: the first one creates it while holding this lock.
        with open(home / ".ecm-open.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            instance = dg.DagsterInstance.get()
            instance.get_runs(limit=1)   # touches the run storage: a corrupt database fails here, not later
    except OSError as exc:
        raise InstanceError(f"the Dagster instance in {home} cannot be opened: {os_problem(exc)}") from None
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InstanceError(f"the Dagster instance in {home} cannot be opened ({type(exc).__name__}: "
                            f"{first[:200]}); fix or move that directory") from None
    with instance:
        yield instance


def run_tags(tick: str, trigger: str) -> dict[str, str]:
    return {TICK_TAG: tick, TRIGGER_TAG: trigger, HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def fail_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed the runs `ecm` started on this machine whose process is gone, and free the pool
    slots they held. Returns their ids."""
    host = socket.gethostname()
    dead = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=list(ALIVE), tags={HOST_TAG: host})):
        pid = run.tags.get(PID_TAG, "")
        if not pid.isdigit() or int(pid) == os.getpid() or pid_alive(int(pid)):
            continue
        instance.report_run_failed(run, f"the ecm process {pid} that ran it is gone (killed or crashed)")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        dead.append(run.run_id)
    return dead


def warnings_of(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """The warnings a run logged, one line each, as `ecm` prints them."""
    out = []
    for entry in instance.all_logs(run_id):
        if entry.level == 30 and entry.user_message and not entry.is_dagster_event:  # logging.WARNING
            out.append(entry.user_message.splitlines()[0])
    return out


def stderr(line: str) -> None:
    print(line, file=sys.stderr)
