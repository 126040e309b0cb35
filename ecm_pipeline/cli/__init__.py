"""`ecm`: the command line for data engineers and ops agents.

    ecm demo [--seed N] [--as-of KEY]   generate the demo warehouse and sheet under $ECM_HOME
    ecm triage [--partition KEY]        run the triage job in-process and print the briefing
    ecm check                           test the configuration and every connection
    ecm backfill --from KEY --to KEY    rebuild a range of past ticks and the history in one run
    ecm health [--json]                 is the tick due by now triaged? (exit 0 ok, 1 late/missed, 2 failed, 3 never)
    ecm tickets [--agent EMAIL]         your open tickets, most urgent first, and today's figures
    ecm order ID [--as-of KEY]          one order's diagnosis with the pipeline's query and rules
    ecm start|resolve|escalate ID       move your ticket through its lifecycle (SPEC §8)

A mistake or a failure the user can act on is one line on stderr and a non-zero exit (2 for bad
input, 1 for a failed run); `--verbose` shows Dagster's log and the stack traces.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings

from ecm_pipeline.osutil import os_problem
from ecm_pipeline.settings import ConfigError


def build_parser() -> argparse.ArgumentParser:
    # Imported here, not at the top: the commands' modules read the settings (the partitions are
    # built from them), and a bad settings file must be a one-line error, not an import traceback.
    from ecm_pipeline.cli import field, history, pipeline

    parser = argparse.ArgumentParser(prog="ecm", description="ECM Pipeline: stuck remittance order triage.")
    parser.add_argument("--verbose", action="store_true", help="show Dagster's log and stack traces")
    sub = parser.add_subparsers(dest="command", required=True)
    pipeline.register(sub)
    history.register(sub)
    field.register(sub)
    return parser


def _user_errors() -> tuple[type[Exception], ...]:
    from ecm_pipeline.cli.instance import InstanceError
    from ecm_pipeline.domain.field import FieldError
    from ecm_pipeline.domain.roster import RosterError
    from ecm_pipeline.resources.lake import LakeError
    from ecm_pipeline.resources.sheet import SheetError
    from ecm_pipeline.resources.slack import OutboxError
    from ecm_pipeline.resources.warehouse import WarehouseError

    return ConfigError, InstanceError, SheetError, WarehouseError, LakeError, OutboxError, RosterError, FieldError


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
    except ConfigError as exc:   # the settings every command reads
        print(f"ecm: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if not args.verbose:  # Dagster's beta/preview notices are for the code's authors, not its users
        warnings.filterwarnings("ignore", module="dagster")
    try:
        return args.func(args)
    except ValueError as exc:  # a bad partition key, a bad argument: one line
        if args.verbose:
            traceback.print_exc()
        print(f"ecm {args.command}: {exc}", file=sys.stderr)
        return 2
    except _user_errors() as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"ecm {args.command}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a full or read-only disk, a missing directory
        if args.verbose:
            traceback.print_exc()
        print(f"ecm {args.command}: {os_problem(exc)}", file=sys.stderr)
        return 1


def entry() -> None:
    """Console-script entry. Leaves without interpreter teardown, where DuckDB 2.0's bindings print
    harmless "nanobind: leaked ..." noise after the command's own output."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
