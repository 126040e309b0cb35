"""Which tickets have reached their agent in Slack (issue: exactly once). A ticket is one order in
one triage run; each briefing announces its own tick's tickets and every earlier ticket of the
pipeline that is still open and was never announced (say Slack was down at its tick), and records
them in a ledger per tick. The ledger is written as `pending` before posting and `announced` after,
so a crash in between is resolved from Slack itself rather than guessed."""

from __future__ import annotations

import pandas as pd

from ecm_pipeline.domain.tickets import is_pipeline_ticket, normalise_email, open_tickets, order_ids

LEDGER_COLUMNS = ["order_id", "triage_run", "agent_key", "status"]
PENDING, ANNOUNCED = "pending", "announced"


def empty_ledger() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in LEDGER_COLUMNS})


def ticket_keys(frame: pd.DataFrame, order: str = "order_id", run: str = "triage_run") -> pd.Series:
    return frame[order].astype(str).str.strip() + "@" + frame[run].astype(str).str.strip()


def carried_over(tab: pd.DataFrame, announced: pd.DataFrame, key: str) -> pd.DataFrame:
    """Open tickets the pipeline wrote at earlier ticks that no briefing has announced, as rows for
    the briefing: order_id, triage_run, agent_key, agent_email, send_amount, currency, hours_stuck,
    stuck_reason, priority."""
    mine = open_tickets(tab[is_pipeline_ticket(tab)])
    runs = mine["Triage Run"].astype(str).str.strip()
    earlier = mine[runs < key]
    frame = pd.DataFrame({
        "order_id": order_ids(earlier).to_numpy(),
        "triage_run": earlier["Triage Run"].astype(str).str.strip().to_numpy(),
        "agent_email": earlier["Assigned Agent"].astype(str).str.strip().to_numpy(),
        "agent_key": earlier["Assigned Agent"].map(normalise_email).to_numpy(),
        "send_amount": pd.to_numeric(earlier["Amount"], errors="coerce").to_numpy(),
        "currency": earlier["Currency"].astype(str).to_numpy(),
        "hours_stuck": pd.to_numeric(earlier["Hours Stuck"], errors="coerce").to_numpy(),
        "stuck_reason": earlier["Diagnosis"].astype(str).to_numpy(),
        "priority": earlier["Priority"].astype(str).to_numpy(),
    })
    done = set(ticket_keys(announced[announced["status"] == ANNOUNCED])) if len(announced) else set()
    return frame[~ticket_keys(frame).isin(done)].reset_index(drop=True)


def ledger(tickets: pd.DataFrame, status: str) -> pd.DataFrame:
    """The ledger rows for tickets (order_id, triage_run, agent_key)."""
    out = tickets[["order_id", "triage_run", "agent_key"]].astype(str).copy()
    out["status"] = status
    return out.drop_duplicates(["order_id", "triage_run"]).reset_index(drop=True)
