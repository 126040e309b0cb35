"""Dagster resources: the same keys in every environment; the environment picks implementations.

Production integrations switch on by the presence of their variables (SPEC §2); only their
presence is looked at here, never their values, and nothing connects at import time.
"""

from __future__ import annotations

import os

import dagster as dg

from ecm_pipeline.resources.lake import LakeResource
from ecm_pipeline.resources.sheet import SheetResource
from ecm_pipeline.resources.slack import SlackResource
from ecm_pipeline.resources.warehouse import WarehouseResource


def environment_resources() -> dict[str, dg.ConfigurableResource]:
    warehouse = (
        WarehouseResource(url=dg.EnvVar("ECM_WAREHOUSE_URL"))
        if os.environ.get("ECM_WAREHOUSE_URL")
        else WarehouseResource()
    )
    return {"warehouse": warehouse, "sheet": SheetResource(), "slack": SlackResource(), "lake": LakeResource()}
