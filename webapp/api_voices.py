"""/api/v1/voices: the voice library over HTTP.

    GET    /api/v1/voices               {"voices": [{id, name, language, description, isDefault, ...}],
                                         "nextCursor": str | null}   (?q= filter, ?limit=, ?cursor=)
    POST   /api/v1/voices               multipart: audio (file), transcript?, name?, language?,
                                        description? -> 201 the new voice (runs the ingest pipeline)
    GET    /api/v1/voices/{id}          the voice, transcript and ingest warnings included
    GET    /api/v1/voices/{id}/audio    its reference clip (24 kHz mono 16-bit WAV)
    PATCH  /api/v1/voices/{id}          JSON {name?, description?, language?, transcript?}
    POST   /api/v1/voices/{id}/default  make it the default voice
    DELETE /api/v1/voices/{id}          204

Errors: {"error": {"code", "message"}} with 400 (bad field), 401, 404, 409 (conflict),
413 (upload too large), 422 (the clip was refused: code from the ingest pipeline), 429.
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

from fastapi import APIRouter, Depends, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from ingest import IngestError
from voices_db import (ConflictError, DuplicateVoiceError, InvalidArchiveError, InvalidNameError, LibraryError,
                       VoiceNotFoundError)
from webapp.auth import client_key
from webapp.context import AppContext
from webapp.voices import VoiceActionError, voice_detail, voice_summary


class ApiError(Exception):
    """An HTTP error with a stable code and a message for people (rendered by server.py)."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def library_error(e: LibraryError) -> ApiError:
    """Map a voice-library failure to its HTTP status."""
    if isinstance(e, VoiceNotFoundError):
        return ApiError(404, "VOICE_NOT_FOUND", str(e))
    if isinstance(e, IngestError):
        return ApiError(422, e.code, str(e))
    if isinstance(e, (DuplicateVoiceError, ConflictError)):
        return ApiError(409, "CONFLICT", str(e))
    if isinstance(e, (InvalidNameError, VoiceActionError)):
        return ApiError(400, "INVALID_FIELD", str(e))
    if isinstance(e, InvalidArchiveError):
        return ApiError(422, "INVALID_ARCHIVE", str(e))
    return ApiError(500, "LIBRARY_ERROR", str(e))


def require_token(ctx: AppContext):
    """A FastAPI dependency enforcing API_TOKEN (when set)."""

    def check(request: Request) -> None:
        if not ctx.guard.check(ctx.guard.token_from_headers(request.headers)):
            raise ApiError(401, "UNAUTHORIZED", "this server needs an API token: send 'Authorization: Bearer <token>' "
                           "or 'X-API-Token: <token>'", {"WWW-Authenticate": "Bearer"})

    return check


def build_router(ctx: AppContext) -> APIRouter:
    router = APIRouter(prefix="/api/v1/voices", dependencies=[Depends(require_token(ctx))])
    voices = ctx.voices

    async def call(fn, *args, **kwargs):
        try:
            return await run_in_threadpool(fn, *args, **kwargs)
        except LibraryError as e:
            raise library_error(e) from None

    @router.get("")
    async def list_voices(q: str = "", limit: int = 50, cursor: str | None = None):
        items, next_cursor = await call(voices.search, q, limit, cursor)
        return {"voices": [voice_summary(v) for v in items], "nextCursor": next_cursor}

    @router.post("", status_code=201)
    async def create_voice(request: Request):
        if not ctx.guard.uploads.allow(client_key(request)):
            raise ApiError(429, "RATE_LIMITED", "too many uploads; wait a minute and try again",
                           {"Retry-After": str(int(ctx.guard.uploads.retry_after(client_key(request))) + 1)})
        form = await request.form(max_files=1, max_fields=10)
        audio = form.get("audio")
        if not isinstance(audio, _upload_types()):
            raise ApiError(400, "INVALID_FIELD", "send the clip as a multipart file field named 'audio'")
        fields = {k: form.get(k) for k in ("transcript", "name", "language", "description")}
        if any(v is not None and not isinstance(v, str) for v in fields.values()):
            raise ApiError(400, "INVALID_FIELD", "transcript, name, language and description must be text fields")
        name = (fields["name"] or "").strip() or _name_from_file(audio.filename)
        with tempfile.TemporaryDirectory(prefix="upload-") as tmp:
            path = Path(tmp) / ("upload" + _suffix(audio.filename))
            await _save_upload(audio, path, ctx.guard.max_upload_bytes)
            voice = await call(voices.add, path, name, transcript=fields["transcript"] or None,
                               language=fields["language"] or None, description=fields["description"] or "")
        return JSONResponse(voice_detail(voice), status_code=201, headers={"Location": f"/api/v1/voices/{voice.id}"})

    @router.get("/{voice_id}")
    async def get_voice(voice_id: str):
        return voice_detail(await call(voices.get, voice_id))

    @router.get("/{voice_id}/audio")
    async def get_audio(voice_id: str):
        voice = await call(voices.get, voice_id)
        path = voices.store.audio_path(voice)
        if not path.is_file():
            raise ApiError(404, "AUDIO_MISSING", f"the reference audio of {voice_id!r} is missing on disk")
        return FileResponse(path, media_type="audio/wav", filename=f"{voice.id}.wav")

    @router.patch("/{voice_id}")
    async def edit_voice(voice_id: str, request: Request):
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(400, "INVALID_FIELD", "send a JSON object such as {\"transcript\": \"...\"}") from None
        allowed = {"name", "description", "language", "transcript", "tags"}
        if not isinstance(body, dict) or not body or set(body) - allowed:
            raise ApiError(400, "INVALID_FIELD", f"send a JSON object with some of: {', '.join(sorted(allowed))}")
        return voice_detail(await call(voices.update, voice_id, **body))

    @router.post("/{voice_id}/default")
    async def make_default(voice_id: str):
        return voice_detail(await call(voices.set_default, voice_id))

    @router.delete("/{voice_id}", status_code=204)
    async def delete_voice(voice_id: str):
        await call(voices.delete, voice_id)
        return Response(status_code=204)

    return router


def _upload_types():
    from starlette.datastructures import UploadFile as StarletteUpload

    return (UploadFile, StarletteUpload)


async def _save_upload(upload, path: Path, limit: int) -> None:
    size = 0
    with open(path, "wb") as out:
        while chunk := await upload.read(1 << 20):
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "UPLOAD_TOO_LARGE", f"the upload is larger than {limit // 2**20} MB; "
                               "send a shorter clip (8-15 s of speech is ideal)")
            out.write(chunk)
    if size == 0:
        raise ApiError(400, "INVALID_FIELD", "the uploaded file is empty")


def _suffix(filename: str | None) -> str:
    ext = re.sub(r"[^a-z0-9]", "", Path(filename or "").suffix.lower())[:8]
    return f".{ext}" if ext else ".bin"


def _name_from_file(filename: str | None) -> str:
    stem = Path(filename or "").stem.strip()
    return re.sub(r"[\x00-\x1f]", "", stem)[:100] or "New voice"

