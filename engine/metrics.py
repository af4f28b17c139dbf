"""Per-request synthesis metrics: latency, speed, length and why generation stopped.

Definitions (all times are wall-clock, `time.perf_counter` seconds):
  queue_wait_s         submit -> the worker starts the request (0 without a worker)
  time_to_first_audio  submit -> the first PCM chunk is ready (includes the queue wait)
  compute_s            start -> last chunk (generation + decoding, excludes the queue)
  audio_s              seconds of audio produced (pauses between segments included)
  rtf                  compute_s / audio_s: below 1 is faster than real time
  ms_per_frame         compute_s / frames, in milliseconds (1 frame = 80 ms of audio)
  stop_reason          why the last segment ended (see StopReason); `segment_stops` has
                       one entry per synthesized segment
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from enum import Enum


class StopReason(str, Enum):
    """Why a generation ended."""

    EOS = "eos"  # the model emitted its end-of-speech code: the normal end
    LENGTH_GUARD = "length_guard"  # the segment reached its text-based frame limit
    MAX_TOKENS = "max_tokens"  # the caller's max_new_tokens was reached
    CANCELLED = "cancelled"  # the caller cancelled the request
    ERROR = "error"  # the request failed (the error is raised to the caller)


@dataclass
class RequestMetrics:
    """Metrics of one synthesis request; filled in while it runs."""

    text_chars: int = 0
    segments: int = 0
    frames: int = 0
    audio_s: float = 0.0
    queue_wait_s: float = 0.0
    time_to_first_audio_s: float | None = None
    compute_s: float = 0.0
    stop_reason: StopReason | None = None
    segment_stops: list[StopReason] = field(default_factory=list)
    seed: int | None = None  # the seed a sampled request ran with (segment k: seed + k)
    submitted_at: float = field(default_factory=time.perf_counter, repr=False)
    started_at: float | None = field(default=None, repr=False)

    @property
    def rtf(self) -> float | None:
        """Real-time factor: compute time per second of audio (None before any audio)."""
        return self.compute_s / self.audio_s if self.audio_s > 0 else None

    @property
    def ms_per_frame(self) -> float | None:
        return 1000.0 * self.compute_s / self.frames if self.frames else None

    @property
    def guard_fired(self) -> bool:
        return StopReason.LENGTH_GUARD in self.segment_stops

    def mark_started(self) -> None:
        """The request leaves the queue and starts computing."""
        self.started_at = time.perf_counter()
        self.queue_wait_s = self.started_at - self.submitted_at

    def mark_audio(self, frames: int, audio_s: float) -> None:
        """A chunk of `frames` frames / `audio_s` seconds (pauses count) is ready."""
        now = time.perf_counter()
        if self.started_at is None:
            self.mark_started()
        if self.time_to_first_audio_s is None:
            self.time_to_first_audio_s = now - self.submitted_at
        self.frames += frames
        self.audio_s += audio_s
        self.compute_s = now - self.started_at

    def mark_segment(self, reason: StopReason) -> None:
        self.segment_stops.append(reason)
        self.stop_reason = reason

    def finish(self, reason: StopReason | None = None) -> None:
        """The request is over; `reason` overrides the last segment's (cancel, error)."""
        if self.started_at is None:
            self.mark_started()
        self.compute_s = time.perf_counter() - self.started_at
        if reason is not None:
            self.stop_reason = reason

    def to_dict(self) -> dict:
        """JSON-ready view, derived values included."""
        out = asdict(self)
        out.pop("submitted_at"), out.pop("started_at")
        out["stop_reason"] = self.stop_reason.value if self.stop_reason else None
        out["segment_stops"] = [r.value for r in self.segment_stops]
        out["rtf"], out["ms_per_frame"] = self.rtf, self.ms_per_frame
        return out

    def summary(self) -> str:
        """One line for logs and the CLI."""
        ttfa = f"{1000 * self.time_to_first_audio_s:.0f} ms" if self.time_to_first_audio_s is not None else "-"
        rtf = f"{self.rtf:.2f}" if self.rtf is not None else "-"
        mpf = f"{self.ms_per_frame:.1f}" if self.ms_per_frame is not None else "-"
        stop = self.stop_reason.value if self.stop_reason else "-"
        guard = " (length guard fired)" if self.guard_fired and stop != "length_guard" else ""
        return (f"first audio {ttfa} | RTF {rtf} | {mpf} ms/frame | {self.frames} frames | "
                f"{self.audio_s:.2f} s audio | {self.segments} segment(s) | "
                f"queue {1000 * self.queue_wait_s:.0f} ms | stop: {stop}{guard}")
