"""Slack messages for a triage run (SPEC §9), rendered as mrkdwn with Block Kit sections.

Pure: takes the triage outcome and returns messages; posting is the Slack resource's job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from ecm_pipeline.domain import summary

MAIN_LIMIT = 2000      # main message characters
SECTION_LIMIT = 2900   # Block Kit section text is capped at 3000
MAX_BLOCKS = 50
_USER_ID = re.compile(r"^[UW][A-Z0-9]{6,}$")


@dataclass(frozen=True)
class Message:
    key: str                      # stable per (message, partition): how a re-run finds it again
    text: str                     # full mrkdwn text (also the notification fallback)
    blocks: list[dict] = field(default_factory=list)


def escape(text: object) -> str:
    """Slack control characters in data text: & < > (so `<!channel>` can never ping)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mention(handle: str, name: str) -> str:
    handle = handle.strip().lstrip("@")
    if _USER_ID.match(handle):
        return f"<@{handle}>"
    return escape(name) + (f" (@{escape(handle)})" if handle else "")


def sections(text: str) -> list[dict]:
    """Split text on line boundaries into section blocks under the Block Kit limits."""
    chunks, current = [], ""
    for line in text.split("\n"):
        while len(line) > SECTION_LIMIT:
            chunks.append(line[:SECTION_LIMIT])
            line = line[SECTION_LIMIT:]
        if len(current) + len(line) + 1 > SECTION_LIMIT:
            chunks.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line
    if current:
        chunks.append(current)
    return [{"type": "section", "text": {"type": "mrkdwn", "text": c, "verbatim": True}} for c in chunks]


def split_blocks(message: Message, limit: int = MAX_BLOCKS) -> list[Message]:
    """A message over Slack's block limit as several messages of at most `limit` blocks each (keys
    `key`, `key#2`, ...), so nothing is truncated. Each part's fallback text is its own blocks' text,
    which is already escaped."""
    if len(message.blocks) <= limit:
        return [message]
    parts = []
    for start in range(0, len(message.blocks), limit):
        blocks = message.blocks[start:start + limit]
        text = "\n".join(b["text"]["text"] for b in blocks if isinstance(b.get("text"), dict)) or message.text
        key = message.key if start == 0 else f"{message.key}#{start // limit + 1}"
        parts.append(Message(key, text, blocks))
    return parts


def thread_plan(messages: list[Message]) -> tuple[Message, list[Message]]:
    """The parent message and, in order, the thread replies: the parent's own overflow parts first,
    then every other message split to the block limit."""
    head, *rest = split_blocks(messages[0])
    return head, rest + [part for m in messages[1:] for part in split_blocks(m)]

def _money(amount: float) -> str:
    return f"{amount:,.0f}"


def _order_line(row: pd.Series) -> str:
    return (
        f"• `{escape(row['order_id'])}` {row['send_amount']:,.2f} {escape(row['currency'])} · "
        f"{row['hours_stuck']:.0f}h · {escape(row['stuck_reason'])} · {escape(row['priority'])}"
    )


# The assignment outcomes that are this tick's tickets.
THIS_TICK = ("assigned",)
THREAD_COLUMNS = ["order_id", "agent_key", "send_amount", "currency", "hours_stuck", "stuck_reason", "priority",
                  "high_value", "amount_aed", "triage_run"]


@dataclass(frozen=True)
class TriageFigures:
    """What the briefing says, computed once so the text, metadata and CLI agree."""

    tick: datetime                 # aware, in the schedule's timezone
    actionable: int
    high_value: int
    p1: int
    critical: int
    value_at_risk: dict[str, float]
    currency_counts: dict[str, int]
    disqualified: dict[str, int]
    monitored: int
    assigned_this_tick: int
    new_this_run: int
    already_with_agents: int
    overflow: int
    carried_over: int              # earlier tickets never announced, announced now
    per_agent: pd.DataFrame        # agent_key, name, slack_handle, email, orders, high_value
    high_value_aed: float
    warnings: tuple[str, ...] = ()  # roster rows set aside, duplicates people typed into the Sheet
    self_healed: int | None = None  # orders that left the backlog since the last tick with no ticket; None: unknown
    sla_breached: int = 0           # open tickets past their SLA at the tick


def thread_orders(outcome: pd.DataFrame, carried: pd.DataFrame, key: str) -> pd.DataFrame:
    """Every ticket this briefing announces, one row each: this tick's, then carried-over ones."""
    mine = outcome[outcome["assignment"].isin(THIS_TICK)].assign(triage_run=key).reindex(columns=THREAD_COLUMNS)
    earlier = carried.assign(amount_aed=float("nan"), high_value=False).reindex(columns=THREAD_COLUMNS)
    out = pd.concat([f for f in (mine, earlier) if len(f)] or [mine], ignore_index=True)
    out["high_value"] = out["high_value"].fillna(False).astype(bool)
    return out


