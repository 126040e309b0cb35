"""Fair, capped, sticky assignment of qualified orders to the roster (SPEC §8)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ecm_pipeline.domain.tickets import (
    ASSIGNMENT_COLUMNS,
    Status,
    agent_loads,
    normalise_email,
    open_tickets,
    order_ids,
)
from ecm_pipeline.settings import AssignmentSettings

OVERFLOW_COLUMNS = ["order_id", "currency", "amount_aed", "priority", "stuck_reason"]


@dataclass(frozen=True)
class AssignmentPlan:
    new_rows: pd.DataFrame   # rows for the Assignments tab, in assignment order
    assigned: pd.DataFrame   # the assigned orders with `agent_key` and `agent_email`
    overflow: pd.DataFrame   # candidates nobody had room for
    agents: pd.DataFrame     # per pool agent: load before, room, assigned now, high value now
    monitored: int           # no_action orders: counted, never handed to people
    already_assigned: int


def assignment_queue(candidates: pd.DataFrame, high_value_aed: float) -> pd.DataFrame:
    """High value first by amount, then the rest by score; ties: older first, then order_id."""
    amount = candidates["amount_aed"].to_numpy(dtype=float)
    high = amount >= high_value_aed
    rank = -np.where(high, amount, candidates["score"].to_numpy(dtype=float))
    age = -candidates["hours_stuck"].to_numpy(dtype=float)
    # np.lexsort sorts by the last key first; order ids break the remaining ties.
    order = np.lexsort((candidates["order_id"].to_numpy(dtype=str), age, rank, ~high))
    return candidates.iloc[order].assign(high_value=high[order]).reset_index(drop=True)


def slot_sequence(room: np.ndarray) -> np.ndarray:
    """The pool index of every free slot in rotation order: one rotation across the pool starting
    with the first agent, skipping agents at capacity, i.e. cycle by cycle, agents in pool order.
    Built from the slots agents have, never from the backlog, so it costs O(free slots)."""
    room = np.clip(room.astype(int), 0, None)
    agent = np.repeat(np.arange(len(room)), room)
    cycle = np.arange(len(agent)) - np.repeat(np.cumsum(room) - room, room)
    return agent[np.lexsort((agent, cycle))]


def _rotate_by_team(teams: np.ndarray, order_teams: np.ndarray, room: np.ndarray) -> np.ndarray:
    """team_first: the rotation prefers an agent of the order's team with room, else anyone with room.
    Bounded by the free slots: each step fills one."""
    agent_for = np.full(len(order_teams), -1)
    pointer, n = 0, len(room)
    for i in range(min(len(order_teams), int(room.sum()))):
        free = room > 0
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

    no_action = scored["no_action"].astype(bool)
    monitored = no_action & ~scored["already_assigned"]
    queue = assignment_queue(scored[~scored["already_assigned"] & ~no_action], settings.high_value_aed)
    if settings.mode == "team_first":
        agent_for = _rotate_by_team(pool["team"].to_numpy(), queue["team"].to_numpy(), room.copy())
    else:
        slots = slot_sequence(room)
        agent_for = np.full(len(queue), -1)
        taken_count = min(len(queue), len(slots))
        agent_for[:taken_count] = slots[:taken_count]

    taken = agent_for >= 0
    assigned = queue[taken].copy()
    assigned["agent_key"] = pool["key"].to_numpy()[agent_for[taken]]
    assigned["agent_email"] = pool["email"].to_numpy()[agent_for[taken]]
    given = np.bincount(agent_for[taken], minlength=len(pool))
    hv_given = np.bincount(agent_for[taken & queue["high_value"].to_numpy()], minlength=len(pool))
    pool["assigned_now"] = given
    pool["high_value_now"] = hv_given
    # "Had room" for the high-value spread: still had a free slot once the high-value list was done.
    pool["room_after_high_value"] = pool["room_before"] - hv_given

    new_rows = pd.DataFrame({
        "Order ID": assigned["order_id"],
        "Assigned Agent": assigned["agent_email"],
        "Assigned At": assigned_at,
        "Status": Status.OPEN.value,
        "Priority": assigned["priority"],
        "Currency": assigned["currency"],
        "Amount": assigned["send_amount"].map("{:.2f}".format),
        "Hours Stuck": assigned["hours_stuck"].map("{:.1f}".format),
        "Diagnosis": assigned["stuck_reason"],
        "Notes": assigned["action"],
        "Triage Run": triage_run,
    }, columns=list(ASSIGNMENT_COLUMNS)).reset_index(drop=True)
    return AssignmentPlan(
        new_rows=new_rows,
        assigned=assigned.reset_index(drop=True),
        overflow=queue.loc[~taken, OVERFLOW_COLUMNS],
        agents=pool,
        monitored=int(monitored.sum()),
        already_assigned=int(scored["already_assigned"].sum()),
    )


def triage_outcome(scored: pd.DataFrame, tab: pd.DataFrame, key: str, high_value_aed: float) -> pd.DataFrame:
    """One row per actionable order: what the tick did with it — `assigned` (a ticket of this tick,
    whichever run of the tick wrote it), `already_assigned` (open from an earlier tick or by hand),
    `monitor_only`, `overflow` — and who has it. It depends only on the Sheet, not on which run
    appended, so every run of a tick writes the same outcome."""
    held = open_tickets(tab)
    owner = held.assign(**{"Order ID": order_ids(held)}).drop_duplicates("Order ID", keep="first").set_index("Order ID")
    out = scored.copy()
    out["high_value"] = out["amount_aed"] >= high_value_aed
    out["agent_email"] = out["order_id"].map(owner["Assigned Agent"]).astype(object)
    out["agent_key"] = out["agent_email"].map(lambda e: normalise_email(e) if isinstance(e, str) else None)
    has_ticket = out["order_id"].isin(owner.index)
    this_tick = out["order_id"].map(owner["Triage Run"]).astype(str).str.strip().eq(key)
    out["assignment"] = "overflow"
    out.loc[out["no_action"].astype(bool), "assignment"] = "monitor_only"
    out.loc[has_ticket, "assignment"] = "already_assigned"
    out.loc[has_ticket & this_tick, "assignment"] = "assigned"
    return out
