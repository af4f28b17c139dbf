"""POST /v1/audio/speech: the OpenAI speech endpoint, so existing clients work unchanged.

Request JSON: model (any string: there is one model), input (the text), voice (a library
voice id; an unknown one, such as "alloy", falls back to the default voice and the
X-Voice-Fallback header says so), response_format (mp3 default, wav, pcm, flac, opus,
aac), speed (only 1.0: anything else is a 400, since the model has no tempo control),
instructions (refused: Base models do not follow instructions), stream_format ("audio"
only). Extensions: language, seed, mode ("auto" | "icl" | "xvector").

The audio is streamed as it is generated: pcm is raw 24 kHz 16-bit little-endian mono,
wav is that behind a header of unknown length, the other formats go through ffmpeg.
Errors use OpenAI's shape: {"error": {"message", "type", "param", "code"}}.
"""
from __future__ import annotations

import asyncio
import logging
import math
import uuid

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from engine.errors import EngineError, InvalidParameterError
from engine.text_split import InvalidTextError, validate_text
from engine.worker import BusyError, WorkerStoppedError
from voices_db import LibraryError
from webapp.api_voices import ApiError, require_token
from webapp.audio_out import FFMPEG_FORMATS, MODEL_RATE, FfmpegStream, PcmEncoder, wav_header
from webapp.auth import client_key
from webapp.context import AppContext
from webapp.model_host import ModelUnavailableError
from webapp.voices import MODES

log = logging.getLogger(__name__)

FORMATS = ("mp3", "wav", "pcm", "flac", "opus", "aac")
MEDIA_TYPES = {"wav": "audio/wav", "pcm": "audio/L16;rate=24000;channels=1",
               **{k: v[1] for k, v in FFMPEG_FORMATS.items()}}


class OpenAIError(ApiError):
    """An ApiError rendered in OpenAI's error shape (with `param`)."""

    def __init__(self, status: int, code: str, message: str, param: str | None = None, headers=None):
        super().__init__(status, code, message, headers)
        self.param = param


def parse_body(body) -> dict:
    """Validate the request JSON; returns the normalized options."""
    if not isinstance(body, dict):
        raise OpenAIError(400, "invalid_request", "the body must be a JSON object with at least 'input'")
    text = body.get("input")
    if not isinstance(text, str):
        raise OpenAIError(400, "invalid_request", "'input' (the text to speak) is required and must be a string", "input")
    try:
        text = validate_text(text)
    except InvalidTextError as e:
        raise OpenAIError(400, "INVALID_TEXT", str(e), "input") from None
    for name in ("model", "voice", "language", "mode", "instructions"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise OpenAIError(400, "invalid_request", f"'{name}' must be a string", name)
    fmt = body.get("response_format") or "mp3"
    if fmt not in FORMATS:
        raise OpenAIError(400, "invalid_request", f"response_format must be one of {', '.join(FORMATS)}", "response_format")
    speed = body.get("speed", 1.0)
    if speed is not None and (isinstance(speed, bool) or not isinstance(speed, (int, float))
                              or not math.isfinite(speed) or abs(speed - 1.0) > 1e-9):
        raise OpenAIError(400, "unsupported_speed", "speed is not supported: this model speaks at its natural "
                          "pace; omit 'speed' (or send 1.0) and change the tempo on the client", "speed")
    if (body.get("instructions") or "").strip():
        raise OpenAIError(400, "unsupported_instructions", "instructions are not supported: the Qwen3-TTS Base "
                          "models clone a voice but do not follow style instructions; omit 'instructions'", "instructions")
    if body.get("stream_format", "audio") not in ("audio", None):
        raise OpenAIError(400, "invalid_request", "only stream_format 'audio' is supported", "stream_format")
    mode = (body.get("mode") or "auto").lower()
    if mode not in MODES:
        raise OpenAIError(400, "invalid_request", f"mode must be one of {', '.join(MODES)}", "mode")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63):
        raise OpenAIError(400, "invalid_request", "seed must be a non-negative integer", "seed")
    return {"text": text, "voice": body.get("voice") or None, "format": fmt, "mode": mode, "seed": seed,
            "language": body.get("language")}


