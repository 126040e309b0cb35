"""Production Slack delivery through the Slack Web API (`slack_sdk.WebClient`), SPEC §2 and §9.

The convergence logic is `Channel.publish` (slack.py); this module supplies its primitives. Our
messages are found again from Slack itself by their metadata (`conversations.history` for parents,
`conversations.replies` for thread replies) and from our bot only.

Retries follow from Slack having no idempotency key. Only HTTP 429 is retried inside slack_sdk:
Slack refused that request, so sending it again cannot post twice. A 5xx, a timeout or a dropped
connection may come after Slack stored the message, so slack_sdk's connection/server-error handlers
(which re-send the same `chat.postMessage`) are not used; those failures are retried here with
tenacity, each retried post starting with a fresh look-up, so a message that did arrive is not
posted again. A post stored even later than that is removed by the convergence pass. Outages longer
than a few attempts fail the step, whose Dagster retry policy tries again minutes later.
"""

from __future__ import annotations

import http.client
from collections.abc import Callable, Iterator
from typing import TypeVar

import dagster as dg
import tenacity
from pydantic import Field
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import RateLimitErrorRetryHandler
from slack_sdk.web import SlackResponse

from ecm_pipeline.domain.briefing import Message
from ecm_pipeline.resources.endpoints import require_https
from ecm_pipeline.resources.slack import Channel, Delivery, Posted, SlackDestinationResource, identity, message_metadata

LOOKUP_PAGE_SIZE = 200   # messages per conversations.history / conversations.replies page
LOOKUP_MAX_PAGES = 5     # a run looks back over the channel's latest 1,000 top-level messages

# What to do about the Slack errors an operator can fix, so `ecm check` and a failed run say it.
_HINTS = {
    "invalid_auth": "the token is not valid: check SLACK_BOT_TOKEN",
    "not_authed": "no token was sent: check SLACK_BOT_TOKEN",
    "token_revoked": "the token was revoked: issue a new bot token",
    "account_inactive": "the bot's account is deactivated",
    "channel_not_found": "no such channel for this bot: check SLACK_CHANNEL_ID",
    "not_in_channel": "the bot is not a member of the channel: invite it",
    "missing_scope": "the bot lacks a scope (needs chat:write and channels:history or groups:history)",
    "invalid_blocks": "Slack rejected the blocks",
}

T = TypeVar("T")


class SlackDeliveryError(RuntimeError):
    """A message could not be posted or updated; names the message and partition, never the token."""


class SlackCheckError(RuntimeError):
    """The connection check failed; says what to fix, never shows the token."""


def _is_retryable(exc: BaseException) -> bool:
    """5xx, timeouts and dropped connections: the request may or may not have been applied."""
    if isinstance(exc, SlackApiError):
        return exc.response.status_code >= 500
    return isinstance(exc, OSError | http.client.HTTPException)   # URLError, TimeoutError, resets


def _explain(exc: BaseException) -> str:
    if isinstance(exc, SlackApiError):
        error = str(exc.response.get("error", "")) or "no error code"
        needed = f" {exc.response.get('needed')}" if exc.response.get("needed") else ""
        hint = f": {_HINTS[error]}{needed}" if error in _HINTS else ""
        return f"{error} (HTTP {exc.response.status_code}){hint}"
    return f"{type(exc).__name__}: {exc}"


def _error_code(exc: SlackApiError) -> str:
    return str(exc.response.get("error", ""))


