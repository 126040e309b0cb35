"""Roster parsing and assignment: rotation start, high-value spread, capacity, overflow,
stickiness, inactive/excluded agents, case-insensitive e-mails, invariants."""

from __future__ import annotations

import pandas as pd
import pytest

from ecm_pipeline.domain.assignment import agent_loads, plan_assignments
from ecm_pipeline.domain.roster import RosterError, is_excluded, parse_roster
from ecm_pipeline.resources.sheet import AGENT_COLUMNS, ASSIGNMENT_COLUMNS
from ecm_pipeline.settings import AssignmentSettings

SETTINGS = AssignmentSettings(roster_exclusions=("test.agent@",))


def agents(*rows: tuple) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=AGENT_COLUMNS)


def tickets(*rows: tuple[str, str, str]) -> pd.DataFrame:
    """(order id, agent, status) rows as the Assignments tab holds them."""
    frame = pd.DataFrame(rows, columns=["Order ID", "Assigned Agent", "Status"])
    for column in ASSIGNMENT_COLUMNS:
        if column not in frame:
            frame[column] = ""
    return frame[ASSIGNMENT_COLUMNS]


EMPTY = tickets()


def orders(amounts: list[float], scores: list[float] | None = None, **extra) -> pd.DataFrame:
    n = len(amounts)
    frame = pd.DataFrame({
        "order_id": [f"O{i:03d}" for i in range(n)],
        "amount_aed": amounts,
        "send_amount": amounts,
        "currency": "AED",
        "score": scores or [0.5] * n,
        "hours_stuck": [30.0] * n,
        "priority": "P2",
        "stuck_reason": "stuck_at_lulu",
        "action": "Check Lulu",
        "team": "Ops",
        "no_action": False,
        "already_assigned": False,
    })
    for key, value in extra.items():
        frame[key] = value
    return frame


def roster_of(*rows: tuple) -> pd.DataFrame:
    return parse_roster(agents(*rows), SETTINGS)[0]


def plan(scored: pd.DataFrame, roster: pd.DataFrame, tab: pd.DataFrame = EMPTY, settings=SETTINGS):
    return plan_assignments(scored, roster, tab, settings, triage_run="2026-11-21-14:00",
                            assigned_at="2026-11-21 14:00:05+0400")


THREE = (("c@x", "C", "Ops", "", "TRUE", "10"), ("a@x", "A", "Ops", "", "TRUE", "10"),
         ("b@x", "B", "Ops", "", "TRUE", "10"))


# --- roster ---------------------------------------------------------------------------------------

def test_roster_parses_active_values_and_default_capacity() -> None:
    roster, problems = parse_roster(agents(
        ("A@x", "A", "Ops", "@a", "TRUE", "12"), ("b@x", "B", "Ops", "", "yes", ""),
        ("c@x", "C", "Ops", "", "1", "8"), ("d@x", "D", "Ops", "", "FALSE", "10"),
        ("e@x", "E", "Ops", "", "no", "10"), ("f@x", "F", "Ops", "", "true", "10"),
    ), SETTINGS)
    assert problems == []
    assert roster["key"].tolist() == ["a@x", "b@x", "c@x", "d@x", "e@x", "f@x"]
    assert roster["active"].tolist() == [True, True, True, False, False, True]
    assert roster["max_tickets"].tolist() == [12, 10, 8, 10, 10, 10]


def test_roster_problems_are_specific_and_the_rest_proceeds() -> None:
    roster, problems = parse_roster(agents(
        ("a@x", "A", "Ops", "", "TRUE", "10"),
        ("", "Nobody", "Ops", "", "TRUE", "10"),
        ("A@X", "A again", "Ops", "", "TRUE", "10"),
        ("b@x", "B", "Ops", "", "TRUE", "ten"),
        ("", "", "", "", "", ""),
    ), SETTINGS)
    assert problems == [
        "Agents row 3: empty Email; row ignored",
        "Agents row 4: duplicate agent A@X (first on row 2); row ignored",
        "Agents row 5 (b@x): Max Tickets 'ten' is not a whole number; using 10",
    ]
    assert roster["key"].tolist() == ["a@x", "b@x"]
    assert roster["max_tickets"].tolist() == [10, 10]


def test_roster_without_a_required_column_is_refused_clearly() -> None:
    with pytest.raises(RosterError, match="no column 'Max Tickets'"):
        parse_roster(agents(("a@x", "A", "Ops", "", "TRUE", "1")).drop(columns=["Max Tickets"]), SETTINGS)


def test_exclusions_match_full_addresses_exactly_and_fragments_as_substrings() -> None:
    assert is_excluded("Test.Agent@aspora.example", ("test.agent@",))
    assert is_excluded("qa@aspora.example", ("QA@aspora.example",))
    assert not is_excluded("qa2@aspora.example", ("qa@aspora.example",))


