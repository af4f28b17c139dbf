"""The studio page's access rule: the same as the API's, for every Gradio event.

Gradio's queue API lets anyone call any event handler of the page directly, with any
inputs, so hiding a button protects nothing. With `API_TOKEN` set, every handler that reads
or changes the library (or runs the ingest pipeline, or reloads the model) asks `allowed`
first: the token comes from the page's token box, or from the request's own
`Authorization` / `X-API-Token` header (a program calling the queue API). Wrong tokens count
towards the client's failure budget, as on the other routes (`Guard.admit`).
"""
from __future__ import annotations

from webapp.auth import Guard

TOKEN_NEEDED = "⚠ This server requires its access token: enter it at the top of the page."
THROTTLED = "⚠ Too many wrong access tokens from this address: wait a minute, then enter the right one."
LOCKED_LIBRARY = "🔒 Enter the access token at the top of the page (and press Enter) to see the library."
TOO_MANY_UPLOADS = "⚠ Too many clips or archives in a short time: wait a minute and try again."


class PageAccess:
    """`guard`'s rule applied to Gradio requests (see module docstring)."""

    def __init__(self, guard: Guard):
        self.guard = guard

    @property
    def required(self) -> bool:
        return self.guard.required

    def allowed(self, token: str | None, request=None) -> bool:
        """True when no token is configured, or the box or the request carries it."""
        if not self.guard.required:
            return True
        provided = token or (self.guard.token_from_headers(request.headers) if request is not None else None)
        return self.guard.admit(provided or None, _client(request))

    def refusal(self, request=None) -> str:
        """Why `allowed` said no, for a person."""
        return THROTTLED if self.guard.throttled(_client(request)) else TOKEN_NEEDED

    def may_upload(self, request=None) -> bool:
        """The upload rate limit (shared with the REST upload) for processing a clip or an archive."""
        return self.guard.uploads.allow(_client(request))


def _client(request) -> str:
    client = getattr(request, "client", None) if request is not None else None
    return getattr(client, "host", None) or "unknown"
