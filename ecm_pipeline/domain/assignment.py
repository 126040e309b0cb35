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
QUEUE_COLUMNS = ["amount_aed", "score", "hours_stuck", "order_id"]   # all that queue_order reads


@dataclass(frozen=True)
class AssignmentPlan:
    new_rows: pd.DataFrame   # rows for the Assignments tab, in assignment order
    assigned: pd.DataFrame   # the assigned orders with `agent_key` and `agent_email`
    overflow: pd.DataFrame   # candidates nobody had room for
    agents: pd.DataFrame     # per pool agent: load before, room, assigned now, high value now
    monitored: int           # no_action orders: counted, never handed to people
    already_assigned: int


def queue_order(candidates: pd.DataFrame, high_value_aed: float) -> tuple[np.ndarray, np.ndarray]:
    """The candidates' positions in queue order — high value first by amount, then the rest by
    score; ties: older first, then order_id — and whether each, in that order, is high value.
    Sorted on number arrays only: the rows themselves are taken for the few the slots reach."""
    amount = candidates["amount_aed"].to_numpy(dtype=float)
    high = amount >= high_value_aed
    rank = -np.where(high, amount, candidates["score"].to_numpy(dtype=float))
    age = -candidates["hours_stuck"].to_numpy(dtype=float)
    ids = np.empty(len(candidates), dtype=np.int64)   # order ids as their rank (one sort, not a hash table)
    ids[candidates["order_id"].array.argsort()] = np.arange(len(candidates))
    # np.lexsort sorts by the last key first; order ids break the remaining ties.
    order = np.lexsort((ids, age, rank, ~high))
    return order, high[order]


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
    already = scored["already_assigned"].astype(bool)
    monitored = no_action & ~already
    # The candidates' positions, and only the columns the queue sorts on: a large backlog's rows
    # are taken for the few orders the slots reach and the overflow's few columns, never all of it.
    positions = np.flatnonzero((~already & ~no_action).to_numpy())
    order, high = queue_order(scored[QUEUE_COLUMNS].iloc[positions], settings.high_value_aed)
    order = positions[order]   # queue order, as positions in `scored`
    reach = min(len(order), int(room.sum()))   # no order past the free slots can be given out
    if settings.mode == "team_first":
        teams = scored["team"].to_numpy()[order[:reach]]
        agent_for = _rotate_by_team(pool["team"].to_numpy(), teams, room.copy())
    else:
        agent_for = slot_sequence(room)[:reach]
    # Both rotations fill every one of the first `reach` orders: those are assigned, the rest overflow.
    assigned = scored.iloc[order[:reach]].assign(high_value=high[:reach])
    assigned["agent_key"] = pool["key"].to_numpy()[agent_for]
    assigned["agent_email"] = pool["email"].to_numpy()[agent_for]
    given = np.bincount(agent_for, minlength=len(pool))
    hv_given = np.bincount(agent_for[high[:reach]], minlength=len(pool))
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
        overflow=scored[OVERFLOW_COLUMNS].iloc[order[reach:]].reset_index(drop=True),
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
    # From the Sheet too, not from the scored flag: the run that appended saw these orders unheld and
    # a racing run of the same tick sees them held, and both must write the same file (one version,
    # whose gate verdict both briefings can find).
    out["already_assigned"] = out["assignment"].eq("already_assigned")
    return out
