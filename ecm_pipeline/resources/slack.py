"""Slack delivery. Local default: the outbox `$ECM_HOME/outbox/`, one JSON file per API call with
the exact `chat.postMessage` / `chat.update` / `chat.delete` arguments, plus a readable `.txt`
beside it. Production: the Slack Web API (`slack_api.py`), behind the same interface.

Every message carries Slack message metadata naming (message key, partition), its identity. Slack
has no idempotency key, and a post can be stored after the client gave up on it (a timeout, a
dropped connection, a killed process), so delivery converges instead of merely retrying: before
and after posting, `publish` lists every copy of each of its messages for the partition, keeps the
earliest, deletes the others with their replies, and deletes thread replies of its own that the
current plan no longer has (say an agent who lost all tickets on a re-run). A re-run therefore
updates the one briefing and never adds a second, and a late copy is removed by the next run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from pydantic import Field

from ecm_pipeline.domain.briefing import Message, thread_plan
from ecm_pipeline.osutil import os_problem
from ecm_pipeline.settings import ecm_home

EVENT_TYPE = "ecm_message"


@dataclass(frozen=True)
class Delivery:
    key: str
    method: str        # chat.postMessage or chat.update
    ts: str
    record: str        # where the call was recorded / the permalink-ish location


@dataclass(frozen=True)
class Posted:
    """One of our messages as the channel holds it."""

    ts: str
    key: str
    partition: str
    thread_ts: str | None = None


def message_metadata(key: str, partition: str) -> dict:
    return {"event_type": EVENT_TYPE, "event_payload": {"message": key, "partition": partition}}


def identity(metadata: object) -> tuple[str, str] | None:
    """(message key, partition) of one of our messages, from its metadata; None for anything else."""
    if not isinstance(metadata, dict) or metadata.get("event_type") != EVENT_TYPE:
        return None
    payload = metadata.get("event_payload") or {}
    if not isinstance(payload, dict) or "message" not in payload or "partition" not in payload:
        return None
    return str(payload["message"]), str(payload["partition"])


def _ts_order(posted: Posted) -> tuple[float, str]:
    return float(posted.ts), posted.ts


class Channel(ABC):
    """The primitives a destination offers; the convergence logic is `publish`, shared by all."""

    @abstractmethod
    def top_level(self, partition: str) -> list[Posted]:
        """Our top-level messages for the partition (any key), as the channel holds them now."""

    @abstractmethod
    def replies(self, parent_ts: str, partition: str) -> list[Posted]:
        """Our replies for the partition in the thread under `parent_ts`."""

    @abstractmethod
    def post(self, message: Message, partition: str, thread_ts: str | None) -> Delivery: ...

    @abstractmethod
    def update(self, ts: str, message: Message, partition: str) -> Delivery: ...

    @abstractmethod
    def delete(self, ts: str) -> None: ...

    def _keep_earliest(self, copies: list[Posted], partition: str, with_replies: bool) -> Posted:
        """Keep the earliest copy; delete the later ones (and, for parents, their replies)."""
        keep, *extra = sorted(copies, key=_ts_order)
        for copy in extra:
            if with_replies:
                for reply in self.replies(copy.ts, partition):
                    self.delete(reply.ts)
            self.delete(copy.ts)
        return keep

    def _parent(self, head: Message, partition: str) -> Posted | None:
        copies = [p for p in self.top_level(partition) if p.key == head.key]
        return self._keep_earliest(copies, partition, with_replies=True) if copies else None

    def publish(self, messages: list[Message], partition: str) -> list[Delivery]:
        """Post (or update) the first message, then the others as replies in its thread, converging
        every copy to one. Messages over the block limit are split; the parent's extra parts go
        first in the thread."""
        head, planned = thread_plan(messages)
        parent = self._parent(head, partition)
        if parent:
            first = self.update(parent.ts, head, partition)
        else:
            first = self.post(head, partition, None)
            # A copy stored late by an earlier attempt may be the earliest: converge before threading.
            parent = self._parent(head, partition) or Posted(first.ts, head.key, partition)
            if parent.ts != first.ts:
                first = self.update(parent.ts, head, partition)
        deliveries = [first]
        existing: dict[str, list[Posted]] = {}
        for reply in self.replies(parent.ts, partition):
            existing.setdefault(reply.key, []).append(reply)
        wanted = {m.key for m in planned}
        for key, copies in existing.items():
            if key not in wanted:          # no longer in the plan: remove what an earlier run posted
                for copy in copies:
                    self.delete(copy.ts)
        for message in planned:
            copies = existing.get(message.key)
            if copies:
                kept = self._keep_earliest(copies, partition, with_replies=False)
                deliveries.append(self.update(kept.ts, message, partition))
            else:
                deliveries.append(self.post(message, partition, parent.ts))
        self._converge_replies(parent.ts, partition)
        return deliveries

    def _converge_replies(self, parent_ts: str, partition: str) -> None:
        by_key: dict[str, list[Posted]] = {}
        for reply in self.replies(parent_ts, partition):
            by_key.setdefault(reply.key, []).append(reply)
        for copies in by_key.values():
            if len(copies) > 1:
                self._keep_earliest(copies, partition, with_replies=False)

    @abstractmethod
    def files_in_thread(self, thread_ts: str) -> set[str]:
        """The names of the files shared in the thread under `thread_ts`."""

    @abstractmethod
    def upload(self, content: bytes, filename: str, title: str, thread_ts: str) -> Delivery: ...

    def attach(self, content: bytes, filename: str, title: str, thread_ts: str) -> Delivery | None:
        """Share a file in a thread once: a file of that name already there (an earlier run of the
        partition put it there) is left as it is. The file name carries the partition."""
        if filename in self.files_in_thread(thread_ts):
            return None
        return self.upload(content, filename, title, thread_ts)

    def find(self, key: str, partition: str) -> str | None:
        """The ts of our top-level message for (key, partition), if there is one."""
        copies = sorted((p for p in self.top_level(partition) if p.key == key), key=_ts_order)
        return copies[0].ts if copies else None


class SlackDestinationResource(dg.ConfigurableResource, ABC):
    """Where briefings and alerts go, whichever backs it: `publish(messages, partition)` posts the
    first message and threads the others under it, converging to one copy per (message, partition)."""

    @abstractmethod
    def conversation(self) -> Channel: ...

    def publish(self, messages: list[Message], partition: str) -> list[Delivery]:
        return self.conversation().publish(messages, partition)

    def find(self, key: str, partition: str) -> str | None:
        return self.conversation().find(key, partition)

    @abstractmethod
    def describe(self) -> str: ...

    @abstractmethod
    def check(self) -> str: ...


class OutboxError(Exception):
    """The outbox cannot be written; names the path."""


class Outbox(Channel):
    """The local stand-in for a Slack channel: a directory of recorded API calls. The channel's
    state is the replay of those calls; a record that cannot be read is moved to `quarantine/`
    with a warning, never a reason for a run to fail."""

    def __init__(self, directory: Path, channel: str) -> None:
        self.dir = directory
        self.channel = channel

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _calls(self) -> list[tuple[Path, dict]]:
        if not self.dir.exists():
            return []
        calls = []
        for path in sorted(self.dir.glob("*.json")):
            try:
                args = json.loads(path.read_text())
                if not isinstance(args, dict):
                    raise ValueError("not a JSON object")
            except (ValueError, OSError) as exc:
                self._quarantine(path, exc)
                continue
            calls.append((path, args))
        return calls

    def _quarantine(self, path: Path, problem: Exception) -> None:
        target = self.dir / "quarantine" / path.name
        target.parent.mkdir(exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.replace(path, target)
            with contextlib.suppress(FileNotFoundError):
                os.replace(path.with_suffix(".txt"), target.with_suffix(".txt"))
        dg.get_dagster_logger("outbox").warning(f"outbox record {path} is unreadable ({problem}); moved to {target}")

    def _messages(self) -> dict[str, dict]:
        """ts -> the message as the channel holds it now (replaying post, update and delete)."""
        messages: dict[str, dict] = {}
        for path, args in self._calls():
            if args.get("channel") != self.channel:
                continue
            method = path.name.split("-")[1] if path.name.count("-") >= 2 else ""
            ts = args.get("ts") or path.stem.rsplit("-", 1)[-1]
            if method == "chat.postMessage":
                messages[ts] = dict(args)
            elif method == "chat.update" and ts in messages:
                messages[ts] = {**messages[ts], **{k: v for k, v in args.items() if k != "ts"}}
            elif method == "chat.delete":
                messages.pop(ts, None)
        return messages

    def _ours(self, partition: str, thread_ts: str | None) -> list[Posted]:
        out = []
        for ts, args in self._messages().items():
            who = identity(args.get("metadata"))
            if who and who[1] == partition and args.get("thread_ts") == thread_ts:
                out.append(Posted(ts, who[0], who[1], thread_ts))
        return out

    def top_level(self, partition: str) -> list[Posted]:
        return self._ours(partition, None)

    def replies(self, parent_ts: str, partition: str) -> list[Posted]:
        return self._ours(partition, parent_ts)

    def _record(self, method: str, args: dict, ts: str) -> Path:
        """Write one call atomically (a temporary file renamed into place) under the outbox lock."""
        try:
            with self._locked():
                seq = len(list(self.dir.glob("*.json"))) + len(list(self.dir.glob("quarantine/*.json"))) + 1
                path = self.dir / f"{seq:04d}-{method}-{ts}.json"
                text = args.get("text", "")
                thread = f" (thread {args['thread_ts']})" if args.get("thread_ts") else ""
                who = identity(args.get("metadata"))
                header = [f"{method} -> {args['channel']}{thread}", f"ts: {ts}",
                          f"message: {who[0] if who else '-'}", "-" * 60]
                for target, content in ((path.with_suffix(".txt"), "\n".join(header) + "\n" + text + "\n"),
                                        (path, json.dumps(args, indent=2, ensure_ascii=False))):
                    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
                    try:
                        tmp.write_text(content)
                        os.replace(tmp, target)
                    finally:
                        with contextlib.suppress(FileNotFoundError):
                            tmp.unlink()
                return path
        except OSError as exc:
            raise OutboxError(f"cannot write the outbox: {os_problem(exc, self.dir)}") from None

    def post(self, message: Message, partition: str, thread_ts: str | None) -> Delivery:
        args = {"channel": self.channel, "text": message.text, "blocks": message.blocks,
                "metadata": message_metadata(message.key, partition), "unfurl_links": False}
        if thread_ts:
            args["thread_ts"] = thread_ts
        ts = f"{time.time():.6f}"
        path = self._record("chat.postMessage", args, ts)
        return Delivery(message.key, "chat.postMessage", ts, str(path))

    def update(self, ts: str, message: Message, partition: str) -> Delivery:
        args = {"channel": self.channel, "ts": ts, "text": message.text, "blocks": message.blocks,
                "metadata": message_metadata(message.key, partition)}
        path = self._record("chat.update", args, ts)
        return Delivery(message.key, "chat.update", ts, str(path))

    def delete(self, ts: str) -> None:
        self._record("chat.delete", {"channel": self.channel, "ts": ts}, ts)

    def files_in_thread(self, thread_ts: str) -> set[str]:
        return {args.get("filename", "") for path, args in self._calls()
                if path.name.split("-")[1:2] == ["files.upload_v2"] and args.get("channel") == self.channel
                and args.get("thread_ts") == thread_ts}

    def upload(self, content: bytes, filename: str, title: str, thread_ts: str) -> Delivery:
        """Record the `files_upload_v2` call; the file itself lands beside it (same name, its suffix)."""
        ts = f"{time.time():.6f}"
        args = {"channel": self.channel, "thread_ts": thread_ts, "filename": filename, "title": title,
                "text": f"[file {filename}: {title}]"}
        path = self._record("files.upload_v2", args, ts)
        target = path.with_suffix(Path(filename).suffix or ".bin")
        try:
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_bytes(content)
            os.replace(tmp, target)
        except OSError as exc:
            raise OutboxError(f"cannot write the outbox: {os_problem(exc, self.dir)}") from None
        return Delivery(filename, "files.upload_v2", ts, str(target))


class SlackResource(SlackDestinationResource):
    """The local stand-in: the outbox `$ECM_HOME/outbox/`."""

    channel: str = Field(default="#ecm-triage", description="The channel the outbox stands for.")
    outbox_dir: str = ""

    def conversation(self) -> Outbox:
        return Outbox(Path(self.outbox_dir) if self.outbox_dir else ecm_home() / "outbox", self.channel)

    def describe(self) -> str:
        return f"local outbox {self.conversation().dir} (channel {self.channel})"

    def check(self) -> str:
        outbox = self.conversation()
        try:
            outbox.dir.mkdir(parents=True, exist_ok=True)
            probe = outbox.dir / f".ecm-check-{os.getpid()}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise OutboxError(f"cannot write the outbox: {os_problem(exc, outbox.dir)}") from None
        return f"{self.describe()}: writable"
