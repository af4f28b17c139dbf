"""Speech detection (Silero VAD, as bundled in faster-whisper) and silence trimming.

The trimmed clip is a concatenation of pieces of the decoded source; ``Timeline`` keeps
that map, so every later cut can be reported in source time and checked against it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr

from ingest.errors import NoSpeechError, SilentAudioError

VAD_SR = 16000
SILENT_PEAK = 10 ** (-60 / 20)  # below -60 dBFS everywhere: nothing was recorded
LEAD_S = 0.15  # kept before the first speech
TAIL_S = 0.20  # kept after the last speech (lets the last word decay)
MAX_PAUSE_S = 1.0  # inner pauses longer than this...
PAUSE_TO_S = 0.5  # ...are shortened to this
FADE_S = 0.005  # fade at each join, so a cut never clicks


def detect_speech(wav: np.ndarray, sample_rate: int, threshold: float = 0.5) -> list[tuple[int, int]]:
    """Speech regions as (start, end) sample indices of ``wav``; refuses silent clips."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    if wav.size == 0 or float(np.max(np.abs(wav))) < SILENT_PEAK:
        raise SilentAudioError("the clip is silent: nothing above -60 dBFS was recorded")
    wav16 = soxr.resample(wav, sample_rate, VAD_SR).astype(np.float32)
    options = VadOptions(
        threshold=threshold,
        min_speech_duration_ms=120,
        min_silence_duration_ms=150,  # fine-grained: we want the pauses, not long chunks
        speech_pad_ms=30,
    )
    scale = sample_rate / VAD_SR
    regions = [
        (int(r["start"] * scale), min(len(wav), int(r["end"] * scale)))
        for r in get_speech_timestamps(wav16, options, sampling_rate=VAD_SR)
    ]
    if not regions:
        raise NoSpeechError("no speech was found in the clip (only noise, music or silence?)")
    return regions


@dataclass(frozen=True)
class Timeline:
    """Pieces of the source (sample ranges, in order) that make up a processed clip."""

    pieces: tuple[tuple[int, int], ...]

    @property
    def length(self) -> int:
        return sum(b - a for a, b in self.pieces)

    def from_source(self, s: int) -> int | None:
        """Processed-clip sample of source sample ``s`` (None if it was cut out)."""
        offset = 0
        for a, b in self.pieces:
            if a <= s < b:
                return offset + (s - a)
            offset += b - a
        return None

    def sub(self, start: int, end: int) -> "Timeline":
        """The timeline of processed samples [start, end)."""
        out, offset = [], 0
        for a, b in self.pieces:
            lo, hi = max(start, offset), min(end, offset + (b - a))
            if lo < hi:
                out.append((a + lo - offset, a + hi - offset))
            offset += b - a
        return Timeline(tuple(out))


@dataclass(frozen=True)
class Trimmed:
    wav: np.ndarray
    timeline: Timeline
    speech: tuple[tuple[int, int], ...]  # speech regions, in trimmed samples

    @property
    def speech_samples(self) -> int:
        return sum(b - a for a, b in self.speech)


def trim_silence(wav: np.ndarray, sample_rate: int, regions: list[tuple[int, int]]) -> Trimmed:
    """Trim the edges (keeping ``LEAD_S`` before the first speech and ``TAIL_S`` after the
    last) and shorten inner pauses longer than ``MAX_PAUSE_S`` to ``PAUSE_TO_S``, cutting
    out the middle of each long pause."""
    start = max(0, regions[0][0] - int(LEAD_S * sample_rate))
    end = min(len(wav), regions[-1][1] + int(TAIL_S * sample_rate))
    half = int(PAUSE_TO_S * sample_rate / 2)
    pieces, cursor = [], start
    for (_, prev_end), (next_start, _) in zip(regions, regions[1:]):
        if next_start - prev_end > MAX_PAUSE_S * sample_rate:
            pieces.append((cursor, prev_end + half))
            cursor = next_start - half
    pieces.append((cursor, end))
    timeline = Timeline(tuple(pieces))
    out = join_pieces(wav, pieces, sample_rate)
    speech = []
    for a, b in regions:
        ta, tb = timeline.from_source(a), timeline.from_source(b - 1)
        if ta is not None and tb is not None:
            speech.append((ta, tb + 1))
    return Trimmed(out, timeline, tuple(speech))


def join_pieces(wav: np.ndarray, pieces, sample_rate: int) -> np.ndarray:
    """Concatenate source pieces with a short fade on each side of every join."""
    fade = max(1, int(FADE_S * sample_rate))
    parts = []
    for i, (a, b) in enumerate(pieces):
        part = wav[a:b].astype(np.float32, copy=True)
        n = min(fade, len(part) // 2)
        if i > 0 and n:
            part[:n] *= np.linspace(0.0, 1.0, n, dtype=np.float32)
        if i < len(pieces) - 1 and n:
            part[-n:] *= np.linspace(1.0, 0.0, n, dtype=np.float32)
        parts.append(part)
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def frame_levels_db(wav: np.ndarray, sample_rate: int, hop_s: float = 0.01, win_s: float = 0.02) -> np.ndarray:
    """Short-time RMS level in dBFS, one value per ``hop_s`` (centered windows)."""
    hop, win = int(hop_s * sample_rate), int(win_s * sample_rate)
    n = max(1, int(np.ceil(len(wav) / hop)))
    padded = np.pad(wav.astype(np.float64), (win // 2, win))
    energy = np.cumsum(np.concatenate([[0.0], padded * padded]))
    starts = np.arange(n) * hop
    rms = np.sqrt((energy[starts + win] - energy[starts]) / win)
    return 20 * np.log10(np.maximum(rms, 1e-9))
