"""Clip -> reference audio + transcript: decode, trim, cut, level, transcribe.

``process_clip`` touches no files but the input: callers store the result (see
``ingest.library``), so a refused clip leaves nothing behind by construction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ingest.align import user_words_for_span
from ingest.decode import MAX_DURATION_S, MAX_FILE_BYTES, TARGET_SR, DecodedAudio, decode_file
from ingest.errors import TooLittleSpeechError
from ingest.loudness import level
from ingest.span import Span, choose_span
from ingest.speech import FADE_S, Timeline, Trimmed, detect_speech, trim_silence
from ingest.transcribe import Transcriber, Transcript
from voices_db.audio_io import float_to_pcm16, pcm16_to_float, pcm_sha256
from voices_db.voice import clean_language

PIPELINE_VERSION = 1


@dataclass(frozen=True)
class IngestOptions:
    """Limits and targets of the pipeline (defaults follow the issue)."""

    max_bytes: int = MAX_FILE_BYTES
    max_duration_s: float = MAX_DURATION_S
    min_speech_s: float = 3.0
    min_span_s: float = 8.0
    max_span_s: float = 15.0
    aim_s: tuple[float, float] = (10.0, 12.0)
    low_speech_ratio: float = 0.4
    low_sample_rate: int = 24000


@dataclass(frozen=True)
class ProcessedClip:
    """A clip ready to store: 24 kHz mono int16 PCM and everything known about it."""

    pcm: np.ndarray
    sample_rate: int
    transcript: str
    transcript_source: str  # "user" or "whisper:<model>"
    language: str | None
    loudness_dbfs: float
    peak: float
    warnings: list[dict] = field(default_factory=list)
    report: dict = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return len(self.pcm) / self.sample_rate

    @property
    def audio_sha256(self) -> str:
        return pcm_sha256(self.pcm)


def process_clip(
    path: str | Path,
    transcriber: Transcriber,
    transcript: str | None = None,
    language: str | None = None,
    options: IngestOptions = IngestOptions(),
) -> ProcessedClip:
    """Run the whole pipeline on one file; raises an ``IngestError`` to refuse it.

    ``transcript`` (the user's) wins over Whisper's; ``language`` is a hint (code or name).
    """
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    language = clean_language(language)
    user_text = " ".join(transcript.split()) if transcript and transcript.strip() else None
    decoded = decode_file(path, options.max_bytes, options.max_duration_s)
    timings["decode"] = _lap(clock)
    trimmed = _trim(decoded, options)
    timings["vad"] = _lap(clock, timings)

    span, words_used = None, ()
    wav, timeline = trimmed.wav, trimmed.timeline
    if len(trimmed.wav) / TARGET_SR > options.max_span_s:
        full = transcriber.transcribe(trimmed.wav, TARGET_SR, language, check=False)
        timings["transcribe_full"] = _lap(clock, timings)
        span = choose_span(trimmed.wav, TARGET_SR, full.words, trimmed.speech,
                           options.min_span_s, options.max_span_s, options.aim_s)
        wav, timeline = _cut(trimmed, span)
        words_used = full.words
        if user_text is not None:
            user_text = user_words_for_span(user_text, full.words, span.first_word, span.last_word)
        timings["span"] = _lap(clock, timings)

    leveled = level(wav)
    pcm = float_to_pcm16(leveled.wav)
    heard: Transcript | None = None
    if user_text is None:
        # transcribe exactly what is stored (tiny models can flip on a 1e-4 level change)
        heard = transcriber.transcribe(pcm16_to_float(pcm), TARGET_SR, language)
        timings["transcribe_kept"] = _lap(clock, timings)
    return ProcessedClip(
        pcm=pcm,
        sample_rate=TARGET_SR,
        transcript=user_text if heard is None else heard.text,
        transcript_source="user" if heard is None else f"whisper:{heard.model}",
        language=language or (heard.language if heard else None),
        loudness_dbfs=round(leveled.rms_dbfs, 2),
        peak=round(leveled.peak, 4),
        warnings=_warnings(decoded, trimmed, span, pcm, options, heard),
        report=_report(decoded, trimmed, timeline, span, words_used, heard, leveled, timings),
    )


def _trim(decoded: DecodedAudio, options: IngestOptions) -> Trimmed:
    """Speech detection and silence trimming; refuses clips with too little speech."""
    regions = detect_speech(decoded.wav, decoded.sample_rate)
    trimmed = trim_silence(decoded.wav, decoded.sample_rate, regions)
    speech_s = trimmed.speech_samples / TARGET_SR
    if speech_s < options.min_speech_s:
        raise TooLittleSpeechError(
            f"only {speech_s:.1f} s of speech remain after trimming silence; at least "
            f"{options.min_speech_s:.0f} s are needed (8-15 s of clear speech clone best)"
        )
    return trimmed


def _lap(start: float, timings: dict | None = None) -> float:
    return round(time.perf_counter() - start - sum((timings or {}).values()), 3)


def _cut(trimmed: Trimmed, span: Span) -> tuple[np.ndarray, Timeline]:
    """The span's samples, faded at the ends where it was cut (a hard cut must not click)."""
    a, b = int(round(span.start * TARGET_SR)), int(round(span.end * TARGET_SR))
    wav = trimmed.wav[a:b].copy()
    n = min(int(FADE_S * TARGET_SR), len(wav) // 2)
    ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
    if a > 0:
        wav[:n] *= ramp
    if b < len(trimmed.wav):
        wav[len(wav) - n:] *= ramp[::-1]
    return wav, trimmed.timeline.sub(a, b)


def _warnings(decoded: DecodedAudio, trimmed: Trimmed, span: Span | None, pcm, options: IngestOptions, heard) -> list[dict]:
    out = []
    if decoded.clipped_share > 0.0005:
        out.append(_w("clipping", f"{decoded.clipped_share:.2%} of the source samples are at full scale: "
                                  "the recording clipped, and the voice may sound distorted"))
    if decoded.source_sample_rate < options.low_sample_rate:
        out.append(_w("low_sample_rate", f"the source was recorded at {decoded.source_sample_rate} Hz "
                                         f"(below {options.low_sample_rate}): it lacks high frequencies"))
    ratio = trimmed.speech_samples / max(1, len(decoded.wav))
    if ratio < options.low_speech_ratio:
        out.append(_w("low_speech_ratio", f"only {ratio:.0%} of the upload is speech"))
    if span is not None and span.hard_cut:
        out.append(_w("hard_cut", "no pause fell at a usable place: the clip was cut between two words "
                                  "without a silence; please listen to it and review the transcript"))
    seconds = len(pcm) / TARGET_SR
    if seconds < options.min_span_s:
        out.append(_w("short", f"the kept clip lasts {seconds:.1f} s; 8-15 s of speech clone best"))
    for note in heard.notes if heard else ():
        out.append(_w("transcriber", note))
    return out


def _w(code: str, message: str) -> dict:
    return {"code": code, "message": message}


def _report(decoded, trimmed, timeline: Timeline, span, words, heard, leveled, timings) -> dict:
    def sec(samples: int) -> float:
        return round(samples / TARGET_SR, 3)

    return {
        "pipeline_version": PIPELINE_VERSION,
        "source": {
            "sample_rate": decoded.source_sample_rate,
            "channels": decoded.source_channels,
            "codec": decoded.source_codec,
            "duration": round(decoded.duration, 3),
        },
        "speech_seconds": sec(trimmed.speech_samples),
        "trimmed_duration": sec(len(trimmed.wav)),
        # what the stored clip is made of, in seconds of the decoded source
        "source_intervals": [[sec(a), sec(b)] for a, b in timeline.pieces],
        "span": None if span is None else {
            "start": round(span.start, 3), "end": round(span.end, 3),
            "start_kind": span.start_kind, "end_kind": span.end_kind, "hard_cut": span.hard_cut,
            # the words the cut was chosen against, in seconds of the trimmed clip
            "words": [[w.text, round(w.start, 3), round(w.end, 3)] for w in words],
        },
        "gain_db": round(leveled.gain_db, 2),
        "peak_limited": leveled.peak_limited,
        "whisper": None if heard is None else {
            "model": heard.model, "language": heard.language,
            "language_probability": round(heard.language_probability, 3),
            "avg_logprob": round(heard.avg_logprob, 3),
            "words": [[w.text, round(w.start, 3), round(w.end, 3), round(w.probability, 3)] for w in heard.words],
        },
        "timings": timings,
    }
