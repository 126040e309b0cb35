"""Dagster resources: the same keys in every environment; the environment picks implementations.

Each production integration switches on by itself as soon as one of its variables is set (SPEC
§2), so a team can run with a real Slack and a local sheet. Only the presence of variables is
looked at here; their values are resolved by Dagster at run time (`dg.EnvVar`), so nothing is read
or connected at import, and a half-configured integration fails its run with the missing
variable's name instead of silently falling back to a local stand-in.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import dagster as dg

from ecm_pipeline.resources.lake import LakeResource
from ecm_pipeline.resources.sheet import SheetResource
from ecm_pipeline.resources.slack import SlackResource
from ecm_pipeline.resources.warehouse import WarehouseResource

VARIABLES = {
    "warehouse": ("REDSHIFT_HOST", "REDSHIFT_USER", "REDSHIFT_PASSWORD", "REDSHIFT_DATABASE"),
    "sheet": ("GOOGLE_SERVICE_ACCOUNT_JSON", "SPREADSHEET_ID"),
    "slack": ("SLACK_BOT_TOKEN", "SLACK_CHANNEL_ID"),
}


def missing_variables(env: Mapping[str, str] | None = None) -> dict[str, list[str]]:
    """Per integration that is switched on, the variables it still lacks."""
    env = os.environ if env is None else env
    out = {}
    for key, names in VARIABLES.items():
        if key == "warehouse" and env.get("ECM_WAREHOUSE_URL"):
            continue
        if any(env.get(n) for n in names):
            out[key] = [n for n in names if not env.get(n)]
    return {k: v for k, v in out.items() if v}


def environment_resources(env: Mapping[str, str] | None = None) -> dict[str, dg.ConfigurableResource]:
    env = os.environ if env is None else env

    def on(key: str) -> bool:
        return any(env.get(n) for n in VARIABLES[key])

    if env.get("ECM_WAREHOUSE_URL"):
        warehouse = WarehouseResource(url=dg.EnvVar("ECM_WAREHOUSE_URL"))
    elif on("warehouse"):
        warehouse = WarehouseResource(
            host=dg.EnvVar("REDSHIFT_HOST"),
            port=dg.EnvVar.int("REDSHIFT_PORT") if env.get("REDSHIFT_PORT") else 5439,
            user=dg.EnvVar("REDSHIFT_USER"),
            password=dg.EnvVar("REDSHIFT_PASSWORD"),
            database=dg.EnvVar("REDSHIFT_DATABASE"),
        )
    else:
        warehouse = WarehouseResource()
    # The client libraries are imported only when their integration is switched on.
    if on("sheet"):
        from ecm_pipeline.resources.google_sheet import GoogleSheetResource

        sheet_fields = {"spreadsheet_id": dg.EnvVar("SPREADSHEET_ID"),
                        "service_account_json": dg.EnvVar("GOOGLE_SERVICE_ACCOUNT_JSON")}
        if env.get("GOOGLE_SHEETS_API_ENDPOINT"):
            sheet_fields["api_endpoint"] = dg.EnvVar("GOOGLE_SHEETS_API_ENDPOINT")
        sheet = GoogleSheetResource(**sheet_fields)
    else:
        sheet = SheetResource()
    if on("slack"):
        from ecm_pipeline.resources.slack_api import SlackApiResource

        slack_fields = {"token": dg.EnvVar("SLACK_BOT_TOKEN"), "channel": dg.EnvVar("SLACK_CHANNEL_ID")}
        if env.get("SLACK_API_BASE_URL"):
            slack_fields["base_url"] = dg.EnvVar("SLACK_API_BASE_URL")
        slack = SlackApiResource(**slack_fields)
    else:
        slack = SlackResource()
    lake = LakeResource(url=dg.EnvVar("ECM_LAKE_URL")) if env.get("ECM_LAKE_URL") else LakeResource()
    return {"warehouse": warehouse, "sheet": sheet, "slack": slack, "lake": lake}


@contextmanager
def initialized(*keys: str) -> Iterator[dict]:
    """This environment's resources, initialised as a run would (environment variables resolved),
    for the `ecm` commands that use them outside a run."""
    available = environment_resources()
    with dg.build_resources({k: available[k] for k in keys}) as built:
        yield {k: getattr(built, k) for k in keys}
