"""What the ops agent's commands do (SPEC §8, §11): read their queue, diagnose one order with the
pipeline's own query and rules, and move a ticket through its lifecycle. No Dagster run, no Great
Expectations: the Sheet, the warehouse and the domain functions only.

A lifecycle step is a compare-and-set under the Assignments tab's lock (the one the triage's
assignment and self-heal take): read the ticket, check the step is allowed, append its ledger row
(Resolutions or Escalations, once per ticket), change the Status only if the row still holds what
was read, then append the audit record. Two agents acting at once are serialised by the lock; the
second finds the ticket already moved and is refused. On Google Sheets a hand edit can still land
between the check and the write (one API round trip): `update_row` reads the row back and reports
the lost race."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd

from ecm_pipeline.archive import archived
from ecm_pipeline.domain.classification import attach_catalogue, classify
from ecm_pipeline.domain.field import (
    FieldError,
    agent_queue,
    audit_row,
    escalation_row,
    refusal,
    ticket_of,
    today_stats,
)
from ecm_pipeline.domain.progress import AGENT_RESOLVED, COMPLETED, resolution_rows, ticket_sla
from ecm_pipeline.domain.qualification import flag_already_assigned, qualify
from ecm_pipeline.domain.roster import parse_roster
from ecm_pipeline.domain.scoring import FACTORS, score
from ecm_pipeline.domain.tickets import ASSIGNED_AT_FORMAT, OPEN_STATES, Status, normalise_email, order_ids, statuses
from ecm_pipeline.partitions import TIMEZONE
from ecm_pipeline.resources.lake import LakeResource
from ecm_pipeline.resources.sheet import AssignmentStore
from ecm_pipeline.settings import load_catalogue, load_runbooks, load_settings
from ecm_pipeline.snapshot import order_states, take_snapshots

AGENT_VARIABLE = "ECM_AGENT"
TICKET_COLUMNS = ("Order ID", "Status", "Triage Run")   # what a refusal says about an archived ticket
SYSTEM_FIELDS = {
    "GOMS": ["status", "sub_state", "created_at", "updated_at", "hours_stuck", "category"],
    "payment": ["payment_status", "has_completed_payment", "payment_attempts", "checkout_status"],
    "Falcon": ["falcon_status", "ftv_transaction_id"],
    "Lulu": ["lulu_status", "lulu_main_status", "lulu_client"],
    "payout": ["payout_status", "payout_partner", "partner_class"],
    "RFI": ["rfi_status", "rfi_type", "rfi_created_at", "rfi_modified_at"],
    "TRM": ["has_trm", "trm_seconds"],
    "RDA": ["rda_status"],
    "manual payment": ["manual_payment_status"],
}


def now_stamp() -> tuple[datetime, str]:
    now = datetime.now(UTC)
    return now, now.astimezone(TIMEZONE).strftime(ASSIGNED_AT_FORMAT)


def agent_of(store: AssignmentStore, given: str | None) -> tuple[str, str]:
    """(key, e-mail as the roster writes it) of the agent acting: `--agent`, else $ECM_AGENT; the
    roster must know them."""
    email = (given or os.environ.get(AGENT_VARIABLE, "")).strip()
    if not email:
        raise ValueError(f"who are you? pass --agent EMAIL or set {AGENT_VARIABLE}")
    roster, _ = parse_roster(store.read_tab("Agents"), load_settings().assignment)
    match = roster[roster["key"] == normalise_email(email)]
    if match.empty:
        raise FieldError(f"{email} is not in the Agents tab: ask your manager to add you")
    return str(match["key"].iloc[0]), str(match["email"].iloc[0])


# --- the queue ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Queue:
    agent: str
    tickets: pd.DataFrame
    stats: dict
    warning: str = ""


def queue(store: AssignmentStore, warehouse, agent: str | None) -> Queue:
    key, email = agent_of(store, agent)
    settings = load_settings()
    tabs = store.read_tabs(["Assignments", "Resolutions"])
    tab = tabs["Assignments"]
    now, stamp = now_stamp()
    catalogue = load_catalogue()
    sla = ticket_sla(tab, catalogue, pd.Timestamp(now.replace(tzinfo=None)), settings.progress)
    mine = tab[tab["Assigned Agent"].map(normalise_email) == key]
    mine_open = sorted(set(order_ids(mine[statuses(mine).isin(OPEN_STATES)])))
    warning, completed = "", set()
    try:   # which of them completed since: a hint, not a reason to hide the queue
        states = order_states(warehouse, mine_open, now.replace(tzinfo=None))
        completed = set(states.loc[states["status"].astype(str).str.upper() == COMPLETED, "order_id"].astype(str))
    except Exception as exc:   # noqa: BLE001 — any warehouse failure leaves the queue readable
        warning = f"could not ask the warehouse which orders completed: {str(exc).splitlines()[0] if str(exc) else exc}"
    tickets = agent_queue(tab, sla, key, catalogue, completed)
    return Queue(email, tickets, today_stats(tabs["Resolutions"], key, stamp[:10]).as_dict(), warning)


# --- one order -------------------------------------------------------------------------------------

def diagnose(warehouse, tab: pd.DataFrame, ids: list[str], as_of: datetime) -> dict[str, dict]:
    """For each order id: what the pipeline makes of it at `as_of` (naive UTC) — the same query
    (restricted to these orders by a bound parameter) and the same classification, qualification
    and scoring. `verdict`: stuck, disqualified, excluded, not_stuck or unknown."""
    settings = load_settings()
    catalogue = load_catalogue()
    runbooks = load_runbooks()
    snap = take_snapshots(warehouse, [as_of], settings, order_ids=ids)[as_of]
    out: dict[str, dict] = {}
    if len(snap.candidates):
        classified = attach_catalogue(classify(snap.candidates))
        qualified, disqualified = qualify(classified, settings.qualification)
        qualified = flag_already_assigned(qualified, tab, pd.Timestamp(as_of))
        scored = score(qualified, pd.Series(pd.Timestamp(as_of), index=qualified.index), settings.scoring)
        for row in scored.to_dict("records"):
            reason = catalogue.reasons[row["stuck_reason"]]
            out[row["order_id"]] = {
                "verdict": "stuck", **_systems(row), "stuck_reason": row["stuck_reason"], "rule_id": row["rule_id"],
                "score": float(row["score"]), "priority": row["priority"],
                "factors": {f: round(float(row[f"factor_{f}"]), 4) for f in FACTORS},
                "sla_hours": reason.sla_hours, "team": reason.team, "monitor_only": reason.no_action,
                "already_assigned": bool(row["already_assigned"]), "action": reason.action,
                "runbook": reason.runbook, "steps": list(runbooks[reason.runbook].steps),
                "escalation": reason.escalation, "escalate_when": runbooks[reason.runbook].escalate_when,
                "amount_aed": float(row["amount_aed"]), "currency": row["currency"],
                "send_amount": float(row["send_amount"]) if pd.notna(row["send_amount"]) else None,
            }
        for row in disqualified.to_dict("records"):
            out[row["order_id"]] = {"verdict": "disqualified", **_systems(row), "stuck_reason": row["stuck_reason"],
                                    "rule_id": row["rule_id"], "disqualification_code": row["disqualification_code"],
                                    "disqualification_reason": row["disqualification_reason"]}
    for row in snap.excluded.to_dict("records"):
        out.setdefault(row["order_id"], {"verdict": "excluded", "exclusion": row["exclusion"],
                                         "status": row["status"], "sub_state": row["sub_state"],
                                         "currency": row["currency"]})
    rest = [i for i in ids if i not in out]
    states = order_states(warehouse, rest, as_of).set_index("order_id") if rest else pd.DataFrame()
    for order_id in rest:
        if order_id in states.index:
            state = states.loc[order_id]
            out[order_id] = {"verdict": "not_stuck", "status": state["status"], "sub_state": state["sub_state"]}
        else:
            out[order_id] = {"verdict": "unknown"}
    return {i: {"order_id": i, "as_of_utc": as_of.isoformat(), **out[i]} for i in ids}


def _systems(row: dict) -> dict:
    def plain(value: object) -> object:
        if value is None or (not isinstance(value, str | bool) and pd.isna(value)):
            return None
        if isinstance(value, pd.Timestamp):
            return value.isoformat()
        return value.item() if hasattr(value, "item") else value

    return {"systems": {system: {f: plain(row.get(f)) for f in fields} for system, fields in SYSTEM_FIELDS.items()}}


# --- the lifecycle ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Done:
    order_id: str
    triage_run: str
    before: str
    after: str
    ledger: str        # the tab a row was appended to, or ''


def act(store: AssignmentStore, warehouse, lake: LakeResource, agent: str | None, order_id: str, target: Status,
        note: str, *, force: bool = False, diagnosis: str = "", runbook: str = "") -> Done:
    """Move the order's open ticket to `target` (SPEC §8) as the agent, recording it; a one-line
    FieldError when the step is not allowed or someone else got there first. An order with no row
    in the tab is looked up in the lake's archive, to say its ticket was closed and archived."""
    key, email = agent_of(store, agent)
    settings = load_settings()
    with store.lock("Assignments", owner=f"ecm {target.value.lower()} by {email}",
                    timeout_seconds=settings.sheet.lock_timeout_seconds):
        ledger = {Status.RESOLVED: "Resolutions", Status.ESCALATED: "Escalations"}.get(target, "")
        tabs = store.read_tabs(["Assignments", *([ledger] if ledger else [])])
        tab = tabs["Assignments"]
        gone = not (order_ids(tab) == order_id).any()
        ticket = ticket_of(tab, order_id, archived(lake, list(TICKET_COLUMNS)) if gone else None)
        why = refusal(ticket, target, key, force)
        if why:
            raise FieldError(why)
        now, stamp = now_stamp()
        if target == Status.RESOLVED:
            rows = resolution_rows(ticket.to_frame().T, pd.Timestamp(now.replace(tzinfo=None)), stamp, note,
                                   AGENT_RESOLVED, load_catalogue())
            rows[["Diagnosis Match", "Action Followed"]] = [diagnosis, runbook]
            store.append_once(ledger, rows, tabs[ledger])
        elif target == Status.ESCALATED:
            status = _order_status(warehouse, order_id, now)
            store.append_rows(ledger, escalation_row(ticket, email, note, stamp, status))
        expect = {c: str(ticket[c]) for c in ("Order ID", "Triage Run", "Status", "Assigned Agent")}
        if not store.update_row("Assignments", int(ticket["_row"]), expect, {"Status": target.value}):
            raise FieldError(f"order {order_id}'s ticket changed in the Sheet while you acted: run `ecm tickets` "
                             f"and try again{f' (check the {ledger} tab for a row of this attempt)' if ledger else ''}")
        store.append_rows("Audit Log", audit_row(ticket, email, target, note, stamp))
    return Done(order_id, str(ticket["Triage Run"]), str(ticket["Status"]).strip().upper(), target.value, ledger)


def _order_status(warehouse, order_id: str, now: datetime) -> str:
    """The order's GOMS status for the Escalations row; blank when the warehouse cannot say."""
    try:
        states = order_states(warehouse, [order_id], now.replace(tzinfo=None))
    except Exception:   # noqa: BLE001 — an escalation must not wait for the warehouse
        return ""
    return str(states["status"].iloc[0]) if len(states) else ""
