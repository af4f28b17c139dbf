"""Choosing the 8-15 s a long clip keeps.

Candidate cut points are the gaps between consecutive Whisper words. A gap that holds a
silence (a quiet frame by level, or a VAD pause) is a clean boundary, scored by what ends
there: a sentence beats a clause beats a plain pause. The cut goes at the quietest point
of the gap near the speech it borders, so the kept clip starts ~150 ms before its first
word and ends ~200 ms after its last. Gaps without silence are "hard" boundaries: still
between words, but only used when no clean span of 8-15 s exists, and flagged for review.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ingest.speech import LEAD_S, TAIL_S, frame_levels_db
from ingest.transcribe import Word

HOP_S = 0.01
SENTENCE_END = (".", "!", "?", "…", "。", "！", "？")
CLAUSE_END = (",", ";", ":", "—", "–", "，", "；", "：")
SCORES = {"edge": 3.0, "sentence": 3.0, "clause": 2.0, "pause": 1.0, "hard": -20.0}
MIN_PAUSE_S = 0.1  # a VAD pause this long inside a gap makes it a clean boundary


@dataclass(frozen=True)
class Boundary:
    index: int  # cut between words[index - 1] and words[index]; 0 and len(words): edges
    start_cut: float  # where a span starting here begins (seconds)
    end_cut: float  # where a span ending here ends
    kind: str  # "edge", "sentence", "clause", "pause" or "hard"


@dataclass(frozen=True)
class Span:
    start: float
    end: float
    start_kind: str
    end_kind: str
    first_word: int  # index of the first kept word
    last_word: int  # index one past the last kept word

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def hard_cut(self) -> bool:
        return "hard" in (self.start_kind, self.end_kind)


def choose_span(
    wav: np.ndarray,
    sample_rate: int,
    words: tuple[Word, ...],
    speech: tuple[tuple[int, int], ...],
    min_s: float = 8.0,
    max_s: float = 15.0,
    aim: tuple[float, float] = (10.0, 12.0),
) -> Span:
    """The best span of ``min_s``-``max_s`` seconds of ``wav``, cut between words."""
    total = len(wav) / sample_rate
    if not words:  # nothing to align to: keep the start, cut as quietly as possible
        end = _quietest(frame_levels_db(wav, sample_rate), aim[0], aim[1], (aim[0] + aim[1]) / 2)
        return Span(0.0, end, "edge", "hard", 0, 0)
    bounds = find_boundaries(wav, sample_rate, words, speech)
    best, best_rank = None, None
    for i, b in enumerate(bounds[:-1]):
        for e in bounds[i + 1:]:
            duration = e.end_cut - b.start_cut
            if duration > max_s:
                break
            if duration < min_s:
                continue
            miss = max(aim[0] - duration, duration - aim[1], 0.0)
            rank = (SCORES[b.kind] + SCORES[e.kind] - 0.5 * miss, -abs(duration - sum(aim) / 2), -b.start_cut)
            if best_rank is None or rank > best_rank:
                best, best_rank = (b, e), rank
    if best is None:  # even word boundaries cannot make 8-15 s (a single very long word?)
        end = min(total, max_s)
        return Span(0.0, end, "edge", "hard", 0, sum(1 for w in words if w.end <= end))
    b, e = best
    return Span(b.start_cut, e.end_cut, b.kind, e.kind, b.index, e.index)


def find_boundaries(wav: np.ndarray, sample_rate: int, words: tuple[Word, ...], speech) -> list[Boundary]:
    """Every place a span may start or end, in time order."""
    total = len(wav) / sample_rate
    levels = frame_levels_db(wav, sample_rate, HOP_S)
    quiet = _silence_threshold(levels, speech, sample_rate)
    regions = [(a / sample_rate, b / sample_rate) for a, b in speech]
    bounds = [Boundary(0, 0.0, 0.0, "edge")]
    for k in range(1, len(words)):
        lo, hi = words[k - 1].end, max(words[k].start, words[k - 1].end)
        silent = (hi - lo >= 0.03 and _min_level(levels, lo, hi) <= quiet) or _vad_pause(regions, lo, hi) >= MIN_PAUSE_S
        kind = _kind(words[k - 1].text) if silent else "hard"
        onset = _next_onset(regions, lo, hi)
        offset = _last_offset(regions, lo, hi)
        start_cut = _quietest(levels, max(lo, onset - LEAD_S - 0.1), min(hi, onset - 0.03), onset - LEAD_S, lo, hi)
        end_cut = _quietest(levels, max(lo, offset + 0.03), min(hi, offset + TAIL_S + 0.1), offset + TAIL_S, lo, hi)
        bounds.append(Boundary(k, start_cut, end_cut, kind))
    bounds.append(Boundary(len(words), total, total, "edge"))
    return bounds


def _kind(word: str) -> str:
    word = word.rstrip("\"'”’)]")
    if word.endswith(SENTENCE_END):
        return "sentence"
    if word.endswith(CLAUSE_END):
        return "clause"
    return "pause"


def _silence_threshold(levels: np.ndarray, speech, sample_rate: int) -> float:
    """Level (dBFS) under which a frame counts as silence for this clip."""
    in_speech = np.zeros(len(levels), bool)
    for a, b in speech:
        in_speech[int(a / sample_rate / HOP_S): int(b / sample_rate / HOP_S) + 1] = True
    speech_level = float(np.percentile(levels[in_speech], 90)) if in_speech.any() else float(levels.max())
    floor = float(np.percentile(levels, 5))
    return min(speech_level - 20.0, max(floor + 10.0, speech_level - 40.0))


def _min_level(levels: np.ndarray, lo: float, hi: float) -> float:
    a, b = int(round(lo / HOP_S)), int(round(hi / HOP_S)) + 1
    window = levels[a:b]
    return float(window.min()) if window.size else float("inf")


def _vad_pause(regions, lo: float, hi: float) -> float:
    """Length of the longest stretch of [lo, hi] that the VAD calls non-speech."""
    covered = [(max(a, lo), min(b, hi)) for a, b in regions if b > lo and a < hi]
    longest, cursor = 0.0, lo
    for a, b in covered:
        longest = max(longest, a - cursor)
        cursor = max(cursor, b)
    return max(longest, hi - cursor)


def _next_onset(regions, lo: float, hi: float) -> float:
    """Start of the first speech region beginning in [lo, hi] (hi if none)."""
    starts = [a for a, _ in regions if lo <= a <= hi]
    return starts[0] if starts else hi


def _last_offset(regions, lo: float, hi: float) -> float:
    """End of the last speech region ending in [lo, hi] (lo if none)."""
    ends = [b for _, b in regions if lo <= b <= hi]
    return ends[-1] if ends else lo


def _quietest(levels: np.ndarray, lo: float, hi: float, target: float,
              outer_lo: float | None = None, outer_hi: float | None = None) -> float:
    """Time of the quietest frame in [lo, hi] (falling back to [outer_lo, outer_hi] when
    that is empty); ties within 1 dB go to the frame closest to ``target``."""
    if hi < lo and outer_lo is not None:
        lo, hi = outer_lo, outer_hi
    a = max(0, int(np.ceil(lo / HOP_S - 1e-9)))
    b = min(len(levels) - 1, int(np.floor(hi / HOP_S + 1e-9)))
    if b < a:  # a zero-width gap between two words: the boundary itself
        return float(min(max(lo, 0.0), hi))
    window = levels[a: b + 1]
    candidates = np.flatnonzero(window <= window.min() + 1.0) + a
    best = candidates[np.argmin(np.abs(candidates * HOP_S - target))]
    return float(min(max(best * HOP_S, lo), hi))
