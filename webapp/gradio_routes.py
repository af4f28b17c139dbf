"""Gradio's own routes obey the API's limits: the upload rate, and file inputs only from
Gradio's upload folder.

Gradio copies every file named in an event's inputs into its cache before any handler
runs. Its check that such a file was uploaded by a user is skipped when the UI is mounted on
FastAPI (`mount_gradio_app` leaves `Blocks.has_launched` False), so any path the server can
read (or any URL) sent through the queue API would be copied and handed to the handlers.
This middleware makes that check itself, before Gradio sees the request: a file object
(`{"path": ...}`, at any depth of the JSON body) must lie in the upload folder. The answer
is the same whether or not the path exists. Body sizes are bounded by `BodyLimitMiddleware`
(outside this one), so buffering a body here is bounded too.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from webapp.auth import Guard

GRADIO_PREFIX = "/gradio_api/"
UPLOAD_ROUTE = "/gradio_api/upload"


def upload_folder() -> Path:
    """Where Gradio keeps uploads and its cache (GRADIO_TEMP_DIR, else TMP/gradio)."""
    from gradio.utils import get_upload_folder

    return Path(os.path.realpath(get_upload_folder()))


def in_upload_folder(path: str) -> bool:
    """True for a local path inside the upload folder (links resolved, nothing opened)."""
    if not isinstance(path, str) or "://" in path or "\x00" in path:
        return False
    return Path(os.path.realpath(path)).is_relative_to(upload_folder())


def foreign_files(value) -> list[str]:
    """The file paths in a JSON value that are not in the upload folder."""
    found = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "path" in item and not in_upload_folder(item["path"]):
                found.append(str(item["path"])[:200])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


class GradioRoutesMiddleware:
    """ASGI middleware for the /gradio_api/ routes (see module docstring)."""

    def __init__(self, app, guard: Guard):
        self.app, self.guard = app, guard

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or scope.get("method") != "POST" or not path.startswith(GRADIO_PREFIX):
            return await self.app(scope, receive, send)
        if path.rstrip("/") == UPLOAD_ROUTE:
            key = client_key_of(scope)
            if not self.guard.uploads.allow(key):
                wait = int(self.guard.uploads.retry_after(key)) + 1
                return await _refuse(send, 429, "RATE_LIMITED", "too many uploads; wait a minute and try again",
                                     [(b"retry-after", str(wait).encode())])
            return await self.app(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            more = message.get("more_body", False)
        try:
            payload = json.loads(body) if body else None
        except (ValueError, RecursionError):
            payload = None  # not JSON: Gradio answers it (it has no files for us to check)
        if payload is not None and foreign_files(payload):
            return await _refuse(send, 403, "FILE_NOT_UPLOADED", "file inputs must be files uploaded through "
                                 f"{UPLOAD_ROUTE}; a server path or a URL is not accepted")
        delivered = False

        async def replay():
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def client_key_of(scope) -> str:
    """The client address of an ASGI scope (the rate-limit key, as `auth.client_key`)."""
    client = scope.get("client")
    return client[0] if client else "unknown"


async def _refuse(send, status: int, code: str, message: str, headers=()):
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})
