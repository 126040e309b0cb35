"""The ops agent's commands: `ecm tickets`, `ecm order`, `ecm start`, `ecm resolve`, `ecm escalate`.
Tables through `rich` (colour on a terminal only, plain when piped), `--json` for scripts."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from ecm_pipeline.cli.instance import stderr


def _console():
    from rich.console import Console

    # Wide enough for the tables when piped (rich would fold them to 80 columns).
    return Console(width=None if sys.stdout.isatty() else 160, highlight=False)


def _json(value: object) -> None:
    print(json.dumps(value, indent=2, default=str))


def cmd_tickets(args: argparse.Namespace) -> int:
    from rich.table import Table

    from ecm_pipeline.field import queue
    from ecm_pipeline.resources import initialized

    with initialized("sheet", "warehouse") as built:
        mine = queue(built["sheet"].store(), built["warehouse"], args.agent)
    if mine.warning:
        stderr(f"warning: {mine.warning}")
    if args.json:
        _json({"agent": mine.agent, "tickets": mine.tickets.to_dict("records"), "today": mine.stats})
        return 0
    table = Table(title=f"Open tickets of {mine.agent}: {len(mine.tickets)}", title_justify="left")
    for column in ("order", "prio", "status", "amount", "age h", "reason", "SLA", "left h", "next action"):
        table.add_column(column, justify="right" if column in ("amount", "age h", "left h") else "left")
    colours = {"BREACHED": "bold red", "CRITICAL": "red", "WARNING": "yellow", "OK": "green"}
    for t in mine.tickets.itertuples():
        action = "completed — resolve it" if t.completed else t.next_action
        table.add_row(t.order_id, t.priority, t.status, f"{t.amount:,.2f} {t.currency}",
                      "" if t.hours_open != t.hours_open else f"{t.hours_open:.1f}", t.stuck_reason,
                      f"[{colours.get(t.sla_band, '')}]{t.sla_band}[/]" if t.sla_band in colours else t.sla_band,
                      "" if t.sla_hours_left != t.sla_hours_left else f"{t.sla_hours_left:.1f}", action)
    console = _console()
    console.print(table)
    s = mine.stats
    average = "-" if s["average_resolution_minutes"] is None else f"{s['average_resolution_minutes']:.0f} min"
    met = "-" if s["sla_met_share"] is None else f"{s['sla_met_share']:.0%}"
    console.print(f"Today: {s['resolved_today']} resolved · average resolution {average} · SLA met {met}")
    if len(mine.tickets):
        console.print(f"Next: `ecm order {mine.tickets['order_id'].iloc[0]}` for its diagnosis, then "
                      "`ecm start ID`, `ecm resolve ID --notes ...` or `ecm escalate ID --reason ...`")
    return 0


def cmd_order(args: argparse.Namespace) -> int:
    from ecm_pipeline.domain.field import checked_order_id
    from ecm_pipeline.field import diagnose
    from ecm_pipeline.partitions import as_of_utc, validated_key
    from ecm_pipeline.resources import initialized

    order_id = checked_order_id(args.order_id)
    as_of = as_of_utc(validated_key(args.as_of)) if args.as_of else datetime.now(UTC).replace(tzinfo=None)
    with initialized("sheet", "warehouse") as built:
        tab = built["sheet"].store().read_tab("Assignments")
        found = diagnose(built["warehouse"], tab, [order_id], as_of)[order_id]
    if args.json:
        _json(found)
    else:
        _print_diagnosis(found, args.as_of or "now")
    return 0 if found["verdict"] != "unknown" else 1


def _print_diagnosis(d: dict, when: str) -> None:
    from rich.table import Table

    console = _console()
    order = d["order_id"]
    verdict = d["verdict"]
    if verdict == "unknown":
        stderr(f"ecm order: {order} is not an order the warehouse knows (as of {when})")
        return
    if verdict == "not_stuck":
        console.print(f"{order} is not stuck as of {when}: GOMS status {d['status']} / {d['sub_state']}")
        return
    if verdict == "excluded":
        console.print(f"{order} is left out of the triage as of {when}: {d['exclusion']} "
                      f"({d['status']} / {d['sub_state']}, {d['currency']})")
        return
    console.print(f"[bold]{order}[/] as of {when}")
    systems = Table(show_header=True, title="Systems", title_justify="left")
    systems.add_column("system")
    systems.add_column("fields")
    for system, fields in d["systems"].items():
        systems.add_row(system, ", ".join(f"{k}={v}" for k, v in fields.items() if v not in (None, "")))
    console.print(systems)
    if verdict == "disqualified":
        console.print(f"Disqualified: {d['disqualification_code']} — {d['disqualification_reason']} "
                      f"(it would be {d['stuck_reason']}, rule {d['rule_id'] or '-'})")
        return
    console.print(f"Reason: [bold]{d['stuck_reason']}[/] (rule {d['rule_id'] or 'none: uncategorized'}) · "
                  f"team {d['team']} · SLA {d['sla_hours']:g} h" + (" · monitor only" if d["monitor_only"] else ""))
    factors = " · ".join(f"{k} {v:.2f}" for k, v in d["factors"].items())
    console.print(f"Score {d['score']:.4f} → {d['priority']} ({factors})"
                  + (" · already with an agent" if d["already_assigned"] else ""))
    console.print(f"Action: {d['action']}")
    for number, step in enumerate(d["steps"], start=1):
        console.print(f"  {number}. {step}")
    console.print(f"Escalate when {d['escalate_when']}" + (f" → {d['escalation']}" if d["escalation"] else "")
                  + f" (`ecm escalate {order} --reason ...`)")
    console.print(f"Runbook: {d['runbook']}")


def _lifecycle(target_name: str):
    def command(args: argparse.Namespace) -> int:
        from ecm_pipeline.domain.field import checked_order_id
        from ecm_pipeline.domain.tickets import Status
        from ecm_pipeline.field import act
        from ecm_pipeline.resources import initialized

        target = Status[target_name]
        note = (getattr(args, "notes", None) or getattr(args, "reason", None) or "").strip()
        if target in (Status.RESOLVED, Status.ESCALATED) and not note:
            raise ValueError("say what you did: --notes TEXT" if target == Status.RESOLVED
                             else "say why: --reason TEXT")
        with initialized("sheet", "warehouse", "lake") as built:
            done = act(built["sheet"].store(), built["warehouse"], built["lake"], args.agent,
                       checked_order_id(args.order_id),
                       target, note, force=args.force, diagnosis=getattr(args, "diagnosis", None) or "",
                       runbook=getattr(args, "runbook", None) or "")
        if args.json:
            _json(done.__dict__)
        else:
            print(f"{done.order_id}: {done.before} → {done.after}"
                  + (f"; recorded in {done.ledger}" if done.ledger else "") + " and the Audit Log")
        return 0

    return command


def register(sub: argparse._SubParsersAction) -> None:
    def agent_options(parser: argparse.ArgumentParser, *, agent: bool = True) -> None:
        if agent:
            parser.add_argument("--agent", help="your e-mail as in the Agents tab (default: $ECM_AGENT)")
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")

    tickets = sub.add_parser("tickets", help="your open tickets: P1 first, then breached, then least SLA left")
    agent_options(tickets)
    tickets.set_defaults(func=cmd_tickets)
    order = sub.add_parser("order", help="diagnose one order with the pipeline's query and rules")
    order.add_argument("order_id")
    order.add_argument("--as-of", help="as the warehouse knew it at this tick, e.g. 2026-11-21-14:00 (default: now)")
    agent_options(order, agent=False)
    order.set_defaults(func=cmd_order)
    steps = (("start", "IN_PROGRESS", "start working a ticket (OPEN or ESCALATED → IN_PROGRESS)"),
             ("resolve", "RESOLVED", "resolve a ticket (→ RESOLVED, a row in Resolutions)"),
             ("escalate", "ESCALATED", "escalate a ticket (→ ESCALATED, a row in Escalations)"))
    for name, target, help_text in steps:
        parser = sub.add_parser(name, help=help_text)
        parser.add_argument("order_id")
        if name == "resolve":
            parser.add_argument("--notes", required=True, help="what you did")
            parser.add_argument("--diagnosis", choices=["correct", "partial", "wrong"],
                                help="was the pipeline's diagnosis right? (Diagnosis Match)")
            parser.add_argument("--runbook", choices=["followed", "modified", "ignored"],
                                help="did you follow the runbook? (Action Followed)")
        if name == "escalate":
            parser.add_argument("--reason", required=True, help="why it needs someone else")
        parser.add_argument("--force", action="store_true", help="act on another agent's ticket")
        agent_options(parser)
        parser.set_defaults(func=_lifecycle(target))
