"""The Agents tab, validated at the door (SPEC §8): one agent per usable row, and a named problem
for every row set aside. A row is set aside when its Email is not exactly one address, its Max
Tickets is not a whole number from 0 to the configured limit, or its Slack Handle is not a Slack
user id; e-mails are normalised (NFKC, zero-width characters removed, trimmed, case-folded), so a
copy of an agent's address with an invisible character is the same agent, not a second one."""

from __future__ import annotations

import re

import pandas as pd
from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from ecm_pipeline.domain.tickets import AGENT_COLUMNS, normalise_email, normalise_text
from ecm_pipeline.settings import AssignmentSettings

TRUTHY = {"true", "yes", "1", "y"}
ROSTER_COLUMNS = ["key", "email", "name", "team", "slack_handle", "active", "excluded", "max_tickets"]
_SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{6,12}$")
_WHOLE_NUMBER = re.compile(r"^\d+(\.0*)?$")


class RosterError(Exception):
    """The Agents tab cannot be used at all (for example a required column is missing)."""


class Agent(BaseModel):
    model_config = ConfigDict(frozen=True)

    email: str
    name: str
    team: str
    slack_handle: str
    active: bool
    max_tickets: int

    @field_validator("email", mode="before")
    @classmethod
    def _one_address(cls, value: str) -> str:
        text = normalise_text(value)
        if not text:
            raise ValueError("Email is empty")
        if any(ch.isspace() for ch in text) or any(sep in text for sep in ",;"):
            raise ValueError(f"Email {text!r} is not one e-mail address")
        try:
            return validate_email(text, check_deliverability=False).normalized
        except EmailNotValidError as exc:
            raise ValueError(f"Email {text!r} is not an e-mail address ({exc})") from None

    @field_validator("slack_handle", mode="before")
    @classmethod
    def _slack_user_id(cls, value: str) -> str:
        handle = normalise_text(value).removeprefix("<").removesuffix(">").lstrip("@")
        if handle and not _SLACK_USER_ID.match(handle):
            raise ValueError(f"Slack Handle {normalise_text(value)!r} is not a Slack user id (like U04ABCDEF)")
        return handle


def is_excluded(email: str, exclusions: tuple[str, ...]) -> bool:
    """A full address matches exactly; any other entry matches as a case-insensitive substring."""
    email = email.casefold()
    for entry in (e.strip().casefold() for e in exclusions if e.strip()):
        full_address = "@" in entry.strip("@")
        if email == entry if full_address else entry in email:
            return True
    return False


def _max_tickets(raw: str, settings: AssignmentSettings) -> int:
    if not raw:
        return settings.default_max_tickets
    if not _WHOLE_NUMBER.match(raw) or int(float(raw)) > settings.max_tickets_limit:
        raise ValueError(f"Max Tickets {raw!r} is not a whole number from 0 to {settings.max_tickets_limit}")
    return int(float(raw))


def parse_roster(agents: pd.DataFrame, settings: AssignmentSettings) -> tuple[pd.DataFrame, list[str]]:
    """Return (roster, problems). The roster has one row per agent: key (normalised e-mail), email,
    name, team, slack_handle, active, excluded, max_tickets. Each problem names the sheet row."""
    columns = {normalise_text(c).casefold(): c for c in agents.columns}
    missing = [c for c in AGENT_COLUMNS if c.casefold() not in columns]
    if missing:
        raise RosterError(f"Agents tab has no column {', '.join(repr(m) for m in missing)}")
    problems: list[str] = []
    seen: dict[str, int] = {}
    rows = []
    cells = agents.astype("object").where(agents.notna(), "").astype(str)
    for position, record in enumerate(cells.to_dict("records"), start=2):  # row 1 is the header
        get = {c: normalise_text(record[columns[c.casefold()]]) for c in AGENT_COLUMNS}
        if not any(get.values()):
            continue  # a blank row
        label = f"Agents row {position}" + (f" ({get['Email']})" if get["Email"] else "")
        try:
            agent = Agent(email=get["Email"], name=get["Name"], team=get["Team"], slack_handle=get["Slack Handle"],
                          active=get["Active"].casefold() in TRUTHY,
                          max_tickets=_max_tickets(get["Max Tickets"], settings))
        except (ValidationError, ValueError) as exc:
            reasons = ([e["msg"].removeprefix("Value error, ") for e in exc.errors()]
                       if isinstance(exc, ValidationError) else [str(exc)])
            problems.append(f"{label}: {'; '.join(reasons)}; row set aside")
            continue
        key = normalise_email(agent.email)
        if key in seen:
            problems.append(f"{label}: duplicate agent {agent.email} (first on row {seen[key]}); row set aside")
            continue
        seen[key] = position
        rows.append({
            "key": key, "email": agent.email, "name": agent.name or agent.email, "team": agent.team,
            "slack_handle": agent.slack_handle, "active": agent.active,
            "excluded": is_excluded(key, settings.roster_exclusions), "max_tickets": agent.max_tickets,
        })
    return pd.DataFrame(rows, columns=ROSTER_COLUMNS), problems
