"""The "ECM Operations" Sheet as the domain sees it: the tabs this project owns and their columns,
ticket states and the SPEC §8 lifecycle, and the rules every reader of the Assignments tab shares
(which rows are open, whose load they are, which rows are copies). The one owner of these rules:
stores, assets and commands import them from here."""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum

import pandas as pd

AGENT_COLUMNS = ("Email", "Name", "Team", "Slack Handle", "Active", "Max Tickets")
ASSIGNMENT_COLUMNS = (
    "Order ID", "Assigned Agent", "Assigned At", "Status", "Priority", "Currency", "Amount",
    "Hours Stuck", "Diagnosis", "Notes", "Triage Run",
)
RESOLUTION_COLUMNS = (
    "Timestamp", "Order ID", "Agent", "Notes", "Assigned At", "Resolution Minutes", "SLA Target Minutes",
    "SLA Status", "Stuck Reason", "Amount", "Currency", "Diagnosis Match", "Action Followed",
    "Resolution Type", "Triage Run",
)
ESCALATION_COLUMNS = (
    "Timestamp", "Order ID", "Escalated By", "Reason", "Order Status", "Stuck Hours", "Amount", "Currency",
    "Priority", "Assigned To", "Resolved At", "Resolution Notes", "Triage Run",
)
AUDIT_COLUMNS = ("Timestamp", "Order ID", "Triage Run", "Actor", "From", "To", "Note")
# Where each year's archive lives when it is a spreadsheet of its own (Google Sheets).
ARCHIVE_INDEX_TAB = "Archive Spreadsheets"
ARCHIVE_INDEX_COLUMNS = ("Year", "Spreadsheet ID", "Created At")
PATTERN_COLUMNS = (
    "Triage Run", "Signature", "Currency", "Status", "Sub State", "Lulu Status", "Has Falcon", "Falcon Status",
    "Payout Status", "Payout Partner", "RFI Status", "Orders", "Value AED", "Avg Hours", "Max Hours",
    "High Value Orders", "Critical Orders", "Impact", "Flags", "Trend", "Mapped Reason", "Novel",
)

# The tabs a run reads or writes, with the columns it needs; people may add columns of their own.
TABS: dict[str, tuple[str, ...]] = {
    "Agents": AGENT_COLUMNS,
    "Assignments": ASSIGNMENT_COLUMNS,
}
# Tabs created on first use, by the commands and reports that append to them.
LEDGER_TABS: dict[str, tuple[str, ...]] = {
    "Resolutions": RESOLUTION_COLUMNS,
    "Escalations": ESCALATION_COLUMNS,
    "Audit Log": AUDIT_COLUMNS,
    "Pattern Intelligence": PATTERN_COLUMNS,
    ARCHIVE_INDEX_TAB: ARCHIVE_INDEX_COLUMNS,
}
ALL_TABS = {**TABS, **LEDGER_TABS}
# Closed tickets past the retention move to one archive tab per year of their last change, with
# exactly the columns of the tab they left: Assignments rows and, once their ticket has gone, their
# Resolutions rows.
ARCHIVED_TABS = ("Assignments", "Resolutions")
_ARCHIVE_TAB = re.compile(rf"^({'|'.join(ARCHIVED_TABS)}) Archive (\d{{4}})$")


def archive_tab(year: int, tab: str = "Assignments") -> str:
    return f"{tab} Archive {year}"


def archived_from(tab: str) -> str | None:
    """The tab an archive tab's rows came from ("Resolutions Archive 2026" -> "Resolutions")."""
    match = _ARCHIVE_TAB.match(tab)
    return match.group(1) if match else None


def tab_columns(tab: str) -> tuple[str, ...] | None:
    """The columns of a tab this project owns (archive tabs included); None for any other."""
    if tab in ALL_TABS:
        return ALL_TABS[tab]
    origin = archived_from(tab)
    return ALL_TABS[origin] if origin else None

# A ticket is one order in one triage run: the identity every write of a row carries.
TICKET_KEY = ("Order ID", "Triage Run")
# The identity of a row in the tabs where a row must exist once: a retried or late append, or a
# re-run, finds it by these cells. A resolution is one per ticket; a pattern one per signature and run.
ROW_KEYS: dict[str, tuple[str, ...]] = {
    "Assignments": TICKET_KEY,
    "Resolutions": TICKET_KEY,
    "Pattern Intelligence": ("Triage Run", "Signature"),
}
ASSIGNED_AT_FORMAT = "%Y-%m-%d %H:%M:%S%z"
TICK_KEY_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}-\d{2}:\d{2}$")


