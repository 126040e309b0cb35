"""The code location loads, with the five assets, the job, the schedule and documented assets."""

from __future__ import annotations

import dagster as dg

from ecm_pipeline.definitions import defs

ASSETS = ["stuck_orders", "qualified_orders", "scored_orders", "assignments", "slack_briefing"]
SIDE_TABLES = {"excluded_orders": "stuck_orders", "disqualified_orders": "stuck_orders",
               "assignment_agents": "scored_orders", "ticket_announcements": "assignments",
               "self_healed_tickets": "stuck_orders"}


def test_definitions_load() -> None:
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} >= {*ASSETS, *SIDE_TABLES}
    assert defs.resolve_job_def("ecm_triage") is not None
    assert defs.resolve_schedule_def("triage_schedule").default_status == dg.DefaultScheduleStatus.RUNNING


def test_lineage_is_a_chain() -> None:
    graph = defs.resolve_asset_graph()
    for upstream, downstream in zip(ASSETS, ASSETS[1:], strict=False):
        parents = {k.to_user_string() for k in graph.get(dg.AssetKey(downstream)).parent_keys}
        # Tickets whose orders completed are closed before the tick assigns, freeing their agents' room.
        assert parents == {upstream} | ({"self_healed_tickets"} if downstream == "assignments" else set())


def test_every_table_the_lake_holds_is_an_asset_in_the_graph() -> None:
    graph = defs.resolve_asset_graph()
    for table, upstream in SIDE_TABLES.items():
        parents = {k.to_user_string() for k in graph.get(dg.AssetKey(table)).parent_keys}
        assert parents == {upstream} | ({"self_healed_tickets"} if table == "assignment_agents" else set()), table


def test_every_asset_has_a_business_description_and_is_partitioned_per_tick() -> None:
    graph = defs.resolve_asset_graph()
    for name in [*ASSETS, *SIDE_TABLES]:
        node = graph.get(dg.AssetKey(name))
        assert node.description and len(node.description) > 80, name
        assert node.metadata["dagster/code_references"].code_references, name   # the UI links to the source
        assert node.partitions_def is not None


def test_loading_definitions_needs_no_data_and_no_secrets(tmp_path, monkeypatch) -> None:
    import importlib

    import ecm_pipeline.definitions as module

    monkeypatch.setenv("ECM_HOME", str(tmp_path / "nothing-here"))
    reloaded = importlib.reload(module)
    dg.Definitions.validate_loadable(reloaded.defs)
    assert not (tmp_path / "nothing-here").exists()
