"""Roster parsing and assignment: rotation start, high-value spread, capacity, overflow,
stickiness, inactive/excluded agents, case-insensitive e-mails, invariants."""

from __future__ import annotations

import pandas as pd
import pytest

from ecm_pipeline.domain import tickets
from ecm_pipeline.domain.assignment import plan_assignments, triage_outcome
from ecm_pipeline.domain.qualification import flag_already_assigned
from ecm_pipeline.domain.roster import RosterError, is_excluded, parse_roster
from ecm_pipeline.domain.tickets import agent_loads
from ecm_pipeline.settings import AssignmentSettings

AGENT_COLUMNS = list(tickets.AGENT_COLUMNS)
ASSIGNMENT_COLUMNS = list(tickets.ASSIGNMENT_COLUMNS)

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


THREE = (("c@x.io", "C", "Ops", "", "TRUE", "10"), ("a@x.io", "A", "Ops", "", "TRUE", "10"),
         ("b@x.io", "B", "Ops", "", "TRUE", "10"))


# --- roster ---------------------------------------------------------------------------------------

def test_roster_parses_active_values_and_default_capacity() -> None:
    roster, problems = parse_roster(agents(
        ("A@x.io", "A", "Ops", "U0AAAAAA1", "TRUE", "12"), ("b@x.io", "B", "Ops", "", "yes", ""),
        ("c@x.io", "C", "Ops", "", "1", "8"), ("d@x.io", "D", "Ops", "", "FALSE", "10"),
        ("e@x.io", "E", "Ops", "", "no", "10"), ("f@x.io", "F", "Ops", "", "true", "10"),
    ), SETTINGS)
    assert problems == []
    assert roster["key"].tolist() == ["a@x.io", "b@x.io", "c@x.io", "d@x.io", "e@x.io", "f@x.io"]
    assert roster["active"].tolist() == [True, True, True, False, False, True]
    assert roster["max_tickets"].tolist() == [12, 10, 8, 10, 10, 10]


def test_roster_problems_are_specific_and_the_rest_proceeds() -> None:
    roster, problems = parse_roster(agents(
        ("a@x.io", "A", "Ops", "", "TRUE", "10"),
        ("", "Nobody", "Ops", "", "TRUE", "10"),
        ("A@X.IO", "A again", "Ops", "", "TRUE", "10"),
        ("b@x.io", "B", "Ops", "", "TRUE", "ten"),
        ("", "", "", "", "", ""),
        ("c@x.io", "C", "Ops", "", "TRUE", "12.0"),
    ), SETTINGS)
    assert problems == [
        "Agents row 3: Email is empty; row set aside",
        "Agents row 4 (A@X.IO): duplicate agent A@x.io (first on row 2); row set aside",
        "Agents row 5 (b@x.io): Max Tickets 'ten' is not a whole number from 0 to 200; row set aside",
    ]
    assert roster["key"].tolist() == ["a@x.io", "c@x.io"]
    assert roster["max_tickets"].tolist() == [10, 12]


@pytest.mark.parametrize(("email", "handle", "max_tickets", "problem"), [
    ("eve@x.io", "", "inf", "Max Tickets 'inf' is not a whole number from 0 to 200"),
    ("eve@x.io", "", "1e9", "Max Tickets '1e9' is not a whole number from 0 to 200"),
    ("eve@x.io", "", "201", "Max Tickets '201' is not a whole number from 0 to 200"),
    ("eve@x.io", "", "-1", "Max Tickets '-1' is not a whole number from 0 to 200"),
    ("not-an-email", "", "10", "Email 'not-an-email' is not an e-mail address"),
    ("eve@x.io,bob@x.io", "", "10", "Email 'eve@x.io,bob@x.io' is not one e-mail address"),
    ("eve@x.io\nbob@x.io", "", "10", "is not one e-mail address"),
    ("eve@x.io", "@eve", "10", "Slack Handle '@eve' is not a Slack user id"),
])
def test_hostile_roster_rows_are_set_aside_by_name(email: str, handle: str, max_tickets: str, problem: str) -> None:
    roster, problems = parse_roster(agents(("a@x.io", "A", "Ops", "", "TRUE", "10"),
                                           (email, "Eve", "Ops", handle, "TRUE", max_tickets)), SETTINGS)
    assert roster["key"].tolist() == ["a@x.io"]
    assert len(problems) == 1 and problem in problems[0] and problems[0].startswith("Agents row 3")
    assert problems[0].endswith("row set aside")


