"""Streaming synthesis: text in, 24 kHz PCM chunks out while the frames are being generated.

    for chunk in model.stream("Hello there. How are you?", voice=prompt, language="en",
                              cancel=event):
        play(chunk.pcm)                      # float32 [-1, 1], chunk.sample_rate Hz

How a request runs (`engine.batch.engine`, one step = one codec frame; `stream_steps` runs
it alone, the worker runs many requests as the rows of one batched step):
1. `plan_request` validates everything up front, in the caller's thread: the text
   (`engine.text_split`: non-empty, at most 5,000 characters), the language
   (`engine.languages`), the chunk sizes; it splits the text into segments.
2. Segments are synthesized in order with the same voice, language and sampling options.
   Each one starts a fresh talker run and a fresh codec stream: in ICL mode one continuing
   from the voice's reference codes (decoded once and kept, engine.batch.codec), so the
   reference's own audio is never emitted but the first frames continue its acoustic
   context. With a
   seed, segment k samples with seed + k (segment 0 is exactly `generate_codes` with the
   seed).
3. Frames go through the decoder as they come: the first chunk of each segment after
   `first_chunk_frames` frames (default 1: the first 80 ms of audio), then one chunk per
   `chunk_frames` frames (default 4: 320 ms). Between segments a pause of
   `segment_pause_s` seconds of silence (default 0.2 s, about a sentence break) is emitted
   as its own chunk, so the segments sound like one utterance.
4. The length guard (`engine.text_split.length_guard_frames`: ceil(2 * units) + 36 frames)
   caps every segment; a generation that reaches it is ended and reported as
   `StopReason.LENGTH_GUARD` (it also respects the caller's `max_new_tokens`: MAX_TOKENS).
5. `cancel` (a threading.Event) is checked before every frame: generation stops within
   one frame, frames not yet decoded are dropped, the talker's caches and the decoder
   state are released, and the stream simply ends (stop reason CANCELLED).

For one segment, concatenating the chunks gives exactly `model.decode` of
`model.generate_codes` with the same seed (with ICL: the decode of reference + generated
codes, minus the reference's samples), because the streaming decoder is exact.

The ICL reference itself is prepared in `TTSModel.create_voice_prompt`, which appends
~0.5 s of silence before encoding it (engine.audio.REFERENCE_SILENCE_S).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch

from engine.errors import InvalidParameterError
from engine.languages import normalize_language
from engine.metrics import RequestMetrics
from engine.sampling import SamplingParams
from engine.text_split import MAX_SEGMENT_UNITS, split_text, validate_text

DEFAULT_CHUNK_FRAMES = 4
DEFAULT_FIRST_CHUNK_FRAMES = 1
SEGMENT_PAUSE_S = 0.2
SAMPLE_RATE = 24000


@dataclass(frozen=True)
class AudioChunk:
    """A piece of the utterance, ready to play.

    pcm: float32 [N] in [-1, 1], mono. frame_index: utterance-wide index of its first codec
    frame (for a pause: of the next frame). start_s: where it starts in the utterance.
    elapsed_s: wall time from the request's submission until this chunk was ready.
    """

    pcm: np.ndarray
    sample_rate: int
    frame_index: int
    num_frames: int
    segment_index: int
    start_s: float
    elapsed_s: float
    is_pause: bool = False

    @property
    def duration_s(self) -> float:
        return self.pcm.shape[0] / self.sample_rate


@dataclass(frozen=True)
class RequestPlan:
    """A validated synthesis request (what `plan_request` returns)."""

    text: str
    segments: tuple[str, ...]
    voice: object | None
    language: str
    sampling: SamplingParams | None
    chunk_frames: int = DEFAULT_CHUNK_FRAMES
    first_chunk_frames: int = DEFAULT_FIRST_CHUNK_FRAMES
    segment_pause_s: float = SEGMENT_PAUSE_S
    length_guard: bool = True
    submitted_at: float = field(default_factory=time.perf_counter)


def plan_request(text: str, voice=None, language: str | None = "auto", sampling: SamplingParams | None = None, *,
                 chunk_frames: int = DEFAULT_CHUNK_FRAMES, first_chunk_frames: int = DEFAULT_FIRST_CHUNK_FRAMES,
                 segment_pause_s: float = SEGMENT_PAUSE_S, split: bool = True,
                 max_segment_units: int = MAX_SEGMENT_UNITS, length_guard: bool = True,
                 supported_languages=None) -> RequestPlan:
    """Validate a request and split its text (see the module docstring).

    split=False keeps the text as one segment (still limited to 5,000 characters).
    length_guard=False leaves only `sampling.max_new_tokens` as a limit.
    Raises InvalidTextError, UnsupportedLanguageError or InvalidParameterError.
    """
    segments = tuple(split_text(text, max_units=max_segment_units)) if split else (validate_text(text),)
    language = normalize_language(language, supported_languages)
    for name, value in (("chunk_frames", chunk_frames), ("first_chunk_frames", first_chunk_frames)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidParameterError(f"{name} must be an integer >= 1, got {value!r}")
    if not isinstance(segment_pause_s, (int, float)) or not 0 <= segment_pause_s <= 5:
        raise InvalidParameterError(f"segment_pause_s must be between 0 and 5 seconds, got {segment_pause_s!r}")
    if sampling is not None and not isinstance(sampling, SamplingParams):
        raise InvalidParameterError(f"sampling must be SamplingParams, got {type(sampling).__name__}")
    return RequestPlan(text=validate_text(text), segments=segments, voice=voice, language=language,
                       sampling=sampling, chunk_frames=chunk_frames, first_chunk_frames=first_chunk_frames,
                       segment_pause_s=float(segment_pause_s), length_guard=bool(length_guard))


# ---------------------------------------------------------------------------------------
# the frame loop


def stream_steps(model, plan: RequestPlan, cancel: threading.Event | None = None,
                 metrics: RequestMetrics | None = None) -> Iterator[AudioChunk | None]:
    """Run a planned request one codec frame per `next()`: yields an AudioChunk when one is
    ready, else None. `stream` wraps it for direct use (and the ZeroGPU runtime runs it on
    the GPU). It runs the batched engine with a private one-slot pool (engine.batch.engine),
    the code the worker runs for many streams at once. Closing the iterator frees its state."""
    from engine.batch.engine import BatchEngine

    metrics = metrics if metrics is not None else RequestMetrics(submitted_at=plan.submitted_at)
    cancel = cancel or threading.Event()
    engine = BatchEngine(model, slots=1, capacity=64, private=True)
    utt = engine.start(plan, cancel, metrics)
    try:
        with torch.inference_mode():
            while not utt.done or utt.chunks:
                if utt.chunks:
                    yield utt.chunks.popleft()
                    continue
                engine.tick()
                if not utt.chunks and not utt.done:
                    yield None
        if utt.error is not None:
            raise utt.error
    except GeneratorExit:  # closed by the consumer or the worker: that is a cancellation
        cancel.set()
        raise
    finally:
        engine.release(utt)


# ---------------------------------------------------------------------------------------
# the public method


class SynthesisStream:
    """Iterable of AudioChunks for one request; `metrics` fills in as it runs.

    Iterating drives generation in the consumer's thread. `cancel()` (or setting the event
    passed to `stream`) ends it within one frame; `close()` abandons it.
    """

    def __init__(self, model, plan: RequestPlan, cancel: threading.Event | None = None):
        self.plan = plan
        self.cancel_event = cancel or threading.Event()
        self.metrics = RequestMetrics(submitted_at=plan.submitted_at)
        self._steps = stream_steps(model, plan, self.cancel_event, self.metrics)

    def __iter__(self) -> Iterator[AudioChunk]:
        for item in self._steps:
            if item is not None:
                yield item

    def cancel(self) -> None:
        self.cancel_event.set()

    def close(self) -> None:
        self._steps.close()


def stream(model, text: str, voice=None, language: str | None = "auto", sampling: SamplingParams | None = None, *,
           chunk_frames: int = DEFAULT_CHUNK_FRAMES, first_chunk_frames: int = DEFAULT_FIRST_CHUNK_FRAMES,
           cancel: threading.Event | None = None, segment_pause_s: float = SEGMENT_PAUSE_S, split: bool = True,
           length_guard: bool = True) -> SynthesisStream:
    """Synthesize `text` as a stream of AudioChunks (module docstring; `TTSModel.stream`).

    voice: a VoicePrompt (or None); language: name, ISO code or "auto"; sampling:
    SamplingParams (default: the checkpoint's generation_config.json); cancel: a
    threading.Event that stops the stream within one frame. Bad input raises here, before
    anything runs: InvalidTextError, UnsupportedLanguageError, InvalidParameterError.
    """
    supported = getattr(getattr(getattr(model, "config", None), "talker", None), "language_ids", None)
    plan = plan_request(text, voice, language, sampling, chunk_frames=chunk_frames,
                        first_chunk_frames=first_chunk_frames, segment_pause_s=segment_pause_s, split=split,
                        length_guard=length_guard, supported_languages=supported)
    return SynthesisStream(model, plan, cancel)