class Status(StrEnum):
    OPEN = "OPEN"
    IN_PROGRESS = "IN_PROGRESS"
    ESCALATED = "ESCALATED"
    RESOLVED = "RESOLVED"


# Already with someone, so never assigned again (facts §7.11): open, in progress or escalated.
OPEN_STATES = (Status.OPEN, Status.IN_PROGRESS, Status.ESCALATED)
# What counts against an agent's Max Tickets.
LOAD_STATES = (Status.OPEN, Status.IN_PROGRESS)
# SPEC §8: OPEN -> IN_PROGRESS -> RESOLVED | ESCALATED; ESCALATED -> IN_PROGRESS | RESOLVED; RESOLVED
# is final. An OPEN ticket may also be resolved or escalated directly (the field `resolve` and
# `escalate` commands, facts §7.11, and the pipeline's self-heal act on OPEN tickets).
TRANSITIONS: dict[Status, tuple[Status, ...]] = {
    Status.OPEN: (Status.IN_PROGRESS, Status.RESOLVED, Status.ESCALATED),
    Status.IN_PROGRESS: (Status.RESOLVED, Status.ESCALATED),
    Status.ESCALATED: (Status.IN_PROGRESS, Status.RESOLVED),
    Status.RESOLVED: (),
}

_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))


def normalise_text(value: object) -> str:
    """A cell as people mean it: NFKC, zero-width characters removed, trimmed."""
    return unicodedata.normalize("NFKC", str(value)).translate(_INVISIBLE).strip()


def normalise_email(value: object) -> str:
    """The identity of an agent's e-mail: `normalise_text`, case-folded."""
    return normalise_text(value).casefold()


def statuses(tab: pd.DataFrame) -> pd.Series:
    return tab["Status"].astype(str).str.strip().str.upper()


def order_ids(tab: pd.DataFrame) -> pd.Series:
    return tab["Order ID"].astype(str).str.strip()


def open_tickets(tab: pd.DataFrame) -> pd.DataFrame:
    """The rows of an Assignments tab that are still with someone."""
    return tab[statuses(tab).isin(OPEN_STATES)]


def agent_loads(tab: pd.DataFrame) -> pd.Series:
    """OPEN + IN_PROGRESS tickets per agent, keyed by normalised e-mail."""
    mine = tab.loc[statuses(tab).isin(LOAD_STATES), "Assigned Agent"]
    return mine.map(normalise_email).value_counts()


def is_pipeline_ticket(tab: pd.DataFrame) -> pd.Series:
    """Rows the triage wrote: their Triage Run names a tick (people write `manual` or leave it blank)."""
    return tab["Triage Run"].astype(str).str.strip().str.match(TICK_KEY_PATTERN)


def pipeline_copies(tab: pd.DataFrame) -> pd.DataFrame:
    """Later copies of a ticket the pipeline wrote: the same order in the same triage run (a write
    that landed after the client gave up). The first row of each ticket is the one kept."""
    key = pd.DataFrame({"order": order_ids(tab), "run": tab["Triage Run"].astype(str).str.strip()})
    return tab[is_pipeline_ticket(tab) & key.duplicated(keep="first")]


def row_key(tab: str) -> tuple[str, ...]:
    """The cells that identify a row of `tab`; every column where a row has no narrower identity."""
    if archived_from(tab):
        return TICKET_KEY
    return ROW_KEYS.get(tab) or ALL_TABS[tab]


_KEY_SEPARATOR = "\x1f"   # a control character no cell holds, so joined keys cannot collide


def keyed(frame: pd.DataFrame, key: tuple[str, ...]) -> pd.Series:
    """Each row's identity as one string of its trimmed cells (vectorised: archive runs key
    hundreds of thousands of rows)."""
    joined = pd.Series("", index=frame.index, dtype=object)
    for n, column in enumerate(key):
        cells = frame[column].astype(str).str.strip()
        joined = cells if n == 0 else joined + _KEY_SEPARATOR + cells
    return joined.astype(object)


def later_copies(frame: pd.DataFrame, tab: str) -> pd.DataFrame:
    """Rows of a ledger tab that repeat an earlier row's identity: a write that landed twice."""
    return frame[keyed(frame, row_key(tab)).duplicated(keep="first")]


def not_yet_in(rows: pd.DataFrame, existing: pd.DataFrame, tab: str) -> pd.DataFrame:
    """The rows whose identity is not in `existing` (the tab as read) yet."""
    key = row_key(tab)
    present = set(keyed(existing, key))
    return rows[~keyed(rows, key).isin(present).to_numpy()] if len(rows) else rows