def triage_figures(outcome: pd.DataFrame, disqualified: pd.DataFrame, roster: pd.DataFrame, tick: datetime,
                   key: str, high_value_aed: float, announced: pd.DataFrame, new_this_run: int,
                   warnings: tuple[str, ...] = ()) -> TriageFigures:
    """`announced` is `thread_orders(...)`: the tickets this briefing names, per agent;
    `new_this_run` the tickets this run appended (0 for a re-run of the tick)."""
    per_agent = (
        announced.groupby("agent_key")
        .agg(orders=("order_id", "size"), high_value=("high_value", "sum"))
        .reset_index()
        .merge(roster[["key", "name", "slack_handle", "email"]], left_on="agent_key", right_on="key", how="left")
        .sort_values(["orders", "agent_key"], ascending=[False, True])
    )
    per_agent["name"] = per_agent["name"].fillna(per_agent["agent_key"])
    per_agent["slack_handle"] = per_agent["slack_handle"].fillna("")
    mine = outcome[outcome["assignment"].isin(THIS_TICK)]
    return TriageFigures(
        tick=tick,
        actionable=len(outcome),
        high_value=int(outcome["high_value"].sum()),
        p1=int((outcome["priority"] == "P1").sum()),
        critical=int((outcome["category"] == "critical").sum()),
        value_at_risk=summary.value_at_risk(outcome),
        currency_counts=summary.counts(outcome, "currency"),
        disqualified={str(k): int(v) for k, v in disqualified["disqualification_code"].value_counts().items()},
        monitored=int((outcome["assignment"] == "monitor_only").sum()),
        assigned_this_tick=len(mine),
        new_this_run=new_this_run,
        already_with_agents=int((outcome["assignment"] == "already_assigned").sum()),
        overflow=int((outcome["assignment"] == "overflow").sum()),
        carried_over=int((announced["triage_run"] != key).sum()),
        per_agent=per_agent,
        high_value_aed=high_value_aed,
        warnings=tuple(warnings),
    )


def briefing_text(f: TriageFigures, sheet_url: str = "", critical_hours: float = 36) -> str:
    when = f.tick.strftime("%Y-%m-%d %H:%M")
    money = " · ".join(f"{cur} {_money(f.value_at_risk[cur])}" for cur in f.currency_counts)
    total = max(f.actionable, 1)
    mix = " · ".join(f"{cur} {n} ({n / total:.0%})" for cur, n in f.currency_counts.items())
    dq_total = sum(f.disqualified.values())
    dq_top = " · ".join(f"{code} {n}" for code, n in list(f.disqualified.items())[:4])
    lines = [
        f":dart: *ECM Triage* — {when} GST",
        f"*{f.actionable} actionable orders* · {f.assigned_this_tick} assigned this tick · "
        f"{f.already_with_agents} already with agents",
        f"• :moneybag: {f.high_value} high value (≥ {_money(f.high_value_aed)} AED) · :red_circle: {f.p1} P1 · "
        f"{f.critical} critical (> {critical_hours:g} h)",
        f"• Value at risk: {money or 'none'} ≈ {_money(f.value_at_risk.get('AED_equivalent', 0))} AED",
        f"• Currency mix: {mix or 'none'}",
        f"• Disqualified: {dq_total}" + (f" ({dq_top})" if dq_top else "") + f" · Monitoring only: {f.monitored}",
    ]
    progress = ([f"{f.self_healed} self-healed since the last tick"] if f.self_healed is not None else []) + (
        [f":hourglass: {f.sla_breached} open tickets past their SLA"] if f.sla_breached else [])
    if progress:
        lines.append("• " + " · ".join(progress))
    if f.overflow:
        lines.append(f"• :warning: Overflow: {f.overflow} orders unassigned — every active agent is at capacity")
    if f.carried_over:
        lines.append(f"• :inbox_tray: {f.carried_over} tickets from earlier ticks were never announced (Slack was "
                     "unreachable); they are in the threads below")
    if f.assigned_this_tick and f.new_this_run == 0:
        lines.append(f"• :repeat: Re-run of this tick: nothing new assigned; the {f.assigned_this_tick} "
                     "assignments below were made by the earlier run")
    for warning in f.warnings[:5]:
        lines.append(f"• :warning: {escape(warning)}")
    if len(f.warnings) > 5:
        lines.append(f"• :warning: … and {len(f.warnings) - 5} more warnings (see the run in Dagster)")
    if len(f.per_agent):
        lines.append("*Assignments this tick* (details in the thread)")
        agent_lines = [
            f"👤 *{escape(r['name'])}* — {r['orders']} tickets ({int(r['high_value'])} high value)"
            for _, r in f.per_agent.iterrows()
        ]
        footer = [GETTING_STARTED, *([f"<{sheet_url}|ECM Assignments Sheet>"] if sheet_url else [])]
        budget = MAIN_LIMIT - len("\n".join(lines + footer)) - 60
        shown = []
        for line in agent_lines:
            if budget - len(line) - 1 < 0:
                break
            shown.append(line)
            budget -= len(line) + 1
        lines += shown
        if len(shown) < len(agent_lines):
            lines.append(f"… and {len(agent_lines) - len(shown)} more agents (see the thread)")
        lines += footer
    else:
        lines.append("No assignments this tick.")
    return "\n".join(lines)


