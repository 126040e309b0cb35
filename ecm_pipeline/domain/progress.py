"""Ticket progress at a tick (SPEC §9–10): how far each open ticket is into its SLA, and which
agents are nearly full. SLA runs from Assigned At with the catalogue's hours for the ticket's stuck
reason (its Diagnosis); bands BREACHED (past the SLA), CRITICAL (> 75 %), WARNING (> 50 %), OK.
Pure: frames in, frames and messages out."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ecm_pipeline.domain.briefing import MAIN_LIMIT, Message, escape, sections
from ecm_pipeline.domain.tickets import (
    RESOLUTION_COLUMNS,
    Status,
    agent_loads,
    assigned_at_utc,
    normalise_email,
    open_tickets,
    order_ids,
    tickets_open_at,
)
from ecm_pipeline.settings import Catalogue, ProgressSettings

BANDS = ("BREACHED", "CRITICAL", "WARNING", "OK", "UNKNOWN")
SLA_COLUMNS = ["order_id", "agent", "status", "stuck_reason", "triage_run", "assigned_at", "hours_open",
               "sla_hours", "sla_share", "sla_band"]
CAPACITY_COLUMNS = ["agent", "name", "load", "max_tickets", "share"]
SLA_BREACH_KEY, CAPACITY_KEY = "sla_breach", "capacity_warning"
SELF_HEALED, AGENT_RESOLVED = "SELF_HEALED", "AGENT_RESOLVED"
COMPLETED = "COMPLETED"   # the GOMS status of an order that got where it was going


def sla_band(share: pd.Series | np.ndarray, settings: ProgressSettings) -> np.ndarray:
    """The band of each share of the SLA used (hours open / SLA hours); UNKNOWN where it is not known."""
    s = np.asarray(share, dtype=float)
    return np.select([np.isnan(s), s > 1.0, s > settings.critical_share, s > settings.warning_share],
                     ["UNKNOWN", "BREACHED", "CRITICAL", "WARNING"], default="OK")


def ticket_sla(tab: pd.DataFrame, catalogue: Catalogue, tick: pd.Timestamp, settings: ProgressSettings) -> pd.DataFrame:
    """Every ticket open at `tick` (naive UTC) with its SLA: hours open, the reason's SLA hours, the
    share used and the band. A ticket whose Assigned At is not a time or whose Diagnosis is not a
    catalogued reason (a row people typed) is UNKNOWN, never dropped. Longest overdue first."""
    open_now = tickets_open_at(tab, tick)
    assigned = assigned_at_utc(open_now)
    hours_open = ((tick - assigned).dt.total_seconds() / 3600).round(1)
    reasons = open_now["Diagnosis"].astype(str).str.strip()
    sla_hours = reasons.map({name: r.sla_hours for name, r in catalogue.reasons.items()}).astype(float)
    share = (hours_open / sla_hours).round(4)
    frame = pd.DataFrame({
        "order_id": open_now["Order ID"].astype(str).str.strip(),
        "agent": open_now["Assigned Agent"].astype(str).str.strip(),
        "status": open_now["Status"].astype(str).str.strip().str.upper(),
        "stuck_reason": reasons,
        "triage_run": open_now["Triage Run"].astype(str).str.strip(),
        "assigned_at": assigned,
        "hours_open": hours_open.astype(float),
        "sla_hours": sla_hours,
        "sla_share": share.astype(float),
        "sla_band": sla_band(share, settings),
    }, columns=SLA_COLUMNS)
    return frame.sort_values(["sla_share", "order_id"], ascending=[False, True], na_position="last",
                             kind="stable").reset_index(drop=True)


def band_counts(sla: pd.DataFrame) -> dict[str, int]:
    counts = sla["sla_band"].value_counts()
    return {band: int(counts.get(band, 0)) for band in BANDS}


def over_capacity(tab: pd.DataFrame, roster: pd.DataFrame, settings: ProgressSettings) -> pd.DataFrame:
    """Active roster agents whose open and in-progress tickets are above the warning share of their
    Max Tickets (81 % warns, 80 % does not), fullest first."""
    pool = roster[roster["active"] & ~roster["excluded"] & (roster["max_tickets"] > 0)]
    loads = agent_loads(tab)
    load = pool["key"].map(loads).fillna(0).astype(int)
    share = (load / pool["max_tickets"]).round(4)
    frame = pd.DataFrame({"agent": pool["email"], "name": pool["name"], "load": load,
                          "max_tickets": pool["max_tickets"].astype(int), "share": share}, columns=CAPACITY_COLUMNS)
    return (frame[frame["share"] > settings.capacity_warning_share]
            .sort_values(["share", "agent"], ascending=[False, True]).reset_index(drop=True))


def _agent_label(email: str, roster: pd.DataFrame) -> str:
    names = dict(zip(roster["key"], roster["name"], strict=True))
    return escape(names.get(normalise_email(email)) or email)


def _fit(lines: list[str]) -> str:
    """The lines that fit the main-message limit, saying how many were left out."""
    text = "\n".join(lines)
    while len(text) > MAIN_LIMIT and len(lines) > 2:
        lines = [*lines[:-2], lines[-1]] if lines[-1].startswith("…") else [*lines[:-1], "… more in the Sheet"]
        text = "\n".join(lines)
    return text


def sla_breach_alert(sla: pd.DataFrame, roster: pd.DataFrame, tick_label: str,
                     settings: ProgressSettings) -> Message | None:
    """The SLA breach alert when at least `breach_alert_min` open tickets are past their SLA: the
    longest overdue `breach_alert_top` with order, agent, hours open, SLA and reason. None otherwise."""
    breached = sla[sla["sla_band"] == "BREACHED"]
    if len(breached) < settings.breach_alert_min:
        return None
    lines = [f":hourglass: *ECM SLA breaches* — {tick_label}",
             f"*{len(breached)} open tickets are past their SLA* (the {min(len(breached), settings.breach_alert_top)} "
             "longest overdue):"]
    for row in breached.head(settings.breach_alert_top).itertuples():
        lines.append(f"• `{escape(row.order_id)}` — {_agent_label(row.agent, roster)} — {row.hours_open:.1f} h open, "
                     f"SLA {row.sla_hours:g} h — {escape(row.stuck_reason)}")
    text = _fit(lines)
    return Message(SLA_BREACH_KEY, text, sections(text))


def capacity_warning(full: pd.DataFrame, tick_label: str, settings: ProgressSettings) -> Message | None:
    """The capacity warning naming every agent above the warning share of Max Tickets; None when nobody is."""
    if full.empty:
        return None
    lines = [f":warning: *ECM Capacity* — {tick_label}",
             f"*{len(full)} agents above {settings.capacity_warning_share:.0%} of their Max Tickets:*"]
    for row in full.itertuples():
        lines.append(f"• {escape(row.name or row.agent)} — {row.load} of {row.max_tickets} ({row.share:.0%})")
    lines.append("Suggestion: move their oldest OPEN tickets to agents with room, or raise their Max Tickets.")
    text = _fit(lines)
    return Message(CAPACITY_KEY, text, sections(text))


def completed_tickets(tab: pd.DataFrame, states: pd.DataFrame) -> pd.DataFrame:
    """The open tickets (with `_row`) whose order is COMPLETED in `states` (order_id, status: the
    warehouse at the tick): nobody needs to work them any more."""
    completed = set(states.loc[states["status"].astype(str).str.upper() == COMPLETED, "order_id"].astype(str))
    mine = open_tickets(tab)
    return mine[order_ids(mine).isin(completed)]


def resolution_rows(tickets: pd.DataFrame, resolved_at: pd.Timestamp, stamp: str, notes: str,
                    resolution_type: str, catalogue: Catalogue) -> pd.DataFrame:
    """The Resolutions rows for these tickets (Assignments rows) resolved at `resolved_at` (naive
    UTC; `stamp` is how the Sheet shows it): minutes from Assigned At, the reason's SLA in minutes
    and MET / MISSED (blank where Assigned At or the reason is not known)."""
    minutes = ((resolved_at - assigned_at_utc(tickets)).dt.total_seconds() / 60).round()
    reasons = tickets["Diagnosis"].astype(str).str.strip()
    target = reasons.map({name: r.sla_hours * 60 for name, r in catalogue.reasons.items()}).astype(float)
    status = np.select([minutes.isna() | target.isna(), minutes <= target], ["", "MET"], default="MISSED")

    def whole(values: pd.Series) -> pd.Series:
        return values.map(lambda v: "" if pd.isna(v) else str(int(v)))

    frame = pd.DataFrame({
        "Timestamp": stamp, "Order ID": order_ids(tickets), "Agent": tickets["Assigned Agent"], "Notes": notes,
        "Assigned At": tickets["Assigned At"], "Resolution Minutes": whole(minutes),
        "SLA Target Minutes": whole(target), "SLA Status": status, "Stuck Reason": reasons,
        "Amount": tickets["Amount"], "Currency": tickets["Currency"], "Diagnosis Match": "", "Action Followed": "",
        "Resolution Type": resolution_type, "Triage Run": tickets["Triage Run"].astype(str).str.strip(),
    }, columns=list(RESOLUTION_COLUMNS))
    return frame.reset_index(drop=True)


RESOLVED = {"Status": Status.RESOLVED.value}