def human_duplicates(tab: pd.DataFrame) -> pd.DataFrame:
    """Open rows of an order that is open more than once, other than the pipeline's own copies: a
    duplicate people typed in. Never assigned again; reported so someone fixes the Sheet."""
    rest = open_tickets(tab.drop(pipeline_copies(tab).index))
    ids = order_ids(rest)
    return rest[ids.duplicated(keep=False)]


def assigned_at_utc(tab: pd.DataFrame) -> pd.Series:
    """Assigned At as naive UTC timestamps (NaT where the cell is not a time the pipeline wrote)."""
    stamps = pd.to_datetime(tab["Assigned At"].astype(str).str.strip(), format=ASSIGNED_AT_FORMAT,
                            errors="coerce", utc=True)
    return stamps.dt.tz_localize(None)


FIRST_TICKET_COLUMNS = ("Order ID", "Assigned At")   # all that first_ticket_at reads


def first_ticket_at(tab: pd.DataFrame) -> pd.Series:
    """Per order id, when its first ticket (any status) was assigned, naive UTC; a row whose Assigned
    At is not a time the pipeline wrote counts as assigned long ago (`Timestamp.min`). Read once,
    asked for many ticks."""
    stamps = assigned_at_utc(tab).fillna(pd.Timestamp.min)
    return stamps.groupby(order_ids(tab).to_numpy()).min()


def tickets_open_at(tab: pd.DataFrame, as_of: pd.Timestamp | None = None,
                    closed_at: pd.Series | None = None) -> pd.DataFrame:
    """The tickets that were with someone at `as_of` (naive UTC; now when None): assigned at or
    before it — a cell that is not a time counts as assigned long ago, so its order is never handed
    out again — and open now, or closed only after it (`closed_at`, aligned with `tab`, says when a
    closed ticket was closed; without it a closed ticket counts as closed before the tick)."""
    if as_of is None:
        return open_tickets(tab)
    stamps = assigned_at_utc(tab)
    assigned_by_then = stamps.isna() | (stamps <= as_of)
    still_open = statuses(tab).isin(OPEN_STATES)
    if closed_at is not None:
        still_open = still_open | (closed_at.reindex(tab.index) > as_of).fillna(False)
    return tab[assigned_by_then & still_open]


def can_transition(current: str, target: Status) -> bool:
    try:
        return target in TRANSITIONS[Status(current.strip().upper())]
    except ValueError:
        return False


def resolution_times(resolutions: pd.DataFrame) -> pd.Series:
    """Each Resolutions row's Timestamp, naive UTC; NaT where it is not a time the pipeline wrote."""
    return pd.to_datetime(resolutions["Timestamp"].astype(str).str.strip(), format=ASSIGNED_AT_FORMAT,
                          errors="coerce", utc=True).dt.tz_localize(None)


def archivable(tab: pd.DataFrame, resolutions: pd.DataFrame, now: pd.Timestamp, closed_days: float) -> pd.DataFrame:
    """RESOLVED tickets whose last change — their resolution's Timestamp, or Assigned At where no
    later change is recorded — is more than `closed_days` before `now` (naive UTC), with that time
    in `last_change`. A ticket with no time the pipeline can read stays where it is."""
    closed = tab[statuses(tab) == Status.RESOLVED]
    stamps = resolution_times(resolutions)
    resolved_at = stamps.groupby(keyed(resolutions, TICKET_KEY).to_numpy()).max() if len(resolutions) else None
    last = assigned_at_utc(closed)
    if resolved_at is not None and len(closed):
        later = keyed(closed, TICKET_KEY).map(resolved_at)
        last = pd.concat([last, later.astype("datetime64[us]")], axis=1).max(axis=1)
    old = last < now - pd.Timedelta(days=closed_days)
    return closed[old.to_numpy()].assign(last_change=last[old])


def archivable_resolutions(resolutions: pd.DataFrame, tab: pd.DataFrame, now: pd.Timestamp,
                           closed_days: float) -> pd.DataFrame:
    """Resolutions rows whose ticket has left the Assignments tab (`tab`, as it stands after this
    tick's archiving) and whose Timestamp is more than `closed_days` before `now`, with that time in
    `last_change`: the ledger follows its tickets to the archive, so it too stays the size of the
    recent work. A row whose time the pipeline cannot read stays."""
    stamps = resolution_times(resolutions)
    gone = ~keyed(resolutions, TICKET_KEY).isin(set(keyed(tab, TICKET_KEY)))
    old = (gone & (stamps < now - pd.Timedelta(days=closed_days))).to_numpy()
    return resolutions[old].assign(last_change=stamps[old])