def build_router(ctx: AppContext) -> APIRouter:
    router = APIRouter(dependencies=[Depends(require_token(ctx))])

    @router.post("/v1/audio/speech")
    async def speech(request: Request):
        key = client_key(request)
        if not ctx.guard.synth.allow(key):
            raise OpenAIError(429, "rate_limit_exceeded", "too many speech requests; wait a few seconds",
                              headers={"Retry-After": str(int(ctx.guard.synth.retry_after(key)) + 1)})
        try:
            body = await request.json()
        except ValueError:
            raise OpenAIError(400, "invalid_request", "the body must be JSON") from None
        options = parse_body(body)
        return await _synthesize(ctx, options)

    return router


async def _synthesize(ctx: AppContext, options: dict) -> StreamingResponse:
    host = ctx.host
    if host.model is None:
        loading = host.state == "loading"
        raise OpenAIError(503, "model_loading" if loading else "model_unavailable", host.unavailable_message(),
                          headers={"Retry-After": "5"} if loading else None)
    try:
        language = ctx.language(options["language"])
        sampling = ctx.sampling({"seed": options["seed"]})
    except InvalidParameterError as e:
        raise OpenAIError(400, "invalid_request", str(e)) from None
    voice = await asyncio.get_running_loop().run_in_executor(None, ctx.voices.resolve, options["voice"])
    mode, _ = voice.mode_for(options["mode"])
    session = host.session(f"openai-{uuid.uuid4().hex[:8]}")
    try:
        prompt = await ctx.voices.aprompt(voice, mode, session)
        handle = session.speak(options["text"], voice=prompt, language=language, sampling=sampling)
        first = await _first_chunk(handle)
    except BaseException as e:
        session.close()
        raise _as_http(e, host) from None
    headers = {"X-Voice": voice.id or "", "X-Sample-Rate": str(MODEL_RATE)}
    if voice.note:
        headers["X-Voice-Fallback"] = voice.note
    body = _stream(first, handle, session, options["format"])
    return StreamingResponse(body, media_type=MEDIA_TYPES[options["format"]], headers=headers)


async def _first_chunk(handle):
    """Wait for the first chunk so that early failures still get a proper status code."""
    async for chunk in handle:
        return chunk
    return None


def _as_http(e: BaseException, host) -> BaseException:
    if isinstance(e, ApiError):
        return e
    if isinstance(e, BusyError):
        return OpenAIError(429, "rate_limit_exceeded", str(e), headers={"Retry-After": "2"})
    if isinstance(e, (ModelUnavailableError, WorkerStoppedError)):
        return OpenAIError(503, "model_unavailable", host.unavailable_message() or str(e))
    if isinstance(e, InvalidParameterError):
        return OpenAIError(400, "invalid_request", str(e))
    if isinstance(e, (EngineError, LibraryError)):
        return OpenAIError(500, getattr(e, "code", None) or "synthesis_error", f"synthesis failed: {e}")
    return e


async def _stream(first, handle, session, fmt: str):
    """The response body: encoded audio as the chunks arrive."""
    encoder = PcmEncoder(MODEL_RATE, "pcm16")

    async def pcm_chunks():
        if first is not None:
            yield encoder.encode(first.pcm)
        async for chunk in handle:
            yield encoder.encode(chunk.pcm)

    try:
        if fmt in ("pcm", "wav"):
            if fmt == "wav":
                yield wav_header(MODEL_RATE)
            async for data in pcm_chunks():
                yield data
            return
        ff = await FfmpegStream(fmt, MODEL_RATE).start()

        async def feed():
            try:
                async for data in pcm_chunks():
                    await ff.write(data)
            finally:
                await ff.close_input()

        feeder = asyncio.create_task(feed())
        try:
            while data := await ff.read():
                yield data
            await feeder
            code, err = await ff.finish()
            if code != 0:
                log.warning("ffmpeg (%s) exited with %s: %s", fmt, code, err)
        finally:
            feeder.cancel()
            ff.kill()
    finally:
        handle.cancel()  # a client that disconnects stops the generation
        session.close()
