"""Fair, capped, sticky assignment of qualified orders to the roster (SPEC §8)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ecm_pipeline.resources.sheet import ASSIGNMENT_COLUMNS
from ecm_pipeline.settings import AssignmentSettings

LOAD_STATES = ("OPEN", "IN_PROGRESS")
STICKY_STATES = ("OPEN", "IN_PROGRESS", "ESCALATED")


@dataclass(frozen=True)
class AssignmentPlan:
    new_rows: pd.DataFrame   # rows for the Assignments tab, in assignment order
    assigned: pd.DataFrame   # the assigned orders with `agent_key`
    overflow: pd.DataFrame   # candidates nobody had room for
    agents: pd.DataFrame     # per pool agent: load before, room, assigned now, high value now
    monitored: int           # no_action orders: counted, never handed to people
    already_assigned: int


def _status(tab: pd.DataFrame) -> pd.Series:
    return tab["Status"].astype(str).str.strip().str.upper()


def agent_loads(assignments: pd.DataFrame) -> pd.Series:
    """OPEN + IN_PROGRESS tickets per agent, keyed by lower-case e-mail."""
    mine = assignments.loc[_status(assignments).isin(LOAD_STATES), "Assigned Agent"]
    return mine.astype(str).str.strip().str.lower().value_counts()


def assignment_queue(candidates: pd.DataFrame, high_value_aed: float) -> pd.DataFrame:
    """High value first by amount, then the rest by score; ties: older first, then order_id."""
    high = candidates["amount_aed"].to_numpy(dtype=float) >= high_value_aed
    # Sort a narrow key frame and take the rows once: the candidates can be wide and many.
    keys = pd.DataFrame({
        "rest": ~high,
        "rank": -np.where(high, candidates["amount_aed"], candidates["score"]),
        "age": -candidates["hours_stuck"].to_numpy(dtype=float),
        "order_id": candidates["order_id"].to_numpy(),
    })
    order = keys.sort_values(["rest", "rank", "age", "order_id"], kind="stable").index
    return candidates.iloc[order].assign(high_value=high[order]).reset_index(drop=True)


def _rotate(queue: pd.DataFrame, pool: pd.DataFrame, room: np.ndarray, team_first: bool) -> np.ndarray:
    """One rotation across the pool, skipping agents at capacity. Returns pool index per order (-1:
    overflow). The loop is bounded by the total free capacity, not by the number of orders."""
    agent_for = np.full(len(queue), -1)
    teams = pool["team"].to_numpy()
    order_teams = queue["team"].to_numpy() if team_first else None
    pointer, n = 0, len(pool)
    for i in range(len(queue)):
        free = room > 0
        if not free.any():
            break
        if team_first:
            same_team = free & (teams == order_teams[i])
            free = same_team if same_team.any() else free
        j = next((pointer + k) % n for k in range(n) if free[(pointer + k) % n])
        agent_for[i] = j
        room[j] -= 1
        pointer = (j + 1) % n
    return agent_for


def plan_assignments(scored: pd.DataFrame, roster: pd.DataFrame, assignments: pd.DataFrame,
                     settings: AssignmentSettings, *, triage_run: str, assigned_at: str) -> AssignmentPlan:
    loads = agent_loads(assignments)
    pool = roster[roster["active"] & ~roster["excluded"]].copy()
    pool["load_before"] = pool["key"].map(loads).fillna(0).astype(int)
    pool = pool.sort_values(["load_before", "key"]).reset_index(drop=True)
    room = (pool["max_tickets"] - pool["load_before"]).clip(lower=0).to_numpy(dtype=int, copy=True)
    pool["room_before"] = room

    monitored = scored["no_action"].astype(bool) & ~scored["already_assigned"]
    candidates = scored[~scored["already_assigned"] & ~scored["no_action"].astype(bool)]
    queue = assignment_queue(candidates, settings.high_value_aed)
    agent_for = _rotate(queue, pool, room.copy(), settings.mode == "team_first")

    taken = agent_for >= 0
    assigned = queue[taken].copy()
    assigned["agent_key"] = pool["key"].to_numpy()[agent_for[taken]]
    assigned["agent_email"] = pool["email"].to_numpy()[agent_for[taken]]
    counts = assigned.groupby("agent_key").size()
    hv_counts = assigned[assigned["high_value"]].groupby("agent_key").size()
    pool["assigned_now"] = pool["key"].map(counts).fillna(0).astype(int)
    pool["high_value_now"] = pool["key"].map(hv_counts).fillna(0).astype(int)
    hv_given = np.bincount(agent_for[taken & queue["high_value"].to_numpy()], minlength=len(pool))
    # "Had room" for the high-value spread: still had a free slot once the high-value list was done.
    pool["room_after_high_value"] = pool["room_before"] - hv_given

    new_rows = pd.DataFrame({
        "Order ID": assigned["order_id"],
        "Assigned Agent": assigned["agent_email"],
        "Assigned At": assigned_at,
        "Status": "OPEN",
        "Priority": assigned["priority"],
        "Currency": assigned["currency"],
        "Amount": assigned["send_amount"].map("{:.2f}".format),
        "Hours Stuck": assigned["hours_stuck"].map("{:.1f}".format),
        "Diagnosis": assigned["stuck_reason"],
        "Notes": assigned["action"],
        "Triage Run": triage_run,
    }, columns=ASSIGNMENT_COLUMNS).reset_index(drop=True)
    return AssignmentPlan(
        new_rows=new_rows,
        assigned=assigned.reset_index(drop=True),
        overflow=queue.loc[~taken, ["order_id", "currency", "amount_aed", "priority", "stuck_reason"]],
        agents=pool,
        monitored=int(monitored.sum()),
        already_assigned=int(scored["already_assigned"].sum()),
    )