class SlackApiChannel(Channel):
    """One channel through one client; the bot's own messages only."""

    def __init__(self, client: WebClient, channel: str, bot_id: str | None, *, max_attempts: int,
                 backoff_seconds: float, scrub: Callable[[str], str]) -> None:
        self.client = client
        self.channel = channel
        self.bot_id = bot_id
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.scrub = scrub

    def _attempt(self, what: str, fn: Callable[[int], T]) -> T:
        """Run `fn(attempt)`, again (up to max_attempts in all) while it fails in a way that may be
        transient; a Slack error that is not, or the last failure, becomes a SlackDeliveryError."""
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_attempts),
            wait=tenacity.wait_incrementing(start=self.backoff_seconds, increment=self.backoff_seconds),
            retry=tenacity.retry_if_exception(_is_retryable),
            before_sleep=lambda state: dg.get_dagster_logger("slack").warning(self.scrub(
                f"{what}: attempt {state.attempt_number} failed ({_explain(state.outcome.exception())}); retrying")),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return fn(attempt.retry_state.attempt_number)
        except Exception as exc:
            if not (isinstance(exc, SlackApiError) or _is_retryable(exc)):
                raise   # not a Slack or network failure: a bug, shown as is
            tries = retrying.statistics.get("attempt_number", 1)
            plural = "s" if tries > 1 else ""
            raise SlackDeliveryError(
                self.scrub(f"{what} failed after {tries} attempt{plural}: {_explain(exc)}")) from exc
        raise AssertionError("unreachable")

    def _pages(self, call: Callable[..., SlackResponse], **params: object) -> Iterator[dict]:
        cursor = None
        for _ in range(LOOKUP_MAX_PAGES):
            page = call(channel=self.channel, limit=LOOKUP_PAGE_SIZE, include_all_metadata=True,
                        cursor=cursor, **params)
            yield from page.get("messages", [])
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return

    def _ours(self, messages: Iterator[dict], partition: str, thread_ts: str | None) -> list[Posted]:
        out = []
        for m in messages:
            who = identity(m.get("metadata"))
            mine = self.bot_id is None or m.get("bot_id") == self.bot_id
            if not (who and mine and who[1] == partition) or m["ts"] == thread_ts:
                continue
            if thread_ts is None and m.get("thread_ts") not in (None, m["ts"]):
                continue   # a reply broadcast to the channel
            out.append(Posted(m["ts"], who[0], who[1], thread_ts))
        return out

    def top_level(self, partition: str) -> list[Posted]:
        return self._attempt(f"looking up our messages for {partition} in {self.channel}", lambda _: self._ours(
            self._pages(self.client.conversations_history), partition, None))

    def replies(self, parent_ts: str, partition: str) -> list[Posted]:
        def lookup(_: int) -> list[Posted]:
            try:
                return self._ours(self._pages(self.client.conversations_replies, ts=parent_ts), partition, parent_ts)
            except SlackApiError as exc:
                if _error_code(exc) == "thread_not_found":   # the parent was deleted
                    return []
                raise

        return self._attempt(f"looking up the replies to {parent_ts} in {self.channel}", lookup)

    def post(self, message: Message, partition: str, thread_ts: str | None) -> Delivery:
        def post(attempt: int) -> Delivery:
            if attempt > 1:   # the earlier attempt may have been stored: find it instead of posting again
                found = self.replies(thread_ts, partition) if thread_ts else self.top_level(partition)
                earlier = sorted((p for p in found if p.key == message.key), key=lambda p: float(p.ts))
                if earlier:
                    return self.update(earlier[0].ts, message, partition)
            response = self.client.chat_postMessage(
                channel=self.channel, text=message.text, blocks=message.blocks or None, thread_ts=thread_ts,
                metadata=message_metadata(message.key, partition), unfurl_links=False, unfurl_media=False)
            return Delivery(message.key, "chat.postMessage", response["ts"], f"{self.channel}/{response['ts']}")

        return self._attempt(f"Slack delivery of message {message.key!r} for partition {partition} to "
                             f"channel {self.channel}", post)

    def update(self, ts: str, message: Message, partition: str) -> Delivery:
        def update(_: int) -> Delivery:
            # blocks=[] on update removes blocks a previous version had (omitting them keeps them).
            self.client.chat_update(channel=self.channel, ts=ts, text=message.text, blocks=message.blocks,
                                    metadata=message_metadata(message.key, partition))
            return Delivery(message.key, "chat.update", ts, f"{self.channel}/{ts}")

        return self._attempt(f"Slack update of message {message.key!r} for partition {partition} in "
                             f"channel {self.channel}", update)

    def delete(self, ts: str) -> None:
        def delete(_: int) -> None:
            try:
                self.client.chat_delete(channel=self.channel, ts=ts)
            except SlackApiError as exc:
                if _error_code(exc) != "message_not_found":   # gone already: converged
                    raise

        self._attempt(f"Slack deletion of the copy {ts} in channel {self.channel}", delete)


    def files_in_thread(self, thread_ts: str) -> set[str]:
        def lookup(_: int) -> set[str]:
            try:
                messages = self._pages(self.client.conversations_replies, ts=thread_ts)
                return {f.get("name", "") for m in messages for f in m.get("files") or []}
            except SlackApiError as exc:
                if _error_code(exc) == "thread_not_found":
                    return set()
                raise

        return self._attempt(f"looking up the files in thread {thread_ts} in {self.channel}", lookup)

    def upload(self, content: bytes, filename: str, title: str, thread_ts: str) -> Delivery:
        """`files_upload_v2` into the thread. A retried upload first looks for the file, so one that
        did arrive is not shared twice."""
        def upload(attempt: int) -> Delivery:
            if attempt > 1 and filename in self.files_in_thread(thread_ts):
                return Delivery(filename, "files.upload_v2", thread_ts, f"{self.channel}/{thread_ts}")
            response = self.client.files_upload_v2(content=content, filename=filename, title=title,
                                                   channel=self.channel, thread_ts=thread_ts)
            file_id = (response.get("file") or {}).get("id", "")
            return Delivery(filename, "files.upload_v2", thread_ts, f"{self.channel}/{thread_ts}/{file_id}")

        return self._attempt(f"Slack upload of {filename} to channel {self.channel}", upload)


