"""The transport both fake APIs share: an HTTP server on 127.0.0.1 (a free port) in a background
thread, the start/stop/url lifecycle of a fake built on it, and the bookkeeping of "late apply"
faults (requests held back and applied only after the client gave up), so a test can wait for them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class LoopbackServer:
    def __init__(self, handle: Callable[[BaseHTTPRequestHandler], None]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                handle(self)

            do_POST = do_PUT = do_GET

            def log_message(self, *args: object) -> None:
                """Quiet: the test output is for the tests."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class HeldRequests:
    """How many requests a late-apply fault is holding (received, not applied yet).

    Each request is served on its own thread, so holding one sleeps only that thread: the client's
    retry and its look-ups are answered meanwhile. The count is kept under a Condition so that
    `wait_idle` wakes up the moment the last held request has been applied, without polling."""

    def __init__(self) -> None:
        self._pending = 0
        self._changed = threading.Condition()

    @contextmanager
    def holding(self) -> Iterator[None]:
        """Count one request as held for the duration of the block (its sleep and its apply)."""
        with self._changed:
            self._pending += 1
        try:
            yield
        finally:  # also when applying failed, or `wait_idle` would wait for nothing
            with self._changed:
                self._pending -= 1
                self._changed.notify_all()

    def wait_idle(self, timeout: float) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: self._pending == 0, timeout):
                raise TimeoutError(f"{self._pending} held request(s) still not applied after {timeout:g}s")


class LoopbackFake:
    """Mixin for a fake API: answers every request with `self._handle(handler)`; `url_path` is the
    path the client's base URL ends with. The subclass declares `_server: LoopbackServer | None = None`
    and `_held: HeldRequests = field(default_factory=HeldRequests)`."""

    url_path = ""
    _server: LoopbackServer | None
    _held: HeldRequests

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        self._server = LoopbackServer(self._handle)
        return self

    def stop(self) -> None:
        if self._server:
            self._server.stop()
            self._server = None

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Return once every request held by a late-apply fault has been applied (at once if none is
        held); raise TimeoutError if that takes longer than `timeout` seconds. Requests that have not
        arrived yet are not waited for: call this after the client call that was held has returned."""
        self._held.wait_idle(timeout)

    @property
    def url(self) -> str:
        assert self._server, "start() the fake first"
        return f"http://127.0.0.1:{self._server.port}{self.url_path}"
