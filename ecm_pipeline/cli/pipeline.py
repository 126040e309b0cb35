"""The data engineer's commands: `ecm demo`, `ecm triage`, `ecm check`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from ecm_pipeline.cli.instance import fail_dead_runs, open_instance, run_tags, stderr, warnings_of
from ecm_pipeline.partitions import live_tick_key, validated_key
from ecm_pipeline.settings import ecm_home, load_settings

OK, MISSING, FAILING = "ok", "missing", "failing"


def cmd_demo(args: argparse.Namespace) -> int:
    from ecm_pipeline.demo import DEFAULT_ORDERS_PER_DAY, generate_demo
    from ecm_pipeline.partitions import as_of_utc, tick_of

    key = args.as_of or live_tick_key()
    tick_of(key)  # any tick, also before the go-live date: the demo sets the go-live to its first day
    if args.days <= 0 or (args.orders_per_day is not None and args.orders_per_day <= 0):
        raise ValueError("--days and --orders-per-day must be positive")
    scale = (args.orders_per_day or DEFAULT_ORDERS_PER_DAY) / DEFAULT_ORDERS_PER_DAY
    home = ecm_home()
    info = generate_demo(home, seed=args.seed, anchor=as_of_utc(key), days=args.days, scale=scale)
    print(f"Demo data for tick {key} (seed {args.seed}) in {home}")
    print(f"  warehouse.duckdb: {info['orders']:,} orders over {args.days:g} days "
          f"({info['start']:%Y-%m-%d %H:%M} to {info['anchor']:%Y-%m-%d %H:%M} UTC)")
    print(f"  sheet.sqlite: Agents tab with 7 agents, {info['tickets']} existing tickets")
    print(f"  settings.yaml: partitions start at the data's first tick, {info['go_live']}")
    print("  outbox/ and lake/ cleared")
    return 0


def failure_message(result) -> str:
    """One line (and one per failed gate) saying why a run failed, from its events."""
    import dagster as dg

    gates = [
        f"  gate {e.asset_key.to_user_string()}.{e.check_name} failed: {e.description or ''}".rstrip(": ")
        for e in result.get_asset_check_evaluations()
        if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR
    ]
    if gates:
        return "quality gate failed; nothing was assigned or briefed after it\n" + "\n".join(gates)
    from ecm_pipeline.alerts import step_error

    for event in result.all_events:
        if event.is_step_failure:
            message = step_error(event.step_failure_data).strip().splitlines()[0]
            return f"step {event.step_key} failed: {message}"
    return "the run failed"


def alert_failure(instance, run_id: str) -> None:
    """Post the failure alert for a run `ecm` ran in-process (no daemon's sensor may see it); the
    sensor, if it sees the run later, updates this one alert. A Slack problem here is a warning:
    the run's own failure is what the command reports."""
    from ecm_pipeline.alerts import post_failure_alert
    from ecm_pipeline.resources import initialized

    try:
        with initialized("slack") as built:
            delivery = post_failure_alert(instance, instance.get_run_by_id(run_id), built["slack"])
    except Exception as exc:  # never hide the run's failure behind the alert's
        stderr(f"warning: the failure alert could not be posted: {type(exc).__name__}: "
               f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")
        return
    if delivery is not None:
        stderr(f"Failure alert {delivery.method} -> {delivery.record}")


def _materialized(result) -> dict[str, dict]:
    return {e.materialization.asset_key.to_user_string(): {k: v.value for k, v in e.materialization.metadata.items()}
            for e in result.get_asset_materialization_events()}


def cmd_health(args: argparse.Namespace) -> int:
    """One line (or JSON) on the tick that should be done by now; the exit code says which state."""
    import json
    from datetime import UTC, datetime, timedelta

    from ecm_pipeline.health import health

    grace = timedelta(minutes=load_settings().schedule.grace_minutes)
    with open_instance() as instance:
        state = health(instance, datetime.now(UTC), grace)
    print(json.dumps(state.as_dict()) if args.json else state.line())
    return state.exit_code


def cmd_triage(args: argparse.Namespace) -> int:
    key = validated_key(args.partition) if args.partition else live_tick_key()
    with open_instance() as instance:
        for run_id in fail_dead_runs(instance):
            stderr(f"note: marked run {run_id[:8]} failed: the ecm process that ran it is gone")
        from ecm_pipeline.definitions import defs

        job = defs.resolve_job_def("ecm_triage")
        result = job.execute_in_process(
            partition_key=key, instance=instance, raise_on_error=False, tags=run_tags(key, "cli"),
            run_config={"loggers": {"console": {"config": {"log_level": "DEBUG" if args.verbose else "CRITICAL"}}}},
        )
        for warning in warnings_of(instance, result.run_id):
            stderr(f"warning: {warning}")
        if not result.success:
            stderr(f"Triage {key} FAILED — {failure_message(result)}")
            alert_failure(instance, result.run_id)
    if not result.success:
        stderr(f"(run {result.run_id}; details in `make dev` -> Runs, or again with --verbose)")
        return 1
    meta = _materialized(result)
    briefing, assignments = meta["slack_briefing"], meta["assignments"]
    if briefing.get("skipped"):
        stuck = meta["stuck_orders"]
        print(f"Triage {key}: {stuck['backlog_count']} stuck orders rebuilt in the lake "
              f"(snapshot {stuck['snapshot_mode']}); nothing assigned or posted: {briefing['skipped_reason']}")
        return 0
    print(briefing["briefing"])
    print()
    if assignments["new_assignments"]:
        print(f"{assignments['new_assignments']} new assignments written to the Assignments tab.")
    else:
        print(f"Nothing assigned twice: no new assignments for {key} "
              f"({assignments['assigned_this_tick']} already assigned by this tick).")
    deliveries = briefing["deliveries"]
    methods = sorted({d["method"] for d in deliveries})
    print(f"Briefing {' / '.join(methods)} ({len(deliveries)} messages) -> {briefing['destination']}")
    healed = meta.get("self_healed_tickets", {}).get("tickets_self_healed", 0)
    if healed:
        print(f"{healed} open tickets closed as self-healed (their orders completed); see the Resolutions tab.")
    for asset, name in (("backlog_report", "Backlog report"), ("pattern_report", "Patterns report")):
        report = meta.get(asset, {})
        if report.get("posted"):
            print(f"{name} posted ({report['messages']} messages)"
                  + (f", chart {report['chart']}" if report.get("chart") else ""))
    return 0


def _probe(name: str, fn: Callable[[], str]) -> tuple[str, str, str]:
    try:
        return name, OK, fn()
    except Exception as exc:  # every failure is reported, none is raised
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        status = MISSING if "run `ecm demo`" in message or "not set" in message else FAILING
        return name, status, message


def _check_integration(key: str, resource) -> str:
    """Initialise the resource as a run would (environment variables resolved) and test it for real."""
    import dagster as dg

    from ecm_pipeline.snapshot import CONTRACT_TABLES, HISTORY_TABLE

    with dg.build_resources({key: resource}) as built:
        live = getattr(built, key)
        detail = live.check()
        if key == "warehouse":
            found = live.tables(list(CONTRACT_TABLES))
            missing = [t for t in CONTRACT_TABLES if t not in found and t != HISTORY_TABLE]
            if missing:
                raise RuntimeError(f"{detail}: missing tables {', '.join(missing)}")
            history = "with" if HISTORY_TABLE in found else "without"
            detail = f"{detail} (SELECT 1 ok; contract tables present, {history} {HISTORY_TABLE})"
        return detail


def cmd_check(_: argparse.Namespace) -> int:
    from ecm_pipeline.domain.classification import load_rules
    from ecm_pipeline.quality import load_suite, suite_names, suite_path
    from ecm_pipeline.resources import environment_resources, missing_variables

    def settings_probe() -> str:
        settings = load_settings()
        suites = [load_suite(suite_path(name)) for name in suite_names()]
        return (f"{len(load_rules())} classification rules, {len(suites)} quality suites; "
                f"ticks {', '.join(settings.schedule.ticks)} {settings.schedule.timezone}")

    checks = [_probe("settings", settings_probe)]
    incomplete = missing_variables()
    for key, resource in environment_resources().items():
        if key in incomplete:
            checks.append((key, MISSING, f"set {', '.join(incomplete[key])} (the other {key} variables are set)"))
        else:
            checks.append(_probe(key, lambda key=key, resource=resource: _check_integration(key, resource)))
    width = max(len(name) for name, _, _ in checks)
    for name, status, detail in checks:
        print(f"{name:<{width}}  {status:<8} {detail}")
    sys.stdout.flush()
    return 0 if all(status == OK for _, status, _ in checks) else 1


def register(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="generate the demo warehouse and sheet under $ECM_HOME (default .ecm/)")
    demo.add_argument("--seed", type=int, default=7, help="random seed (same seed and tick: same data)")
    demo.add_argument("--as-of", help="the tick the data ends at, e.g. 2026-11-21-14:00 (default: latest tick)")
    demo.add_argument("--days", type=float, default=35.0, help="days of history (default 35)")
    demo.add_argument("--orders-per-day", type=int, help="orders a day, all kinds (default about 3,000)")
    demo.set_defaults(func=cmd_demo)
    triage = sub.add_parser("triage", help="run the triage job for a tick and print the briefing")
    triage.add_argument("--partition", help="tick to triage, e.g. 2026-11-21-14:00 (default: the live tick)")
    triage.set_defaults(func=cmd_triage)
    check = sub.add_parser("check", help="test the configuration and every connection")
    check.set_defaults(func=cmd_check)
    probe = sub.add_parser("health", help="is the tick that should be done by now triaged? one line and an exit "
                                          "code (0 ok, 1 late or missed, 2 failed, 3 never) for a monitor")
    probe.add_argument("--json", action="store_true", help="one JSON object instead of the line")
    probe.set_defaults(func=cmd_health)
