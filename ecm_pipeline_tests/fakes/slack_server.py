"""A small fake of the Slack Web API on 127.0.0.1, for driving the real `slack_sdk.WebClient`.

It implements the methods the Slack resource uses (auth.test, chat.postMessage, chat.update,
chat.delete, conversations.history, conversations.replies) with Slack's response shapes, checks the
bearer token, records every request, and injects the faults that matter for idempotent posting:
429 with Retry-After (Slack refused the call), 500 (it did not happen), "stored the message, then
the connection dropped" or "... then answered too late" (it happened, but the client cannot know),
and "applied late" (it had not happened when the client gave up and retried, and happens after
the retry: Slack stores a chat.postMessage that outlived the client's timeout).

Timestamps are "1767225600.000001"-style, strictly increasing in the order messages are stored, so
they sort correctly as strings, as Slack's do within a channel.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qsl, urlsplit

from ecm_pipeline_tests.fakes.loopback import HeldRequests, LoopbackFake, LoopbackServer

MAX_BLOCKS = 50
BOT = {"user": "U0ECMBOT", "bot_id": "B0ECMBOT", "app_id": "A0ECMAPP"}
HUMAN = "U0HUMAN"      # the author of `add_foreign_message` messages


@dataclass(frozen=True)
class Request:
    method: str          # Slack method, e.g. chat.postMessage
    body: dict           # JSON body, or form / query fields
    authorized: bool


@dataclass
class _Fault:
    kind: str            # "status", "drop", "stall" or "late"
    remaining: int
    status: int = 0
    retry_after: int = 0
    seconds: float = 0.0


@dataclass
class FakeSlack(LoopbackFake):
    """Start with `start()`, point `SlackApiResource(base_url=fake.url)` at it, `stop()` at the end."""

    url_path = "/api/"

    token: str = "xoxb-test-secret"
    channel: str = "C0TEST"
    team: str = "ECM Test"
    messages: list[dict] = field(default_factory=list)      # every stored message, top level and replies
    files: dict[str, dict] = field(default_factory=dict)    # file id -> name, title, content (once uploaded)
    requests: list[Request] = field(default_factory=list)
    _faults: dict[str, list[_Fault]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _seq: int = 0
    _server: LoopbackServer | None = None
    _held: HeldRequests = field(default_factory=HeldRequests)

    # --- faults ----------------------------------------------------------------------------------
    def rate_limit(self, method: str, times: int = 1, retry_after: int = 1) -> None:
        """Answer the next `times` calls of `method` with 429 and Retry-After (nothing is stored)."""
        self._add(method, _Fault("status", times, 429, retry_after))

    def server_error(self, method: str, times: int = 1, status: int = 500) -> None:
        """Answer the next `times` calls of `method` with a 5xx (nothing is stored)."""
        self._add(method, _Fault("status", times, status))

    def drop_after_store(self, method: str, times: int = 1) -> None:
        """Carry out the next `times` calls of `method`, then close the connection without answering."""
        self._add(method, _Fault("drop", times))

    def stall_after_store(self, method: str, seconds: float, times: int = 1) -> None:
        """Carry out the next `times` calls of `method`, then answer only after `seconds` (a client
        timeout shorter than that gives up although the work was done)."""
        self._add(method, _Fault("stall", times, seconds=seconds))

    def clear_faults(self) -> None:
        """Slack is healthy again: drop every pending fault."""
        with self._lock:
            self._faults.clear()

    def apply_late(self, method: str, seconds: float, times: int = 1) -> None:
        """Hold the next `times` calls of `method` for `seconds` WITHOUT carrying them out, then carry
        them out and answer (to nobody, if the client has hung up). A client timeout shorter than
        `seconds` gives up and may retry; the retry is served at once, and the held call lands after
        it, with a later ts. `wait_idle()` returns once every held call has been carried out."""
        self._add(method, _Fault("late", times, seconds=seconds))

    def _add(self, method: str, fault: _Fault) -> None:
        with self._lock:
            self._faults.setdefault(method, []).append(fault)

    def _next_fault(self, method: str) -> _Fault | None:
        with self._lock:
            queue = self._faults.get(method, [])
            if not queue:
                return None
            fault = queue[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                queue.pop(0)
            return fault

    # --- test controls ---------------------------------------------------------------------------
    def add_foreign_message(self, text: str, thread_ts: str | None = None, metadata: dict | None = None) -> str:
        """Store a message a person (user U0HUMAN, no bot_id) posted in the channel, top level or as a
        reply in the thread of `thread_ts`; returns its ts. The bot may read it but not change it."""
        with self._lock:
            if thread_ts and not any(m["ts"] == thread_ts for m in self.top_level()):
                raise ValueError(f"no thread {thread_ts} to reply in")
            message = {"type": "message", "user": HUMAN, "text": text, "ts": self._next_ts()}
            if metadata is not None:
                message["metadata"] = metadata
            self._store(message, thread_ts)
            return message["ts"]

    # --- views for assertions --------------------------------------------------------------------
    def top_level(self) -> list[dict]:
        """Channel-level messages (thread parents included; replies, even orphaned ones, not)."""
        return [m for m in self.messages if m.get("thread_ts", m["ts"]) == m["ts"]]

    def replies(self, parent_ts: str) -> list[dict]:
        """The stored replies of a thread, also after its parent was deleted."""
        return [m for m in self.messages if m.get("thread_ts") == parent_ts and m["ts"] != parent_ts]

    def calls(self, method: str) -> list[Request]:
        return [r for r in self.requests if r.method == method]

    # --- HTTP --------------------------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        if parts.path.startswith("/upload/"):   # the upload URL files.getUploadURLExternal handed out
            file_id = parts.path.rsplit("/", 1)[-1]
            content = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
            with self._lock:
                known = file_id in self.files
                if known:
                    self.files[file_id]["content"] = content
            return _send(handler, 200 if known else 404, {"ok": known})
        method = parts.path.rsplit("/", 1)[-1]
        body = dict(parse_qsl(parts.query))
        raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        if raw:
            if handler.headers.get("Content-Type", "").startswith("application/json"):
                body.update(json.loads(raw))
            else:
                body.update(parse_qsl(raw.decode()))
        authorized = handler.headers.get("Authorization") == f"Bearer {self.token}"
        with self._lock:
            self.requests.append(Request(method, body, authorized))
        if not authorized:
            return _send(handler, 200, {"ok": False, "error": "invalid_auth"})
        fault = self._next_fault(method)
        if fault and fault.kind == "status":
            headers = {"Retry-After": str(fault.retry_after)} if fault.status == 429 else {}
            error = "ratelimited" if fault.status == 429 else "internal_error"
            return _send(handler, fault.status, {"ok": False, "error": error}, headers)
        api: Callable[[dict], dict] | None = getattr(self, "_api_" + method.replace(".", "_"), None)
        if api is None:
            return _send(handler, 200, {"ok": False, "error": "unknown_method"})
        if fault and fault.kind == "late":
            # Not under _lock while sleeping: the client's retry and look-ups are served meanwhile.
            with self._held.holding():
                time.sleep(fault.seconds)
                with self._lock:
                    answer = api(body)
            handler.close_connection = True
            with contextlib.suppress(OSError):  # the client has usually hung up by now
                _send(handler, 200, answer)
            return None
        with self._lock:
            answer = api(body)
        if fault and fault.kind == "drop":
            handler.close_connection = True     # the work is done; the client never hears of it
            return None
        if fault and fault.kind == "stall":
            time.sleep(fault.seconds)
            with contextlib.suppress(OSError):  # the client has usually hung up by now
                _send(handler, 200, answer)
            return None
        return _send(handler, 200, answer)

    # --- the store (called under the lock) -------------------------------------------------------
    def _next_ts(self) -> str:
        """A ts later than every stored one: assigned when a message is stored, never on arrival."""
        self._seq += 1
        return f"1767225600.{self._seq:06d}"

    def _store(self, message: dict, thread_ts: str | None) -> None:
        if thread_ts:
            message["thread_ts"] = thread_ts
            parent = next(m for m in self.messages if m["ts"] == thread_ts)
            parent["thread_ts"] = thread_ts
            parent["reply_count"] = parent.get("reply_count", 0) + 1
        self.messages.append(message)

    def _find(self, ts: object) -> dict | None:
        return next((m for m in self.messages if m["ts"] == ts), None)

    # --- Slack methods (called under the lock) ---------------------------------------------------
    def _api_auth_test(self, body: dict) -> dict:
        return {"ok": True, "url": "https://ecm-test.slack.com/", "team": self.team, "user": "ecm-bot",
                "team_id": "T0ECMTEST", "user_id": BOT["user"], "bot_id": BOT["bot_id"],
                "is_enterprise_install": False}

    def _check_message(self, body: dict) -> str | None:
        if body.get("channel") != self.channel:
            return "channel_not_found"
        blocks = _json_field(body.get("blocks"))
        if not body.get("text") and not blocks:
            return "no_text"
        if blocks is not None and len(blocks) > MAX_BLOCKS:
            return "invalid_blocks"
        return None

    def _api_chat_postMessage(self, body: dict) -> dict:
        error = self._check_message(body)
        thread_ts = body.get("thread_ts")
        if not error and thread_ts and not any(m["ts"] == thread_ts for m in self.top_level()):
            error = "thread_not_found"
        if error:
            return {"ok": False, "error": error}
        ts = self._next_ts()
        message = {"type": "message", **BOT, "text": body.get("text", ""), "ts": ts}
        if body.get("blocks"):
            message["blocks"] = _json_field(body["blocks"])
        if body.get("metadata"):
            message["metadata"] = _json_field(body["metadata"])
        self._store(message, thread_ts)
        return {"ok": True, "channel": self.channel, "ts": ts, "message": _without_metadata(message)}

    def _api_chat_update(self, body: dict) -> dict:
        error = self._check_message(body)
        message = self._find(body.get("ts"))
        if not error and message is None:
            error = "message_not_found"
        if not error and message.get("bot_id") != BOT["bot_id"]:
            error = "cant_update_message"     # a bot token may only edit the bot's own messages
        if error:
            return {"ok": False, "error": error}
        message["text"] = body.get("text", "")
        if "blocks" in body:
            message["blocks"] = _json_field(body["blocks"])
        if body.get("metadata"):
            message["metadata"] = _json_field(body["metadata"])
        return {"ok": True, "channel": self.channel, "ts": message["ts"], "text": message["text"],
                "message": _without_metadata(message)}

    def _api_chat_delete(self, body: dict) -> dict:
        if body.get("channel") != self.channel:
            return {"ok": False, "error": "channel_not_found"}
        message = self._find(body.get("ts"))
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        if message.get("bot_id") != BOT["bot_id"]:
            return {"ok": False, "error": "cant_delete_message"}  # a bot token deletes only its own
        self.messages.remove(message)
        # A deleted parent's replies stay, pointing at its ts. A deleted reply no longer counts; a
        # parent whose last reply went is a plain message again.
        parent_ts = message.get("thread_ts")
        parent = self._find(parent_ts) if parent_ts and parent_ts != message["ts"] else None
        if parent is not None:
            parent["reply_count"] = parent.get("reply_count", 1) - 1
            if parent["reply_count"] <= 0:
                del parent["reply_count"], parent["thread_ts"]
        return {"ok": True, "channel": self.channel, "ts": message["ts"]}

    def _api_files_getUploadURLExternal(self, body: dict) -> dict:
        file_id = f"F{len(self.files) + 1:08d}"
        self.files[file_id] = {"name": body.get("filename", ""), "length": int(body.get("length") or 0)}
        port = self._server.port if self._server else 0
        return {"ok": True, "upload_url": f"http://127.0.0.1:{port}/upload/{file_id}", "file_id": file_id}

    def _api_files_completeUploadExternal(self, body: dict) -> dict:
        entries = _json_field(body.get("files")) or []
        if body.get("channel_id") != self.channel:
            return {"ok": False, "error": "channel_not_found"}
        thread_ts = body.get("thread_ts")
        if thread_ts and not any(m["ts"] == thread_ts for m in self.top_level()):
            return {"ok": False, "error": "thread_not_found"}
        shared = []
        for entry in entries:
            stored = self.files.get(entry.get("id"))
            if stored is None or "content" not in stored:
                return {"ok": False, "error": "file_not_found"}
            stored["title"] = entry.get("title") or stored["name"]
            shared.append({"id": entry["id"], "name": stored["name"], "title": stored["title"]})
        message = {"type": "message", "user": BOT["user"], "text": body.get("initial_comment", ""),
                   "ts": self._next_ts(), "files": shared}   # a file share is the bot user's, without bot_id
        self._store(message, thread_ts)
        return {"ok": True, "files": shared}

    def _api_conversations_history(self, body: dict) -> dict:
        if body.get("channel") != self.channel:
            return {"ok": False, "error": "channel_not_found"}
        newest_first = sorted(self.top_level(), key=lambda m: m["ts"], reverse=True)
        return _page(newest_first, body)

    def _api_conversations_replies(self, body: dict) -> dict:
        if body.get("channel") != self.channel:
            return {"ok": False, "error": "channel_not_found"}
        parent = next((m for m in self.top_level() if m["ts"] == body.get("ts")), None)
        if parent is None:
            return {"ok": False, "error": "thread_not_found"}
        return _page([parent] + sorted(self.replies(parent["ts"]), key=lambda m: m["ts"]), body)


def _json_field(value: object) -> object:
    """Form-encoded calls carry blocks and metadata as JSON strings; JSON calls as objects."""
    return json.loads(value) if isinstance(value, str) else value


def _without_metadata(message: dict) -> dict:
    return {k: v for k, v in message.items() if k != "metadata"}


def _page(messages: list[dict], body: dict) -> dict:
    """One page of messages with Slack's cursor paging; metadata only with include_all_metadata."""
    start = int(body.get("cursor") or 0)
    limit = int(body.get("limit") or 100)
    with_metadata = str(body.get("include_all_metadata", "")).lower() in ("1", "true")
    page = [m if with_metadata else _without_metadata(m) for m in messages[start:start + limit]]
    more = start + limit < len(messages)
    return {"ok": True, "messages": [dict(m) for m in page], "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""}}


def _send(handler: BaseHTTPRequestHandler, status: int, payload: dict, headers: dict | None = None) -> None:
    data = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json; charset=utf-8")
    handler.send_header("Content-Length", str(len(data)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)
