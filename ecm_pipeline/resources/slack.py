"""Slack delivery. Local default: the outbox `$ECM_HOME/outbox/`, one JSON file per API call with
the exact `chat.postMessage` / `chat.update` arguments, plus a readable `.txt` beside it.

Posting is idempotent per (message, partition): every message carries Slack message metadata
naming both, and a re-run finds its earlier message and updates it instead of posting again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg

from ecm_pipeline.domain.briefing import Message, thread_plan
from ecm_pipeline.resources.lake import writable
from ecm_pipeline.settings import ecm_home

EVENT_TYPE = "ecm_message"


@dataclass(frozen=True)
class Delivery:
    key: str
    method: str        # chat.postMessage or chat.update
    ts: str
    record: str        # where the call was recorded / the permalink-ish location


def posting_blocked(run_tags: Mapping[str, str], tick: datetime, max_age_hours: float) -> str | None:
    """Why a run must not post (backfills and old ticks never post), or None."""
    if run_tags.get("dagster/backfill"):
        return "backfill runs never post"
    age = datetime.now(UTC) - tick
    if age > timedelta(hours=max_age_hours):
        hours = age.total_seconds() / 3600
        return f"tick is {hours:.0f} h old (only ticks up to {max_age_hours:.0f} h old are briefed)"
    return None


def message_metadata(key: str, partition: str) -> dict:
    return {"event_type": EVENT_TYPE, "event_payload": {"message": key, "partition": partition}}


class Outbox:
    def __init__(self, directory: Path, channel: str) -> None:
        self.dir = directory
        self.channel = channel

    def _calls(self) -> list[tuple[Path, dict]]:
        if not self.dir.exists():
            return []
        return [(p, json.loads(p.read_text())) for p in sorted(self.dir.glob("*.json"))]

    def find(self, key: str, partition: str) -> str | None:
        """The ts of the message posted earlier for (key, partition), as Slack metadata finds it."""
        wanted = message_metadata(key, partition)
        for path, args in self._calls():
            posted = "chat.postMessage" in path.name and args.get("channel") == self.channel
            if posted and args.get("metadata") == wanted:
                return path.stem.rsplit("-", 1)[-1]
        return None

    def _record(self, method: str, args: dict, ts: str) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        seq = len(list(self.dir.glob("*.json"))) + 1
        path = self.dir / f"{seq:04d}-{method}-{ts}.json"
        path.write_text(json.dumps(args, indent=2, ensure_ascii=False))
        thread = f" (thread {args['thread_ts']})" if args.get("thread_ts") else ""
        header = [f"{method} -> {args['channel']}{thread}", f"ts: {ts}",
                  f"message: {args['metadata']['event_payload']['message']}", "-" * 60]
        path.with_suffix(".txt").write_text("\n".join(header) + "\n" + args["text"] + "\n")
        return path

    def deliver(self, message: Message, partition: str, thread_ts: str | None) -> Delivery:
        args = {"channel": self.channel, "text": message.text, "blocks": message.blocks,
                "metadata": message_metadata(message.key, partition), "unfurl_links": False}
        if thread_ts:
            args["thread_ts"] = thread_ts
        earlier = self.find(message.key, partition)
        if earlier:
            args = {k: v for k, v in args.items() if k not in ("thread_ts", "unfurl_links")} | {"ts": earlier}
            path = self._record("chat.update", args, earlier)
            return Delivery(message.key, "chat.update", earlier, str(path))
        ts = f"{time.time():.6f}"
        path = self._record("chat.postMessage", args, ts)
        return Delivery(message.key, "chat.postMessage", ts, str(path))


class SlackDestinationResource(dg.ConfigurableResource):
    """Where briefings and alerts go, whichever backs it: `publish(messages, partition)` posts the
    first message and threads the others under it, idempotently per (message, partition)."""

    def publish(self, messages: list[Message], partition: str) -> list[Delivery]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def check(self) -> str:
        raise NotImplementedError


class SlackResource(SlackDestinationResource):
    """The local stand-in: the outbox `$ECM_HOME/outbox/`."""

    channel: str = "#ecm-triage"
    outbox_dir: str = ""

    def outbox(self) -> Outbox:
        return Outbox(Path(self.outbox_dir) if self.outbox_dir else ecm_home() / "outbox", self.channel)

    def describe(self) -> str:
        return f"local outbox {self.outbox().dir} (channel {self.channel})"

    def check(self) -> str:
        return f"{self.describe()}: {writable(self.outbox().dir)}"

    def publish(self, messages: list[Message], partition: str) -> list[Delivery]:
        """Post (or update) the first message, then the others as replies in its thread."""
        outbox = self.outbox()
        head, replies = thread_plan(messages)
        parent = outbox.deliver(head, partition, None)
        return [parent] + [outbox.deliver(m, partition, parent.ts) for m in replies]