# The seeds' "getting started" lines (SPEC §11): the field commands an agent works the queue with.
GETTING_STARTED = ("*Getting started:* `ecm tickets` your queue · `ecm order ID` an order's diagnosis · "
                   "`ecm start ID` · `ecm resolve ID --notes ...` · `ecm escalate ID --reason ...`")


def agent_thread_text(agent: pd.Series, orders: pd.DataFrame, key: str) -> str:
    now = orders[orders["triage_run"] == key]
    high = now[now["high_value"]]
    rest = now[~now["high_value"]]
    earlier = orders[orders["triage_run"] != key]
    lines = [f"{mention(agent['slack_handle'], agent['name'])} — your {len(orders)} orders this tick"]
    if len(high):
        lines.append("*:moneybag: High value*")
        lines += [_order_line(r) for _, r in high.iterrows()]
    if len(rest):
        lines.append("*:clipboard: Regular*")
        lines += [_order_line(r) for _, r in rest.iterrows()]
    for run, group in earlier.groupby("triage_run"):
        lines.append(f"*:inbox_tray: Carried over from the {escape(run)} tick* (not announced then)")
        lines += [_order_line(r) for _, r in group.iterrows()]
    if len(orders):
        lines.append(f"Start with `ecm order {escape(orders['order_id'].iloc[0])}` for its diagnosis and runbook.")
    return "\n".join(lines)


def briefing_messages(f: TriageFigures, announced: pd.DataFrame, key: str, sheet_url: str = "",
                      critical_hours: float = 36) -> list[Message]:
    """The main briefing, then one thread reply per agent with their orders."""
    main = briefing_text(f, sheet_url, critical_hours)
    messages = [Message("triage", main, sections(main))]
    for _, agent in f.per_agent.iterrows():
        orders = announced[announced["agent_key"] == agent["agent_key"]].sort_values(
            ["high_value", "amount_aed", "order_id"], ascending=[False, False, True], na_position="last")
        text = agent_thread_text(agent, orders, key)
        messages.append(Message(f"triage/agent/{agent['agent_key']}", text, sections(text)))
    return messages


@dataclass(frozen=True)
class GateFailure:
    asset: str
    check: str
    summary: str


NOT_DONE = {
    "stuck_orders": "nothing was scored, assigned or briefed for this tick",
    "qualified_orders": "nothing was scored, assigned or briefed for this tick",
    "assignments": "tickets were written to the Sheet, but the briefing was not posted: review the Assignments tab",
}


def validation_alert(tick: datetime, failures: list[GateFailure], counts: dict[str, int]) -> Message:
    """SPEC §9 "validation failed": reason, counts, what was not done."""
    first = failures[0]
    reason = f"{first.check} ({first.summary})" if first.summary else first.check
    lines = [
        f"ECM triage validation failed: {escape(reason)}. Manual review required.",
        f":no_entry: *Tick {tick:%Y-%m-%d %H:%M} GST* — {len(failures)} blocking gate"
        f"{'s' if len(failures) != 1 else ''} failed on `{first.asset}`",
    ]
    lines += [f"• `{f.check}`: {escape(f.summary) or 'failed'}" for f in failures[:10]]
    if counts:
        lines.append("• Counts: " + " · ".join(f"{k} {v:,}" for k, v in counts.items()))
    lines.append(f"• Not done: {NOT_DONE.get(first.asset, 'the rest of the triage was stopped')}")
    text = "\n".join(lines)
    return Message("validation_failed", text, sections(text))