def test_an_invisible_copy_of_an_address_is_the_same_agent() -> None:
    roster, problems = parse_roster(agents(("amira@x.io", "Amira", "Ops", "U0AMIRA01", "TRUE", "10"),
                                           ("\u200bAmira@x.io ", "Amira twin", "Ops", "", "TRUE", "10"),
                                           ("ｂob@x.io", "Bob", "Ops", "<@U0BOB0001>", "TRUE", "5")), SETTINGS)
    assert roster["key"].tolist() == ["amira@x.io", "bob@x.io"]
    assert roster["slack_handle"].tolist() == ["U0AMIRA01", "U0BOB0001"]
    assert problems == ["Agents row 3 (Amira@x.io): duplicate agent Amira@x.io (first on row 2); row set aside"]


def test_roster_without_a_required_column_is_refused_clearly() -> None:
    with pytest.raises(RosterError, match="no column 'Max Tickets'"):
        parse_roster(agents(("a@x.io", "A", "Ops", "", "TRUE", "1")).drop(columns=["Max Tickets"]), SETTINGS)


def test_exclusions_match_full_addresses_exactly_and_fragments_as_substrings() -> None:
    assert is_excluded("Test.Agent@aspora.example", ("test.agent@",))
    assert is_excluded("qa@aspora.example", ("QA@aspora.example",))
    assert not is_excluded("qa2@aspora.example", ("qa@aspora.example",))


# --- assignment -----------------------------------------------------------------------------------

def test_rotation_starts_with_fewest_open_tickets_then_email() -> None:
    roster = roster_of(*THREE)
    tab = tickets(("X1", "a@x.io", "OPEN"), ("X2", "c@x.io", "IN_PROGRESS"), ("X3", "c@x.io", "OPEN"))
    result = plan(orders([100, 100, 100]), roster, tab)
    # loads: b=0, a=1, c=2 -> b, a, c
    assert result.assigned["agent_key"].tolist() == ["b@x.io", "a@x.io", "c@x.io"]


def test_high_value_first_by_amount_then_rest_by_score() -> None:
    scored = orders([6000, 300, 9000, 400, 5000], scores=[0.1, 0.9, 0.1, 0.2, 0.1])
    result = plan(scored, roster_of(*THREE))
    assert result.assigned["order_id"].tolist() == ["O002", "O000", "O004", "O001", "O003"]


def test_high_value_round_robin_spread_and_one_rotation_into_the_rest() -> None:
    scored = orders([9000, 8000, 7000, 6000, 5000, 100, 90])
    result = plan(scored, roster_of(*THREE))
    assert result.assigned["agent_key"].tolist() == [
        "a@x.io", "b@x.io", "c@x.io", "a@x.io", "b@x.io", "c@x.io", "a@x.io"]
    hv = result.agents.set_index("key")["high_value_now"]
    assert hv.max() - hv.min() <= 1


def test_agents_at_capacity_are_skipped_and_the_rest_overflows() -> None:
    roster = roster_of(("a@x.io", "A", "Ops", "", "TRUE", "1"), ("b@x.io", "B", "Ops", "", "TRUE", "3"),
                       ("c@x.io", "C", "Ops", "", "TRUE", "2"))
    tab = tickets(("X1", "c@x.io", "OPEN"), ("X2", "c@x.io", "OPEN"))  # c is full
    result = plan(orders([100] * 6), roster, tab)
    assert result.assigned["agent_key"].tolist() == ["a@x.io", "b@x.io", "b@x.io", "b@x.io"]
    assert len(result.overflow) == 2
    assert result.overflow["order_id"].tolist() == ["O004", "O005"]


