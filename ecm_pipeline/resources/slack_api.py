"""Production Slack delivery through the Slack Web API (`slack_sdk.WebClient`), SPEC §2 and §9.

Slack has no idempotency key for `chat.postMessage`, so posting is made idempotent per (message
key, partition) here: every message carries Slack message metadata naming both, and before each
post we look for a message that already carries it (`conversations.history` for the parent,
`conversations.replies` for thread replies) and `chat.update` that one instead.

Retries follow from that. Only HTTP 429 is retried inside slack_sdk: Slack refused that request, so
sending it again cannot post twice. A 5xx, a timeout or a dropped connection may come after Slack
stored the message, so slack_sdk's connection/server-error handlers (which re-send the same
`chat.postMessage`) are not used; those failures are retried here, each retry starting with a fresh
look-up, so a message that did arrive is updated rather than posted again.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import dagster as dg
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import RateLimitErrorRetryHandler
from slack_sdk.web import SlackResponse

from ecm_pipeline.domain.briefing import Message, thread_plan
from ecm_pipeline.resources.slack import EVENT_TYPE, Delivery, SlackDestinationResource, message_metadata

LOOKUP_PAGE_SIZE = 200   # messages per conversations.history / conversations.replies page
LOOKUP_MAX_PAGES = 5     # a re-run looks back over the channel's latest 1,000 top-level messages
BACKOFF_SECONDS = 0.2    # times the attempt number; Dagster's step retries cover longer outages

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


def _is_retryable(exc: Exception) -> bool:
    """5xx, timeouts and dropped connections: the request may or may not have been applied."""
    if isinstance(exc, SlackApiError):
        return exc.response.status_code >= 500
    return isinstance(exc, OSError | http.client.HTTPException)   # URLError, TimeoutError, resets


def _explain(exc: Exception) -> str:
    if isinstance(exc, SlackApiError):
        error = str(exc.response.get("error", "")) or "no error code"
        needed = f" {exc.response.get('needed')}" if exc.response.get("needed") else ""
        hint = f": {_HINTS[error]}{needed}" if error in _HINTS else ""
        return f"{error} (HTTP {exc.response.status_code}){hint}"
    return f"{type(exc).__name__}: {exc}"


@dataclass
class _Conversation:
    """One publish: a client, the channel, and the bot whose earlier messages may be updated."""

    client: WebClient
    channel: str
    bot_id: str | None

    def _pages(self, call: Callable[..., SlackResponse], **params: object) -> Iterator[dict]:
        cursor = None
        for _ in range(LOOKUP_MAX_PAGES):
            page = call(channel=self.channel, limit=LOOKUP_PAGE_SIZE, include_all_metadata=True,
                        cursor=cursor, **params)
            yield from page.get("messages", [])
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return

    def find(self, key: str, partition: str, thread_ts: str | None) -> str | None:
        """The ts of our earlier message for (key, partition), in the channel or in the thread."""
        wanted = message_metadata(key, partition)["event_payload"]
        if thread_ts:
            messages = self._pages(self.client.conversations_replies, ts=thread_ts)
        else:
            messages = self._pages(self.client.conversations_history)
        for m in messages:
            meta = m.get("metadata") or {}
            ours = self.bot_id is None or m.get("bot_id") == self.bot_id
            same = meta.get("event_type") == EVENT_TYPE and meta.get("event_payload") == wanted
            if ours and same and m["ts"] != thread_ts:
                return m["ts"]
        return None

    def deliver(self, message: Message, partition: str, thread_ts: str | None) -> Delivery:
        metadata = message_metadata(message.key, partition)
        earlier = self.find(message.key, partition, thread_ts)
        if earlier:
            # blocks=[] on update removes blocks a previous version had (omitting them keeps them).
            self.client.chat_update(channel=self.channel, ts=earlier, text=message.text, blocks=message.blocks,
                                    metadata=metadata)
            return Delivery(message.key, "chat.update", earlier, f"{self.channel}/{earlier}")
        response = self.client.chat_postMessage(
            channel=self.channel, text=message.text, blocks=message.blocks or None, thread_ts=thread_ts,
            metadata=metadata, unfurl_links=False, unfurl_media=False)
        return Delivery(message.key, "chat.postMessage", response["ts"], f"{self.channel}/{response['ts']}")


class SlackApiResource(SlackDestinationResource):
    """Briefings and alerts posted to a Slack channel with a bot token (production)."""

    token: str
    channel: str
    base_url: str = ""          # empty: slack_sdk's https://slack.com/api/
    timeout_seconds: int = 15
    max_attempts: int = 3

    def describe(self) -> str:
        return f"Slack channel {self.channel} via {self.base_url or WebClient.BASE_URL}"

    def _client(self) -> WebClient:
        # Only 429 is retried by the client (max_attempts calls in all, as for the retries below); see
        # the module docstring for why not 5xx or dropped connections.
        retries = max(self.max_attempts - 1, 0)
        return WebClient(token=self.token, base_url=self.base_url or WebClient.BASE_URL,
                         timeout=self.timeout_seconds,
                         retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=retries)])

    def _scrub(self, text: str) -> str:
        return text.replace(self.token, "[token]") if self.token else text

    def _attempt(self, what: str, fn: Callable[[], T]) -> T:
        """Run `fn`, again (up to max_attempts in all) while it fails in a way that may be transient."""
        attempt = 1
        while True:
            try:
                return fn()
            except Exception as exc:
                if not (isinstance(exc, SlackApiError) or _is_retryable(exc)):
                    raise   # not a Slack or network failure: a bug, shown as is
                if not _is_retryable(exc) or attempt >= self.max_attempts:
                    tries = f"{attempt} attempt{'s' if attempt > 1 else ''}"
                    raise SlackDeliveryError(self._scrub(f"{what} failed after {tries}: {_explain(exc)}")) from exc
                dg.get_dagster_logger().warning(
                    self._scrub(f"{what}: attempt {attempt} failed ({_explain(exc)}); retrying"))
            time.sleep(BACKOFF_SECONDS * attempt)
            attempt += 1

    def publish(self, messages: list[Message], partition: str) -> list[Delivery]:
        """Post (or update) the first message, then the others as replies in its thread. Messages over
        the block limit are split; the parent's extra parts go first in the thread."""
        client = self._client()
        where = f"channel {self.channel}"
        bot_id = self._attempt(f"Slack auth.test before publishing partition {partition} to {where}",
                               lambda: client.auth_test().get("bot_id"))
        conversation = _Conversation(client, self.channel, bot_id)

        def deliver(message: Message, thread_ts: str | None) -> Delivery:
            what = f"Slack delivery of message {message.key!r} for partition {partition} to {where}"
            return self._attempt(what, lambda: conversation.deliver(message, partition, thread_ts))

        head, replies = thread_plan(messages)
        parent = deliver(head, None)
        return [parent] + [deliver(m, parent.ts) for m in replies]

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
