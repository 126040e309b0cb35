"""The `:rotating_light: ECM Manager Error` alert (SPEC §9): which job and asset failed, the
error's first line and a link to the run. Under 500 characters, no thread (facts §7.5), never a
secret and never a stack trace. Pure: the caller says what failed; posting is the Slack resource's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ecm_pipeline.domain.briefing import Message, escape, sections

ALERT_KEY = "failure_alert"
ALERT_TITLE = ":rotating_light: ECM Manager Error"
ALERT_LIMIT = 500
ERROR_SHOWN = 200   # characters of the error's first line
# user:password@ in a URL (a SQLAlchemy URL in a connection error, say): the password goes.
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@", re.IGNORECASE)
_SECRET_SHOWN = 4   # a secret value shorter than this is not looked for (it would blank ordinary text)


@dataclass(frozen=True)
class Failure:
    job: str
    run_id: str
    tick: str              # the partition or range the run covered, '' when none
    assets: tuple[str, ...]  # the assets (or checks) of the failed step, '' when the run failed outside a step
    step: str
    error: str             # the error as Dagster recorded it; only its first line is shown


def redacted(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without URL passwords or any of the given secret values."""
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}***@", text)
    for secret in secrets:
        if secret and len(secret) >= _SECRET_SHOWN:
            text = text.replace(secret, "***")
    return text


def first_line(error: str) -> str:
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    line = lines[0] if lines else "no error message"
    return line if len(line) <= ERROR_SHOWN else line[:ERROR_SHOWN - 1] + "…"


def failure_alert(failure: Failure, run_url: str, secrets: Iterable[str] = ()) -> Message:
    """The alert for one failed run; its key makes it one message per run wherever it is posted from."""
    what = ", ".join(f"`{escape(a)}`" for a in failure.assets) if failure.assets else "the run"
    step = f" (step `{escape(failure.step)}`)" if failure.step and failure.assets else ""
    tick = f" · tick {escape(failure.tick)}" if failure.tick else ""
    lines = [
        ALERT_TITLE,
        f"*Job* `{escape(failure.job)}`{tick}",
        f"*Failed* {what}{step}",
        f"*Error* {escape(first_line(redacted(failure.error, secrets)))}",
        f"<{run_url}|Open run {escape(failure.run_id[:8])} in Dagster>",
    ]
    text = "\n".join(lines)
    if len(text) > ALERT_LIMIT:   # only many failed assets can get here: name fewer
        lines[2] = f"*Failed* {len(failure.assets)} assets, first {what.split(', ')[0]}{step}"
        text = "\n".join(lines)
    return Message(ALERT_KEY, text, sections(text))


MISSED_KEY = "missed_tick"


def missed_tick_warning(tick: str, detail: str) -> Message:
    """`:warning: ECM triage missed the {tick} tick`, with what was found instead (no run, or a run
    queued or started since when). One per tick: its key and the tick are its identity."""
    text = f":warning: ECM triage missed the {escape(tick)} tick\n{escape(detail)}"
    return Message(MISSED_KEY, text, sections(text))
