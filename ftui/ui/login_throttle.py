"""Login throttling: an ASGI middleware in front of Gradio's /login that slows down password guessing per client."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

FREE_ATTEMPTS = 5  # wrong passwords a client may type before it has to wait
BASE_DELAY_S = 1.0  # the first wait; each further failure doubles it
MAX_DELAY_S = 900.0  # the longest wait (15 minutes)
MAX_CLIENTS = 10_000  # clients remembered (oldest forgotten first), so a flood of addresses cannot fill memory
LOGIN_PATHS = ("/login", "/login/")


@dataclass
class _Client:
    failures: int = 0
    locked_until: float = 0.0
    pending: int = 0  # attempts admitted whose answer has not come back yet


class LoginThrottle:
    """Per-client backoff on failed logins: after FREE_ATTEMPTS failures a client must wait BASE_DELAY_S, doubling with
    each further failure up to MAX_DELAY_S; while it waits, /login answers 429 with Retry-After without checking the
    password. A successful login clears the client's record."""

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        clock: Callable[[], float] = time.monotonic,
        free_attempts: int = FREE_ATTEMPTS,
        base_delay_s: float = BASE_DELAY_S,
        max_delay_s: float = MAX_DELAY_S,
    ) -> None:
        self.app = app
        self.clock = clock
        self.free_attempts = free_attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self._clients: OrderedDict[str, _Client] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def client_key(scope: Scope) -> str:
        """The client's address. Behind a proxy, uvicorn has already put the forwarded client address here for the
        proxies listed in FORWARDED_ALLOW_IPS (X-Forwarded-For from anyone else is ignored: it could be forged)."""
        client = scope.get("client")
        return str(client[0]) if client else "unknown"

    def wait_s(self, key: str) -> float:
        """Seconds this client must still wait before its next login attempt (0 when it may try now)."""
        with self._lock:
            c = self._clients.get(key)
            return max(0.0, c.locked_until - self.clock()) if c else 0.0

    def _admit(self, key: str) -> float:
        """Reserve one password check for this client, or say how long it must wait. Checking and reserving under one
        lock keeps parallel guesses to the allowance: without it, 1,000 simultaneous requests would all see "no wait"
        before the first failure was recorded."""
        with self._lock:
            c = self._clients.pop(key, None) or _Client()
            self._clients[key] = c
            while len(self._clients) > MAX_CLIENTS:
                self._clients.popitem(last=False)
            wait = c.locked_until - self.clock()
            if wait > 0:
                return wait
            if c.pending >= max(1, self.free_attempts - c.failures):
                return self.base_delay_s  # the allowance is already in flight; try again once those are answered
            c.pending += 1
            return 0.0

    def _record(self, key: str, ok: bool | None) -> None:
        """Settle a reserved check: True forgets the client's failures, False counts one, None (no verdict) neither."""
        with self._lock:
            c = self._clients.pop(key, None) or _Client()
            c.pending = max(0, c.pending - 1)
            if ok:
                if c.pending:
                    c.failures, c.locked_until = 0, 0.0
                    self._clients[key] = c
                return
            if ok is None:
                self._clients[key] = c
                return
            c.failures += 1
            over = c.failures - self.free_attempts
            if over >= 0:
                c.locked_until = self.clock() + min(self.max_delay_s, self.base_delay_s * 2**over)
                wait = c.locked_until - self.clock()
                log.warning("login: %d failed attempts from %s; next try in %.0f s", c.failures, key, wait)
            self._clients[key] = c
            while len(self._clients) > MAX_CLIENTS:
                self._clients.popitem(last=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http" or scope.get("method") != "POST" or scope.get("path") not in LOGIN_PATHS:
            await self.app(scope, receive, send)
            return
        key = self.client_key(scope)
        wait = self._admit(key)
        if wait > 0:
            body = b'{"detail": "Too many failed logins from this address. Wait, then try again."}'
            await send(
                {
                    "type": "http.response.start",
                    "status": 429,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"retry-after", str(math.ceil(wait)).encode()),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        status: dict[str, int] = {}

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        verdict: bool | None = None
        try:
            await self.app(scope, receive, watch)
            code = status.get("code", 500)
            if code == 200:
                verdict = True
            elif 400 <= code < 500:
                verdict = False  # Gradio answers a wrong password with 400
        finally:
            self._record(key, verdict)
