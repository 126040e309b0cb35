"""The ops agent's working loop (SPEC §8, §11): their queue, today's figures, which ticket an order
id names and whether a lifecycle step is allowed. Pure: frames in, frames and verdicts out; the
`ecm` field commands (`field.py`) read and write the Sheet around it."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ecm_pipeline.domain.tickets import (
    ESCALATION_COLUMNS,
    OPEN_STATES,
    Status,
    can_transition,
    normalise_email,
    order_ids,
    statuses,
)
from ecm_pipeline.settings import Catalogue

ORDER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
PRIORITY_ORDER = {"P1": 0, "P2": 1, "P3": 2, "P4": 3}
QUEUE_COLUMNS = ["order_id", "priority", "status", "amount", "currency", "hours_open", "stuck_reason", "sla_band",
                 "sla_hours_left", "next_action", "triage_run", "completed"]


class FieldError(Exception):
    """A lifecycle step that is not allowed, or a ticket that is not there; the message is one line."""


def checked_order_id(value: str) -> str:
    """An order id as typed, refused in one line when it cannot be one (quotes, SQL, spaces)."""
    text = value.strip()
    if not ORDER_ID.match(text):
        raise ValueError(f"{value!r} is not an order id (letters, digits, '-' and '_', like AE1PSW7CI700)")
    return text


def agent_queue(tab: pd.DataFrame, sla: pd.DataFrame, agent_key: str, catalogue: Catalogue,
                completed: set[str]) -> pd.DataFrame:
    """The agent's open tickets (open, in progress, escalated): P1 first, then breached, then the
    least SLA left; each with its next action from the catalogue, and `completed` when its order
    has completed since it was assigned (resolve it)."""
    mine = tab[statuses(tab).isin(OPEN_STATES) & (tab["Assigned Agent"].map(normalise_email) == agent_key)]
    by_ticket = sla.drop_duplicates(["order_id", "triage_run"]).set_index(["order_id", "triage_run"])
    keys = list(zip(order_ids(mine), mine["Triage Run"].astype(str).str.strip(), strict=True))
    found = by_ticket.reindex(keys)
    reasons = mine["Diagnosis"].astype(str).str.strip()
    queue = pd.DataFrame({
        "order_id": order_ids(mine).to_numpy(),
        "priority": mine["Priority"].astype(str).str.strip().to_numpy(),
        "status": statuses(mine).to_numpy(),
        "amount": pd.to_numeric(mine["Amount"], errors="coerce").to_numpy(),
        "currency": mine["Currency"].astype(str).to_numpy(),
        "hours_open": found["hours_open"].to_numpy(),
        "stuck_reason": reasons.to_numpy(),
        "sla_band": found["sla_band"].fillna("UNKNOWN").to_numpy(),
        "sla_hours_left": (found["sla_hours"] - found["hours_open"]).round(1).to_numpy(),
        "next_action": reasons.map({n: r.action for n, r in catalogue.reasons.items()}).fillna("").to_numpy(),
        "triage_run": mine["Triage Run"].astype(str).str.strip().to_numpy(),
    }, columns=QUEUE_COLUMNS[:-1])
    queue["completed"] = queue["order_id"].isin(completed)
    order = pd.DataFrame({"p": queue["priority"].map(PRIORITY_ORDER).fillna(9), "b": queue["sla_band"] != "BREACHED",
                          "left": queue["sla_hours_left"].fillna(np.inf)})
    return queue.loc[order.sort_values(["p", "b", "left"], kind="stable").index].reset_index(drop=True)


@dataclass(frozen=True)
class DayStats:
    resolved: int
    average_minutes: float | None
    sla_met_share: float | None

    def as_dict(self) -> dict:
        return {"resolved_today": self.resolved, "average_resolution_minutes": self.average_minutes,
                "sla_met_share": self.sla_met_share}


def today_stats(resolutions: pd.DataFrame, agent_key: str, today: str) -> DayStats:
    """The agent's resolutions whose Timestamp falls on `today` (YYYY-MM-DD, local): how many, the
    average resolution time and the share that met the SLA (of those with a verdict)."""
    mine = resolutions[(resolutions["Agent"].map(normalise_email) == agent_key)
                       & resolutions["Timestamp"].astype(str).str.startswith(today)]
    minutes = pd.to_numeric(mine["Resolution Minutes"], errors="coerce").dropna()
    verdicts = mine["SLA Status"].astype(str).str.upper()
    judged = verdicts.isin(["MET", "MISSED"])
    return DayStats(len(mine), round(float(minutes.mean()), 1) if len(minutes) else None,
                    round(float((verdicts[judged] == "MET").mean()), 4) if judged.any() else None)


def ticket_of(tab: pd.DataFrame, order_id: str, archived: pd.DataFrame | None = None) -> pd.Series:
    """The order's open ticket; a one-line FieldError when it has none (or is open twice).
    `archived`: the archive's tickets, to say so when the order's ticket was closed and archived."""
    rows = tab[order_ids(tab) == order_id]
    past = archived[order_ids(archived) == order_id] if archived is not None and rows.empty else None
    if past is not None and len(past):
        raise FieldError(f"the ticket for order {order_id} is already {statuses(past).iloc[-1]} (triage run "
                         f"{past['Triage Run'].iloc[-1]}) and archived: nothing to do")
    if rows.empty:
        raise FieldError(f"no ticket for order {order_id} in the Assignments tab")
    open_rows = rows[statuses(rows).isin(OPEN_STATES)]
    if len(open_rows) > 1:
        raise FieldError(f"order {order_id} is open {len(open_rows)} times in the Assignments tab (rows "
                         f"{', '.join(str(r) for r in open_rows['_row'])}): fix the Sheet first")
    if open_rows.empty:
        last = rows.iloc[-1]
        raise FieldError(f"the ticket for order {order_id} is already {statuses(rows).iloc[-1]} "
                         f"(triage run {last['Triage Run']}): nothing to do")
    return open_rows.iloc[0]


def refusal(ticket: pd.Series, target: Status, agent_key: str, force: bool) -> str | None:
    """Why `agent_key` may not move this ticket to `target`, or None when they may."""
    current = str(ticket["Status"]).strip().upper()
    if not can_transition(current, target):
        return f"order {ticket['Order ID']} is {current}: it cannot become {target.value}"
    owner = normalise_email(ticket["Assigned Agent"])
    if owner != agent_key and not force:
        return (f"order {ticket['Order ID']} is {ticket['Assigned Agent']}'s ticket, not yours: add --force to act "
                "on it anyway")
    return None


def escalation_row(ticket: pd.Series, by: str, reason: str, stamp: str, order_status: str) -> pd.DataFrame:
    return pd.DataFrame([{
        "Timestamp": stamp, "Order ID": ticket["Order ID"], "Escalated By": by, "Reason": reason,
        "Order Status": order_status, "Stuck Hours": ticket["Hours Stuck"], "Amount": ticket["Amount"],
        "Currency": ticket["Currency"], "Priority": ticket["Priority"], "Assigned To": ticket["Assigned Agent"],
        "Resolved At": "", "Resolution Notes": "", "Triage Run": ticket["Triage Run"],
    }], columns=list(ESCALATION_COLUMNS))


def audit_row(ticket: pd.Series, actor: str, target: Status, note: str, stamp: str) -> pd.DataFrame:
    return pd.DataFrame([{"Timestamp": stamp, "Order ID": ticket["Order ID"], "Triage Run": ticket["Triage Run"],
                          "Actor": actor, "From": str(ticket["Status"]).strip().upper(), "To": target.value,
                          "Note": note}])
