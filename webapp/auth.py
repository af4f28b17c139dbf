"""Access control for the APIs: the optional shared token, rate limits, upload size.

- `API_TOKEN` (or `--api-token`): when set, every API route (/api/v1/*, /v1/*) and every
  voice change in the UI needs it: `Authorization: Bearer <token>` or `X-API-Token`, the
  WebSocket `authToken` field of `start` (or the header / `?token=` when connecting).
- Rate limits: token buckets per client address, one for synthesis requests (WebSocket
  `speak`, OpenAI speech) and one for uploads/imports; plus a message-rate bucket per
  WebSocket connection so a flood of messages cannot keep the server busy.
- Wrong tokens: counted per client address across every route (REST, WebSocket, the
  Gradio page); after `auth_failure_burst` of them a client's tokens are not even compared
  until the bucket refills (`auth_failures_per_minute`), so reconnecting does not reset it.
- Body size: `BodyLimitMiddleware` refuses request bodies above the limit with 413, by
  Content-Length when announced and by counting otherwise: uploads up to the upload limit,
  every other body (JSON, Gradio's queue) up to `MAX_BODY_BYTES`.
"""
from __future__ import annotations

import hmac
import json
import threading
import time
from dataclasses import dataclass, field

DEFAULT_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_BODY_BYTES = 1024 * 1024  # a JSON request: 5,000 characters of text and options fit many times
UPLOAD_PATHS = ("/api/v1/voices", "/gradio_api/upload")  # multipart uploads (exact paths)


class TokenBucket:
    """`rate` tokens per second up to `burst`; `take()` is False when empty."""

    def __init__(self, rate: float, burst: float):
        self.rate, self.burst = float(rate), float(burst)
        self.tokens, self.stamp = float(burst), time.monotonic()

    def available(self) -> float:
        """Tokens in the bucket now (after refilling for the time passed)."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return self.tokens

    def take(self, n: float = 1.0) -> bool:
        if self.available() >= n:
            self.tokens -= n
            return True
        return False

    def retry_after(self) -> float:
        """Seconds until one token is available."""
        return max(0.0, (1.0 - self.tokens) / self.rate) if self.rate > 0 else 60.0


class RateLimiter:
    """Token buckets keyed by client (e.g. its address); rate per minute, burst."""

    def __init__(self, per_minute: float, burst: float):
        self.per_minute, self.burst = per_minute, burst
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        if self.per_minute <= 0:  # 0 = unlimited
            return True
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) > 10000:  # forget idle clients
                    self._buckets = {k: b for k, b in self._buckets.items() if b.tokens < b.burst}
                bucket = self._buckets[key] = TokenBucket(self.per_minute / 60.0, self.burst)
            return bucket.take()

    def retry_after(self, key: str) -> float:
        with self._lock:
            bucket = self._buckets.get(key)
            return bucket.retry_after() if bucket else 0.0

    def exhausted(self, key: str) -> bool:
        """True when `key` has no token left now (takes none)."""
        if self.per_minute <= 0:
            return False
        with self._lock:
            bucket = self._buckets.get(key)
            return bucket is not None and bucket.available() < 1.0


@dataclass
class Guard:
    """The app's access policy (see module docstring)."""

    token: str | None = None
    synth_per_minute: float = 120.0
    synth_burst: float = 20.0
    upload_per_minute: float = 30.0
    upload_burst: float = 10.0
    ws_messages_per_second: float = 50.0
    ws_message_burst: float = 200.0
    auth_failures_per_minute: float = 5.0
    auth_failure_burst: float = 10.0
    max_upload_bytes: int = DEFAULT_UPLOAD_BYTES
    synth: RateLimiter = field(init=False)
    uploads: RateLimiter = field(init=False)
    auth_failures: RateLimiter = field(init=False)

    def __post_init__(self):
        self.token = self.token or None
        self.synth = RateLimiter(self.synth_per_minute, self.synth_burst)
        self.uploads = RateLimiter(self.upload_per_minute, self.upload_burst)
        self.auth_failures = RateLimiter(self.auth_failures_per_minute, self.auth_failure_burst)

    @property
    def required(self) -> bool:
        return self.token is not None

    def check(self, provided: str | None) -> bool:
        """True when no token is configured or `provided` matches it (constant time)."""
        if self.token is None:
            return True
        return isinstance(provided, str) and hmac.compare_digest(provided.encode(), self.token.encode())

    def admit(self, provided: str | None, client: str) -> bool:
        """`check` for a request from `client`, counting its wrong tokens (see module
        docstring); a throttled client is refused whatever it sends. No token is no guess."""
        if self.token is None:
            return True
        if not provided or self.throttled(client):
            return False
        if self.check(provided):
            return True
        self.auth_failures.allow(client)
        return False

    def throttled(self, client: str) -> bool:
        """True while `client` has sent too many wrong tokens."""
        return self.token is not None and self.auth_failures.exhausted(client)

    def token_from_headers(self, headers, query=None) -> str | None:
        """The token a request carries: Bearer header, X-API-Token, or ?token= (WebSocket)."""
        auth = headers.get("authorization") or ""
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        return headers.get("x-api-token") or (query.get("token") if query is not None else None)

    def ws_bucket(self) -> TokenBucket:
        return TokenBucket(self.ws_messages_per_second, self.ws_message_burst)


def client_key(scope_or_request) -> str:
    """The client address used as rate-limit key."""
    client = getattr(scope_or_request, "client", None)
    return client.host if client else "unknown"


class BodyLimitMiddleware:
    """ASGI middleware: 413 for request bodies larger than `max_bytes` on the upload routes
    (`upload_paths`) and larger than `max_other_bytes` on every other route (Gradio's included)."""

    def __init__(self, app, max_bytes: int, max_other_bytes: int = MAX_BODY_BYTES,
                 upload_paths: tuple[str, ...] = UPLOAD_PATHS):
        self.app, self.upload_bytes, self.other_bytes, self.upload_paths = app, max_bytes, max_other_bytes, upload_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.upload_bytes if scope["path"].rstrip("/") in self.upload_paths else self.other_bytes
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                return await self._refuse(send, limit)
        seen = 0
        refused = False

        async def limited_receive():
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    refused = True
                    raise BodyTooLarge()
            return message

        try:
            await self.app(scope, limited_receive, send)
        except BodyTooLarge:
            if refused:
                await self._refuse(send, limit)

    async def _refuse(self, send, limit: int):
        if limit == self.upload_bytes:
            code, message = "UPLOAD_TOO_LARGE", (f"the upload is larger than the limit of {limit / 2**20:.0f} MB; "
                                                 "send a shorter clip (8-15 s of speech is ideal)")
        else:
            code, message = "BODY_TOO_LARGE", f"the request body is larger than the limit of {limit // 1024} KB"
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class BodyTooLarge(Exception):
    """Raised inside the app when the body grows past the limit (caught by the middleware)."""
