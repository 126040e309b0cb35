"""The Agents tab, parsed into a clean roster with a readable problem list (SPEC §8)."""

from __future__ import annotations

import pandas as pd

from ecm_pipeline.settings import AssignmentSettings

REQUIRED = ("Email", "Name", "Team", "Slack Handle", "Active", "Max Tickets")
TRUTHY = {"true", "yes", "1", "y"}


class RosterError(Exception):
    """The Agents tab cannot be used at all (for example a required column is missing)."""


def is_excluded(email: str, exclusions: tuple[str, ...]) -> bool:
    """A full address matches exactly; any other entry matches as a case-insensitive substring."""
    email = email.lower()
    for entry in (e.strip().lower() for e in exclusions if e.strip()):
        full_address = "@" in entry.strip("@")
        if email == entry if full_address else entry in email:
            return True
    return False


def parse_roster(agents: pd.DataFrame, settings: AssignmentSettings) -> tuple[pd.DataFrame, list[str]]:
    """Return (roster, problems). Unusable rows are skipped with a message naming the sheet row;
    the roster has one row per agent: key (lower-case e-mail), email, name, team, slack_handle,
    active, excluded, max_tickets."""
    columns = {str(c).strip().lower(): c for c in agents.columns}
    missing = [c for c in REQUIRED if c.lower() not in columns]
    if missing:
        raise RosterError(f"Agents tab has no column {', '.join(repr(m) for m in missing)}")
    problems: list[str] = []
    seen: dict[str, int] = {}
    rows = []
    cells = agents.astype("object").where(agents.notna(), "").astype(str)
    for position, record in enumerate(cells.to_dict("records"), start=2):  # row 1 is the header
        get = {c: record[columns[c.lower()]].strip() for c in REQUIRED}
        if not any(get.values()):
            continue  # a blank row
        email = get["Email"]
        if not email:
            problems.append(f"Agents row {position}: empty Email; row ignored")
            continue
        key = email.lower()
        if key in seen:
            problems.append(
                f"Agents row {position}: duplicate agent {email} (first on row {seen[key]}); row ignored"
            )
            continue
        seen[key] = position
        max_raw = get["Max Tickets"]
        max_tickets = settings.default_max_tickets
        if max_raw:
            try:
                max_tickets = int(float(max_raw))
                if max_tickets < 0 or float(max_raw) != max_tickets:
                    raise ValueError
            except ValueError:
                max_tickets = settings.default_max_tickets
                problems.append(
                    f"Agents row {position} ({email}): Max Tickets {max_raw!r} is not a whole number; "
                    f"using {settings.default_max_tickets}"
                )
        rows.append({
            "key": key, "email": email, "name": get["Name"] or email, "team": get["Team"],
            "slack_handle": get["Slack Handle"], "active": get["Active"].lower() in TRUTHY,
            "excluded": is_excluded(email, settings.roster_exclusions), "max_tickets": max_tickets,
        })
    roster = pd.DataFrame(rows, columns=["key", "email", "name", "team", "slack_handle", "active", "excluded",
                                         "max_tickets"])
    return roster, problems