def test_already_assigned_orders_are_never_reassigned() -> None:
    scored = orders([100, 200, 300])
    scored.loc[1, "already_assigned"] = True
    result = plan(scored, roster_of(*THREE))
    assert "O001" not in result.assigned["order_id"].tolist()
    assert result.already_assigned == 1


def test_the_run_that_appends_and_a_racing_run_of_the_tick_write_the_same_outcome() -> None:
    """The second run of a tick finds the first run's tickets held; its outcome file must still be
    the first run's, row for row, or the gate verdict on one is not found for the other."""
    earlier = tickets(("O002", "a@x.io", "OPEN"))
    earlier["Triage Run"] = "2026-11-21-07:00"
    first_scored = flag_already_assigned(orders([100, 200, 300]), earlier)
    first = plan(first_scored, roster_of(*THREE), earlier)
    after = pd.concat([earlier, first.new_rows], ignore_index=True)
    racing_scored = flag_already_assigned(orders([100, 200, 300]), after)
    assert racing_scored["already_assigned"].sum() == 3
    outcomes = [triage_outcome(scored, after, "2026-11-21-14:00", 250) for scored in (first_scored, racing_scored)]
    pd.testing.assert_frame_equal(*outcomes)
    assert outcomes[0]["assignment"].tolist() == ["assigned", "assigned", "already_assigned"]
    assert outcomes[0]["already_assigned"].tolist() == [False, False, True]


def test_monitor_only_orders_are_counted_not_assigned() -> None:
    scored = orders([100, 200])
    scored.loc[0, "no_action"] = True
    result = plan(scored, roster_of(*THREE))
    assert result.assigned["order_id"].tolist() == ["O001"] and result.monitored == 1


def test_inactive_and_excluded_agents_get_nothing() -> None:
    roster = roster_of(("a@x.io", "A", "Ops", "", "FALSE", "10"), ("test.agent@x.io", "T", "Ops", "", "TRUE", "50"),
                       ("b@x.io", "B", "Ops", "", "TRUE", "10"))
    result = plan(orders([100] * 4), roster)
    assert set(result.assigned["agent_key"]) == {"b@x.io"}


def test_emails_match_case_insensitively_for_load() -> None:
    roster = roster_of(("Amira@X.IO", "A", "Ops", "", "TRUE", "2"), ("b@x.io", "B", "Ops", "", "TRUE", "2"))
    tab = tickets(("X1", "amira@x.io", "OPEN"), ("X2", "AMIRA@X.IO ", "IN_PROGRESS"), ("X3", "amira@x.io", "ESCALATED"))
    assert agent_loads(tab).to_dict() == {"amira@x.io": 2}
    result = plan(orders([100, 100, 100]), roster, tab)
    assert result.assigned["agent_key"].tolist() == ["b@x.io", "b@x.io"]
    assert result.new_rows["Assigned Agent"].tolist() == ["b@x.io", "b@x.io"]


def test_team_first_routes_by_reason_team_and_falls_back_to_the_pool() -> None:
    roster = roster_of(("a@x.io", "A", "Ops", "", "TRUE", "10"), ("k@x.io", "K", "KYC_ops", "", "TRUE", "1"))
    scored = orders([100, 100, 100], team=["KYC_ops", "KYC_ops", "Ops"])
    result = plan(scored, roster, settings=SETTINGS.model_copy(update={"mode": "team_first"}))
    assert result.assigned["agent_key"].tolist() == ["k@x.io", "a@x.io", "a@x.io"]


def test_new_rows_have_the_sheet_columns() -> None:
    result = plan(orders([6000.5]), roster_of(*THREE))
    row = result.new_rows.iloc[0]
    assert list(result.new_rows.columns) == ASSIGNMENT_COLUMNS
    assert (row["Status"], row["Amount"], row["Hours Stuck"], row["Triage Run"]) == (
        "OPEN", "6000.50", "30.0", "2026-11-21-14:00")