# --- assignment -----------------------------------------------------------------------------------

def test_rotation_starts_with_fewest_open_tickets_then_email() -> None:
    roster = roster_of(*THREE)
    tab = tickets(("X1", "a@x", "OPEN"), ("X2", "c@x", "IN_PROGRESS"), ("X3", "c@x", "OPEN"))
    result = plan(orders([100, 100, 100]), roster, tab)
    # loads: b=0, a=1, c=2 -> b, a, c
    assert result.assigned["agent_key"].tolist() == ["b@x", "a@x", "c@x"]


def test_high_value_first_by_amount_then_rest_by_score() -> None:
    scored = orders([6000, 300, 9000, 400, 5000], scores=[0.1, 0.9, 0.1, 0.2, 0.1])
    result = plan(scored, roster_of(*THREE))
    assert result.assigned["order_id"].tolist() == ["O002", "O000", "O004", "O001", "O003"]


def test_high_value_round_robin_spread_and_one_rotation_into_the_rest() -> None:
    scored = orders([9000, 8000, 7000, 6000, 5000, 100, 90])
    result = plan(scored, roster_of(*THREE))
    assert result.assigned["agent_key"].tolist() == ["a@x", "b@x", "c@x", "a@x", "b@x", "c@x", "a@x"]
    hv = result.agents.set_index("key")["high_value_now"]
    assert hv.max() - hv.min() <= 1


def test_agents_at_capacity_are_skipped_and_the_rest_overflows() -> None:
    roster = roster_of(("a@x", "A", "Ops", "", "TRUE", "1"), ("b@x", "B", "Ops", "", "TRUE", "3"),
                       ("c@x", "C", "Ops", "", "TRUE", "2"))
    tab = tickets(("X1", "c@x", "OPEN"), ("X2", "c@x", "OPEN"))  # c is full
    result = plan(orders([100] * 6), roster, tab)
    assert result.assigned["agent_key"].tolist() == ["a@x", "b@x", "b@x", "b@x"]
    assert len(result.overflow) == 2
    assert result.overflow["order_id"].tolist() == ["O004", "O005"]


def test_already_assigned_orders_are_never_reassigned() -> None:
    scored = orders([100, 200, 300])
    scored.loc[1, "already_assigned"] = True
    result = plan(scored, roster_of(*THREE))
    assert "O001" not in result.assigned["order_id"].tolist()
    assert result.already_assigned == 1


def test_monitor_only_orders_are_counted_not_assigned() -> None:
    scored = orders([100, 200])
    scored.loc[0, "no_action"] = True
    result = plan(scored, roster_of(*THREE))
    assert result.assigned["order_id"].tolist() == ["O001"] and result.monitored == 1


def test_inactive_and_excluded_agents_get_nothing() -> None:
    roster = roster_of(("a@x", "A", "Ops", "", "FALSE", "10"), ("test.agent@x", "T", "Ops", "", "TRUE", "50"),
                       ("b@x", "B", "Ops", "", "TRUE", "10"))
    result = plan(orders([100] * 4), roster)
    assert set(result.assigned["agent_key"]) == {"b@x"}


def test_emails_match_case_insensitively_for_load() -> None:
    roster = roster_of(("Amira@X", "A", "Ops", "", "TRUE", "2"), ("b@x", "B", "Ops", "", "TRUE", "2"))
    tab = tickets(("X1", "amira@x", "OPEN"), ("X2", "AMIRA@X ", "IN_PROGRESS"), ("X3", "amira@x", "ESCALATED"))
    assert agent_loads(tab).to_dict() == {"amira@x": 2}
    result = plan(orders([100, 100, 100]), roster, tab)
    assert result.assigned["agent_key"].tolist() == ["b@x", "b@x"]
    assert result.new_rows["Assigned Agent"].tolist() == ["b@x", "b@x"]


def test_team_first_routes_by_reason_team_and_falls_back_to_the_pool() -> None:
    roster = roster_of(("a@x", "A", "Ops", "", "TRUE", "10"), ("k@x", "K", "KYC_ops", "", "TRUE", "1"))
    scored = orders([100, 100, 100], team=["KYC_ops", "KYC_ops", "Ops"])
    result = plan(scored, roster, settings=SETTINGS.model_copy(update={"mode": "team_first"}))
    assert result.assigned["agent_key"].tolist() == ["k@x", "a@x", "a@x"]


def test_new_rows_have_the_sheet_columns() -> None:
    result = plan(orders([6000.5]), roster_of(*THREE))
    row = result.new_rows.iloc[0]
    assert list(result.new_rows.columns) == ASSIGNMENT_COLUMNS
    assert (row["Status"], row["Amount"], row["Hours Stuck"], row["Triage Run"]) == (
        "OPEN", "6000.50", "30.0", "2026-11-21-14:00")