class SlackApiResource(SlackDestinationResource):
    """Briefings and alerts posted to a Slack channel with a bot token (production)."""

    token: str = Field(repr=False)
    channel: str
    base_url: str = Field(default="", description="SLACK_API_BASE_URL; https only (http on 127.0.0.1 for tests).")
    timeout_seconds: float = 15
    max_attempts: int = 3
    backoff_seconds: float = 0.2   # times the attempt number

    def describe(self) -> str:
        return f"Slack channel {self.channel} via {self.base_url or WebClient.BASE_URL}"

    def _client(self) -> WebClient:
        # Only 429 is retried by the client (max_attempts calls in all); see the module docstring.
        retries = max(self.max_attempts - 1, 0)
        base_url = require_https(self.base_url, "SLACK_API_BASE_URL") if self.base_url else WebClient.BASE_URL
        return WebClient(token=self.token, base_url=base_url,
                         timeout=self.timeout_seconds,  # type: ignore[arg-type]  (urllib takes float seconds)
                         retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=retries)])

    def _scrub(self, text: str) -> str:
        return text.replace(self.token, "[token]") if self.token else text

    def conversation(self) -> SlackApiChannel:
        client = self._client()
        probe = SlackApiChannel(client, self.channel, None, max_attempts=self.max_attempts,
                                backoff_seconds=self.backoff_seconds, scrub=self._scrub)
        bot_id = probe._attempt(f"Slack auth.test before publishing to channel {self.channel}",
                                lambda _: client.auth_test().get("bot_id"))
        return SlackApiChannel(client, self.channel, bot_id, max_attempts=self.max_attempts,
                               backoff_seconds=self.backoff_seconds, scrub=self._scrub)

    def check(self) -> str:
        """auth.test, then read one message of the channel: what idempotent posting needs besides
        chat:write (reading history to find earlier messages; the bot must be in the channel)."""
        client = self._client()
        try:
            auth = client.auth_test()
            client.conversations_history(channel=self.channel, limit=1)
        except Exception as exc:
            if not (isinstance(exc, SlackApiError) or _is_retryable(exc)):
                raise
            raise SlackCheckError(self._scrub(f"{self.describe()}: {_explain(exc)}")) from exc
        return f"Slack ok: bot {auth.get('user')} in team {auth.get('team')}, channel {self.channel}"
