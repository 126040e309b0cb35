"""`ecm`: the command line for data engineers and ops agents.

    ecm demo [--seed N] [--as-of KEY]   generate the demo warehouse and sheet under $ECM_HOME
    ecm triage [--partition KEY]        run the triage job in-process and print the briefing
    ecm check                           test the configuration and every connection
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import warnings
from collections.abc import Callable

from ecm_pipeline.settings import PROJECT_DIR, ConfigError, ecm_home, load_settings

OK, MISSING, FAILING = "ok", "missing", "failing"


def _prepare_dagster_home() -> None:
    """Runs are recorded in a persistent instance so `make dev` shows them: $DAGSTER_HOME, by default
    $ECM_HOME/dagster, seeded with the project's dagster.yaml."""
    home = os.environ.get("DAGSTER_HOME") or str(ecm_home() / "dagster")
    os.environ["DAGSTER_HOME"] = home
    os.makedirs(home, exist_ok=True)
    target = os.path.join(home, "dagster.yaml")
    source = PROJECT_DIR / "dagster.yaml"
    if not os.path.exists(target) and source.exists():
        shutil.copyfile(source, target)


def cmd_demo(args: argparse.Namespace) -> int:
    from ecm_pipeline.demo import generate_demo
    from ecm_pipeline.partitions import as_of_utc, current_partition_key

    key = args.as_of or current_partition_key()
    anchor = as_of_utc(key)
    home = ecm_home()
    info = generate_demo(home, seed=args.seed, anchor=anchor, days=args.days)
    print(f"Demo data for tick {key} (seed {args.seed}) in {home}")
    print(f"  warehouse.duckdb: {info['orders']:,} orders over {args.days:g} days "
          f"({info['start']:%Y-%m-%d} to {info['anchor']:%Y-%m-%d %H:%M} UTC)")
    print(f"  sheet.sqlite: Agents tab with 7 agents, {info['tickets']} existing tickets")
    print("  outbox/ and lake/ cleared")
    return 0


def _failure_message(result) -> str:
    import dagster as dg

    gates = [
        f"  gate {e.asset_key.to_user_string()}.{e.check_name} failed: {e.description or ''}".rstrip(": ")
        for e in result.get_asset_check_evaluations()
        if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR
    ]
    if gates:
        return "quality gate failed; nothing was assigned or briefed after it\n" + "\n".join(gates)
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            cause = error.cause or error
            message = event.step_failure_data.user_failure_data.description if (
                event.step_failure_data.user_failure_data) else cause.message.strip()
            return f"step {event.step_key} failed: {message}"
    return "the run failed"


def cmd_triage(args: argparse.Namespace) -> int:
    import dagster as dg

    from ecm_pipeline.partitions import current_partition_key, tick_of

    key = args.partition or current_partition_key()
    tick_of(key)
    _prepare_dagster_home()
    from ecm_pipeline.definitions import defs

    warnings.filterwarnings("ignore")
    job = defs.resolve_job_def("ecm_triage")
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            partition_key=key,
            instance=instance,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
    if not result.success:
        print(f"Triage {key} FAILED — {_failure_message(result)}", file=sys.stderr)
        print(f"(run {result.run_id}; details in `make dev` -> Runs)", file=sys.stderr)
        return 1
    materialized = {
        e.materialization.asset_key.to_user_string(): e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    meta = materialized["slack_briefing"]
    print(meta["briefing"].value)
    print()
    new = materialized["assignments"]["new_assignments"].value
    if new:
        print(f"{new} new assignments written to the Assignments tab.")
    else:
        print(f"Nothing assigned twice: no new assignments for {key} "
              f"({materialized['assignments']['assigned_this_tick'].value} already assigned by this tick).")
    if meta["posted"].value:
        deliveries = meta["deliveries"].value
        methods = sorted({d["method"] for d in deliveries})
        print(f"Briefing {' / '.join(methods)} ({len(deliveries)} messages) -> {meta['destination'].value}")
    else:
        print(f"Briefing not posted: {meta['not_posted_reason'].value}")
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
    from ecm_pipeline.quality import EXPECTATIONS_DIR, load_suite
    from ecm_pipeline.resources import environment_resources, missing_variables

    def settings_probe() -> str:
        settings = load_settings()
        suites = [load_suite(p) for p in sorted(EXPECTATIONS_DIR.glob("*.json"))]
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
    return 0 if all(status == OK for _, status, _ in checks) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecm", description="ECM Pipeline: stuck remittance order triage.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="generate the demo warehouse and sheet under $ECM_HOME (default .ecm/)")
    demo.add_argument("--seed", type=int, default=7, help="random seed (same seed and tick: same data)")
    demo.add_argument("--as-of", help="the tick the data ends at, e.g. 2026-11-21-14:00 (default: latest tick)")
    demo.add_argument("--days", type=float, default=35.0, help="days of history (default 35)")
    demo.set_defaults(func=cmd_demo)
    triage = sub.add_parser("triage", help="run the triage job for a tick and print the briefing")
    triage.add_argument("--partition", help="tick to triage, e.g. 2026-11-21-14:00 (default: latest tick)")
    triage.set_defaults(func=cmd_triage)
    check = sub.add_parser("check", help="test the configuration and every connection")
    check.set_defaults(func=cmd_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, ValueError) as exc:  # a mistake the user can fix: one line, no stack trace
        print(f"ecm {args.command}: {exc}", file=sys.stderr)
        return 2


def entry() -> None:
    """Console-script entry. Leaves without interpreter teardown, where DuckDB 2.0's bindings print
    harmless "nanobind: leaked ..." noise after the command's own output."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
