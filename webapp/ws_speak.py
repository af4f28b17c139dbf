"""WS /api/v1/speak: the streaming protocol of the seed spec (sections 2.1.3 and 5).

Server -> client, JSON text messages unless noted:
  ready     on connect: sessionId, voiceLoaded (default voice id or null), capabilities
            (streaming, languages, encodings, sampleRates, modelState).
  started   after `start`: sampleRate, encoding, voice, voiceName, language, mode.
  queued    while a `speak` waits for the engine: requestId, position (extension).
  audioStart  just before a request's first audio: requestId, sampleRate, encoding (extension).
  <binary>  raw PCM: little-endian int16 (pcm16) or float32 (pcm32f), mono, at sampleRate.
  complete  a request finished: durationMs (speak received -> last audio), charactersProcessed,
            audioLengthMs, plus requestId, timeToFirstAudioMs, rtf, frames, stopReason.
  error     code, message, recoverable (+ requestId when it ends a request).
  stopped   after `stop` (reason); then the server closes the socket.

Client -> server: start {sampleRate, encoding, voice, language, authToken, contractId, mode
("auto" | "icl" | "xvector"), sampling {temperature, topK, topP, repetitionPenalty, seed,
maxFrames}}; speak {text, priority "normal" | "high", sampling, timeoutMs}; cancel; stop.

Every `speak` ends with exactly one `complete` or one `error` (CANCELLED, TIMEOUT,
SYNTHESIS_ERROR, GPU_OUT_OF_MEMORY), in the order the speaks were sent. `cancel` stops the
running request within one frame and drops the waiting ones: each gets `error CANCELLED`
(a request that had already finished got its `complete`). priority "high" cancels what
is in flight first (barge-in). A `speak` before any `start` uses the defaults.

Errors never end the session (only `stop`, a disconnect, or repeated bad tokens do).
`recoverable` follows the seed's table: true when the same request can succeed later
(MODEL_LOADING while loading, SYNTHESIS_ERROR, TIMEOUT, RATE_LIMITED, CANCELLED), false
when the request itself must change (INVALID_TEXT, INVALID_MESSAGE, VOICE_NOT_FOUND: the
default voice is used instead, UNAUTHORIZED, MODEL_LOADING after a failed load).
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from dataclasses import dataclass, field

from fastapi import WebSocket, WebSocketDisconnect

from engine.errors import EngineError, InvalidParameterError
from engine.text_split import InvalidTextError, validate_text
from engine.worker import BusyError, WorkerStoppedError
from voices_db import LibraryError, VoiceNotFoundError
from webapp.audio_out import ENCODINGS, MAX_RATE, MIN_RATE, MODEL_RATE, PcmEncoder
from webapp.auth import client_key
from webapp.context import LANGUAGE_NAMES, AppContext, sampling_changes
from webapp.model_host import ModelUnavailableError
from webapp.voices import MODES, ResolvedVoice

log = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 1 << 20
MAX_AUTH_FAILURES = 5
QUEUE_POLL_S = 0.25
RECOVERABLE = {"MODEL_LOADING": True, "SYNTHESIS_ERROR": True, "INVALID_TEXT": False, "VOICE_NOT_FOUND": False,
               "GPU_OUT_OF_MEMORY": True, "TIMEOUT": True, "RATE_LIMITED": True, "CANCELLED": True,
               "UNAUTHORIZED": False, "INVALID_MESSAGE": False}


class ProtocolError(Exception):
    """A message the session answers with an error (and then carries on)."""

    def __init__(self, code: str, message: str, recoverable: bool | None = None):
        super().__init__(message)
        self.code, self.message = code, message
        self.recoverable = RECOVERABLE.get(code, True) if recoverable is None else recoverable


@dataclass
class Config:
    sample_rate: int = MODEL_RATE
    encoding: str = "pcm16"
    voice: ResolvedVoice | None = None
    mode: str | None = None
    requested_mode: str = "auto"
    language: str = "auto"
    sampling: dict = field(default_factory=dict)
    prompt: object | None = None
    prompt_ready: bool = False


@dataclass
class Request:
    id: str
    handle: object
    encoder: PcmEncoder
    chars: int
    received_at: float
    deadline: float
    timed_out: bool = False


async def speak_endpoint(websocket: WebSocket, ctx: AppContext) -> None:
    """FastAPI WebSocket route body."""
    await SpeakSession(websocket, ctx).run()


class SpeakSession:
    """One WebSocket connection (see module docstring)."""

    def __init__(self, ws: WebSocket, ctx: AppContext):
        self.ws, self.ctx = ws, ctx
        self.id = str(uuid.uuid4())
        self.client = client_key(ws)
        self.config = Config()
        self.started = False
        self.authed = ctx.guard.check(ctx.guard.token_from_headers(ws.headers, ws.query_params))
        self.auth_failures = 0
        self.bucket = ctx.guard.ws_bucket()
        self.requests: list[Request] = []  # in flight, in order
        self.outbox: asyncio.Queue[Request | None] = asyncio.Queue()
        self.send_lock = asyncio.Lock()
        self.worker_session = None
        self.prompt_session = None
        self.closed = False
        self.next_request = 1

    # ---- plumbing -------------------------------------------------------------------
    async def send(self, message: dict) -> None:
        async with self.send_lock:
            await self.ws.send_text(json.dumps(message))

    async def send_bytes(self, data: bytes) -> None:
        async with self.send_lock:
            await self.ws.send_bytes(data)

    async def error(self, code: str, message: str, recoverable: bool | None = None, **extra) -> None:
        rec = RECOVERABLE.get(code, True) if recoverable is None else recoverable
        await self.send({"type": "error", "code": code, "message": message, "recoverable": rec, **extra})

    def _worker_session(self, kind: str = "speak"):
        """This connection's worker session (a fresh one if the worker was restarted)."""
        attr = "worker_session" if kind == "speak" else "prompt_session"
        session = getattr(self, attr)
        if session is None or session.worker is not self.ctx.host.worker:
            session = self.ctx.host.session(f"ws-{self.id[:8]}-{kind}")
            setattr(self, attr, session)
        return session

    # ---- main loop --------------------------------------------------------------------
    async def run(self) -> None:
        await self.ws.accept()
        sender = asyncio.create_task(self._sender())
        try:
            await self.send(self._ready())
            while not self.closed:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                await self._handle_frame(message)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            self.closed = True
            self._cancel_all()
            await self.outbox.put(None)
            try:
                await asyncio.wait_for(sender, 5)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - the socket is gone anyway
                sender.cancel()
            for session in (self.worker_session, self.prompt_session):
                if session is not None:
                    session.close()
            if self.auth_failures >= MAX_AUTH_FAILURES:
                try:
                    await self.ws.close(1008)  # policy violation: too many bad tokens
                except (RuntimeError, OSError):
                    pass

    def _ready(self) -> dict:
        default = self.ctx.voices.default()
        status = self.ctx.host.status()
        return {"type": "ready", "sessionId": self.id, "voiceLoaded": default.id if default else None,
                "capabilities": {"streaming": True, "languages": LANGUAGE_NAMES, "encodings": list(ENCODINGS),
                                 "sampleRates": [MIN_RATE, MAX_RATE], "nativeSampleRate": MODEL_RATE,
                                 "binary": True, "modes": list(MODES), "authRequired": self.ctx.guard.required,
                                 "modelState": status["state"]}}

    async def _handle_frame(self, message: dict) -> None:
        text = message.get("text")
        if text is None:
            return await self.error("INVALID_MESSAGE", "binary frames are not accepted from clients; "
                                    "send JSON text messages such as {\"type\": \"speak\", \"text\": \"Hello\"}")
        if not self.bucket.take():
            return await self.error("RATE_LIMITED", "too many messages; slow down", retry_after_s=1)
        try:
            await self._dispatch(self._parse(text))
        except ProtocolError as e:
            await self.error(e.code, e.message, e.recoverable)
        except (WebSocketDisconnect, RuntimeError, OSError):
            raise  # the connection is gone: end the session
        except Exception:  # noqa: BLE001 - a bug must not end the session
            log.exception("session %s: handling a message failed", self.id)
            await self.error("SYNTHESIS_ERROR", "internal error while handling the message (see the server log)")

    def _parse(self, text: str) -> dict:
        if len(text) > MAX_MESSAGE_CHARS:
            raise ProtocolError("INVALID_MESSAGE", f"message too large ({len(text)} characters)")
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as e:
            raise ProtocolError("INVALID_MESSAGE", f"malformed JSON: {str(e)[:120]}") from None
        if not isinstance(data, dict):
            raise ProtocolError("INVALID_MESSAGE", "a message must be a JSON object with a \"type\" field")
        if not isinstance(data.get("type"), str):
            raise ProtocolError("INVALID_MESSAGE", "the message has no \"type\" (start, speak, cancel or stop)")
        return data

    async def _dispatch(self, data: dict) -> None:
        kind = data["type"]
        if kind == "start":
            await self._start(data)
        elif kind == "speak":
            await self._speak(data)
        elif kind == "cancel":
            self._cancel_all()
        elif kind == "stop":
            await self._stop(data)
        else:
            raise ProtocolError("INVALID_MESSAGE", f"unknown message type {kind[:40]!r}; use start, speak, cancel or stop")

    # ---- start ------------------------------------------------------------------------
    async def _start(self, data: dict) -> None:
        self._authorize(data.get("authToken"))
        config = Config(sample_rate=_rate(data.get("sampleRate", MODEL_RATE)),
                        encoding=_choice(data.get("encoding", "pcm16"), ENCODINGS, "encoding"),
                        sampling=self._sampling(data.get("sampling")))
        try:
            config.language = self.ctx.language(data.get("language"))
        except InvalidParameterError as e:
            raise ProtocolError("INVALID_MESSAGE", str(e)) from None
        voice_id = data.get("voice")
        if voice_id is not None and not isinstance(voice_id, str):
            raise ProtocolError("INVALID_MESSAGE", "voice must be a voice id (string)")
        mode = data.get("mode", "auto")
        if not isinstance(mode, str) or mode.lower() not in MODES:
            raise ProtocolError("INVALID_MESSAGE", f"mode must be one of {', '.join(MODES)}")
        voice = await asyncio.get_running_loop().run_in_executor(None, self.ctx.voices.resolve, voice_id or None)
        if voice.note:
            await self.error("VOICE_NOT_FOUND", voice.note, fallback=voice.id)
        config.voice, config.requested_mode = voice, mode.lower()
        config.mode, mode_note = voice.mode_for(mode)
        self.config, self.started = config, True
        await self._load_prompt()
        voice = config.voice  # the default instead, if the voice was deleted meanwhile
        started = {"type": "started", "sampleRate": config.sample_rate, "encoding": config.encoding,
                   "voice": voice.id, "voiceName": voice.name, "language": config.language, "mode": config.mode,
                   "promptReady": config.prompt_ready}
        if mode_note:
            started["note"] = mode_note
        await self.send(started)

    def _authorize(self, token) -> None:
        if self.authed:
            return
        if token is not None and self.ctx.guard.check(token):
            self.authed = True
            return
        self.auth_failures += 1
        if self.auth_failures >= MAX_AUTH_FAILURES:
            self.closed = True
        raise ProtocolError("UNAUTHORIZED", "this server needs an API token: send it as authToken in the start "
                            "message (or as 'Authorization: Bearer <token>' when connecting)")

    def _sampling(self, value) -> dict:
        try:
            return sampling_changes(value)
        except InvalidParameterError as e:
            raise ProtocolError("INVALID_MESSAGE", str(e)) from None

    async def _load_prompt(self) -> None:
        """Compute the voice prompt now if the model is ready (else at the first speak)."""
        config = self.config
        if config.prompt_ready or self.ctx.host.model is None:
            return
        try:
            try:
                config.prompt = await self.ctx.voices.aprompt(config.voice, config.mode, self._worker_session("prompt"))
            except VoiceNotFoundError:  # deleted since `start`: the default voice, as for an unknown id
                gone = config.voice.id
                config.voice = await asyncio.get_running_loop().run_in_executor(None, self.ctx.voices.resolve, None)
                config.mode, _ = config.voice.mode_for(config.requested_mode)
                await self.error("VOICE_NOT_FOUND", f"voice {gone!r} was deleted; using the default voice "
                                 f"{config.voice.id!r}", fallback=config.voice.id)
                config.prompt = await self.ctx.voices.aprompt(config.voice, config.mode, self._worker_session("prompt"))
            config.prompt_ready = True
        except ModelUnavailableError as e:
            raise ProtocolError("MODEL_LOADING", str(e), e.retryable) from None
        except (LibraryError, EngineError) as e:
            raise ProtocolError("SYNTHESIS_ERROR", f"the voice {config.voice.id!r} cannot be used: {e}") from None

    # ---- speak ------------------------------------------------------------------------
    async def _speak(self, data: dict) -> None:
        if not self.started:
            self._authorize(data.get("authToken"))
            await self._start({"type": "start"})
        elif not self.authed:
            self._authorize(data.get("authToken"))
        text = data.get("text")
        if not isinstance(text, str):
            raise ProtocolError("INVALID_TEXT", "speak needs \"text\": the text to synthesize, as a string")
        try:
            text = validate_text(text)
        except InvalidTextError as e:
            raise ProtocolError("INVALID_TEXT", str(e)) from None
        priority = data.get("priority", "normal")
        if priority not in ("normal", "high"):
            raise ProtocolError("INVALID_MESSAGE", "priority must be \"normal\" or \"high\"")
        timeout = self._timeout(data.get("timeoutMs"))
        overrides = {**self.config.sampling, **self._sampling(data.get("sampling"))}
        if self.ctx.host.model is None:
            raise ProtocolError("MODEL_LOADING", self.ctx.host.unavailable_message(), self.ctx.host.state == "loading")
        if not self.ctx.guard.synth.allow(self.client):
            raise ProtocolError("RATE_LIMITED", "too many synthesis requests from this client; wait a few seconds")
        await self._load_prompt()
        if priority == "high":
            self._cancel_all()
        try:
            sampling = self.ctx.sampling(overrides)
            handle = self._worker_session().speak(text, voice=self.config.prompt, language=self.config.language,
                                                  sampling=sampling)
        except BusyError as e:
            raise ProtocolError("RATE_LIMITED", str(e)) from None
        except (WorkerStoppedError, ModelUnavailableError) as e:
            raise ProtocolError("MODEL_LOADING", self.ctx.host.unavailable_message() or str(e)) from None
        except InvalidTextError as e:
            raise ProtocolError("INVALID_TEXT", str(e)) from None
        except InvalidParameterError as e:
            raise ProtocolError("INVALID_MESSAGE", str(e)) from None
        now = time.monotonic()
        request = Request(id=f"{self.id[:8]}-{self.next_request}", handle=handle, chars=len(text), received_at=now,
                          encoder=PcmEncoder(self.config.sample_rate, self.config.encoding), deadline=now + timeout)
        self.next_request += 1
        self.requests.append(request)
        await self.outbox.put(request)

    def _timeout(self, value) -> float:
        limit = self.ctx.request_timeout_s
        if value is None:
            return limit
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ProtocolError("INVALID_MESSAGE", "timeoutMs must be a positive number of milliseconds")
        return min(limit, value / 1000.0)

    # ---- cancel / stop ------------------------------------------------------------------
    def _cancel_all(self) -> None:
        for request in list(self.requests):
            request.handle.cancel()

    async def _stop(self, data: dict) -> None:
        self._cancel_all()
        reason = data.get("reason") if isinstance(data.get("reason"), str) else "user_requested"
        self.closed = True
        await self.outbox.put(None)
        await self._drained()
        await self.send({"type": "stopped", "reason": reason[:200]})
        await self.ws.close(1000)

    async def _drained(self, timeout: float = 5.0) -> None:
        end = time.monotonic() + timeout
        while self.requests and time.monotonic() < end:
            await asyncio.sleep(0.01)

    # ---- delivering audio ---------------------------------------------------------------
    async def _sender(self) -> None:
        while True:
            request = await self.outbox.get()
            if request is None:
                if self.closed:
                    # deliver what is queued after the sentinel too (already cancelled)
                    while not self.outbox.empty():
                        rest = self.outbox.get_nowait()
                        if rest is not None:
                            await self._deliver_safely(rest)
                    return
                continue
            await self._deliver_safely(request)

    async def _deliver_safely(self, request: Request) -> None:
        try:
            await self._deliver(request)
        except (WebSocketDisconnect, RuntimeError, OSError):
            self.closed = True
            self._cancel_all()
        except Exception:  # noqa: BLE001 - a bug must not kill the session silently
            log.exception("delivering %s failed", request.id)
            request.handle.cancel()
            await self.error("SYNTHESIS_ERROR", "internal error while streaming audio", requestId=request.id)
        finally:
            if request in self.requests:
                self.requests.remove(request)

    async def _deliver(self, request: Request) -> None:
        handle, first_audio, position = request.handle, None, None
        iterator = handle.__aiter__()
        while True:
            waiting = handle.state == "waiting"
            if waiting and handle.position != position and handle.position is not None:
                position = handle.position
                await self.send({"type": "queued", "requestId": request.id, "position": position})
            remaining = request.deadline - time.monotonic()
            if remaining <= 0:
                request.timed_out = True
                handle.cancel()
                break
            try:
                chunk = await asyncio.wait_for(iterator.__anext__(), min(remaining, QUEUE_POLL_S) if waiting else remaining)
            except asyncio.TimeoutError:
                continue
            except StopAsyncIteration:
                break
            except Exception as e:  # noqa: BLE001 - the request failed in the worker
                return await self._failed(request, e)
            if first_audio is None:
                first_audio = time.monotonic()
                await self.send({"type": "audioStart", "requestId": request.id,
                                 "sampleRate": request.encoder.sample_rate, "encoding": request.encoder.encoding})
            data = request.encoder.encode(chunk.pcm)
            if data:
                await self.send_bytes(data)
        await self._finish(request, first_audio)

    async def _finish(self, request: Request, first_audio: float | None) -> None:
        handle, encoder = request.handle, request.encoder
        audio_ms = round(1000.0 * encoder.samples_out / encoder.sample_rate)
        if request.timed_out or handle.state == "cancelled":
            # drop the resampler tail: the client asked for the audio to stop
            if request.timed_out:
                return await self.error("TIMEOUT", "the request took longer than its time limit and was stopped",
                                        requestId=request.id, audioLengthMs=audio_ms)
            return await self.error("CANCELLED", "synthesis cancelled", requestId=request.id,
                                    audioLengthMs=audio_ms, frames=handle.metrics.frames)
        tail = encoder.flush()
        if tail:
            await self.send_bytes(tail)
        metrics = handle.metrics
        audio_ms = round(1000.0 * encoder.samples_out / encoder.sample_rate)
        await self.send({
            "type": "complete", "requestId": request.id,
            "durationMs": round(1000.0 * (time.monotonic() - request.received_at)),
            "charactersProcessed": request.chars, "audioLengthMs": audio_ms,
            "timeToFirstAudioMs": None if first_audio is None else round(1000.0 * (first_audio - request.received_at)),
            "rtf": None if metrics.rtf is None else round(metrics.rtf, 4), "frames": metrics.frames,
            "stopReason": metrics.stop_reason.value if metrics.stop_reason else None})

    async def _failed(self, request: Request, error: BaseException) -> None:
        if isinstance(error, WorkerStoppedError):
            code, message = "MODEL_LOADING", self.ctx.host.unavailable_message() or str(error)
        else:
            code = getattr(error, "code", None) or "SYNTHESIS_ERROR"
            code = code if code in RECOVERABLE else "SYNTHESIS_ERROR"
            message = str(error)
        await self.error(code, message, requestId=request.id)


def _rate(value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value != int(value) or not MIN_RATE <= value <= MAX_RATE:
        raise ProtocolError("INVALID_MESSAGE", f"sampleRate must be a whole number of Hz between {MIN_RATE} and {MAX_RATE}")
    return int(value)


def _choice(value, allowed, name: str) -> str:
    if value not in allowed:
        raise ProtocolError("INVALID_MESSAGE", f"{name} must be one of {', '.join(allowed)}")
    return value
