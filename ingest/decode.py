"""Decode any file ffmpeg reads (through pydub) to float32 mono at 24 kHz.

Limits are checked as early as possible: the size before anything is read, the duration
from ffprobe before decoding, then again on the decoded samples (a container may lie).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from ingest.errors import EmptyAudioError, FileTooLargeError, NotAudioError, TooLongError

log = logging.getLogger(__name__)

TARGET_SR = 24000
MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_DURATION_S = 600.0
# A sample this close to full scale, in this share of the clip, means the source clipped.
CLIP_LEVEL = 0.999
CLIP_SHARE = 0.0005


@dataclass(frozen=True)
class DecodedAudio:
    """A decoded clip: mono float32 in [-1, 1] at ``sample_rate`` (24 kHz)."""

    wav: np.ndarray
    sample_rate: int
    source_sample_rate: int
    source_channels: int
    source_codec: str
    clipped_share: float  # share of source samples at full scale

    @property
    def duration(self) -> float:
        return len(self.wav) / self.sample_rate


def decode_file(path: str | Path, max_bytes: int = MAX_FILE_BYTES, max_duration_s: float = MAX_DURATION_S) -> DecodedAudio:
    """Decode ``path``; raise an ``IngestError`` subclass with a clear message on bad input."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise EmptyAudioError(f"{path.name} is empty (0 bytes)")
    if size > max_bytes:
        raise FileTooLargeError(
            f"{path.name} is {size / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB "
            "(a voice needs only 8-15 s of speech: trim the file first)"
        )
    codec = _probe(path, max_duration_s)
    samples, source_sr, channels = _decode_pcm(path)
    if samples.shape[0] == 0:
        raise EmptyAudioError(f"{path.name} decodes to no audio at all")
    if samples.shape[0] / source_sr > max_duration_s:
        raise TooLongError(_too_long(path, samples.shape[0] / source_sr, max_duration_s))
    clipped = float(np.mean(np.abs(samples) >= CLIP_LEVEL))
    mono = samples.mean(axis=1, dtype=np.float64).astype(np.float32)  # [T, C] -> [T]
    if source_sr != TARGET_SR:
        # soxr "HQ" is a band-limited (anti-aliased) resampler, unlike sample dropping.
        mono = soxr.resample(mono, source_sr, TARGET_SR, quality="HQ").astype(np.float32)
    return DecodedAudio(mono, TARGET_SR, source_sr, channels, codec, clipped)


def _too_long(path: Path, seconds: float, limit: float) -> str:
    return (
        f"{path.name} lasts {seconds / 60:.1f} min; the limit is {limit / 60:.0f} min "
        "(a voice needs only 8-15 s of speech: trim the file first)"
    )


def _probe(path: Path, max_duration_s: float) -> str:
    """Codec name of the first audio stream; refuses files without one or too long."""
    from pydub.utils import mediainfo_json

    try:
        info = mediainfo_json(str(path))
    except Exception as exc:  # ffprobe missing or crashed: the decode step reports it
        log.debug("ffprobe failed on %s: %s", path, exc)
        return "unknown"
    streams = [s for s in info.get("streams", []) if s.get("codec_type") == "audio"]
    if not streams:
        raise NotAudioError(
            f"{path.name} could not be read as audio: no audio stream found (not an audio file, or a damaged one)"
        )
    try:
        duration = float(info.get("format", {}).get("duration") or streams[0].get("duration") or 0)
    except ValueError:
        duration = 0.0
    if duration > max_duration_s:
        raise TooLongError(_too_long(path, duration, max_duration_s))
    return str(streams[0].get("codec_name", "unknown"))


def _decode_pcm(path: Path) -> tuple[np.ndarray, int, int]:
    """(float32 samples [T, C] in [-1, 1], sample rate, channels) via pydub/ffmpeg."""
    from pydub import AudioSegment
    from pydub.exceptions import CouldntDecodeError

    try:
        segment = AudioSegment.from_file(str(path))
    except CouldntDecodeError as exc:
        detail = _ffmpeg_reason(str(exc))
        raise NotAudioError(f"{path.name} could not be decoded: it is not audio, or it is damaged ({detail})") from exc
    except (IndexError, KeyError, ValueError, OSError) as exc:
        raise NotAudioError(f"{path.name} could not be decoded: it is not audio, or it is damaged") from exc
    channels = segment.channels
    full_scale = float(1 << (8 * segment.sample_width - 1))
    raw = np.asarray(segment.get_array_of_samples())  # signed, whatever the source width
    samples = (raw.astype(np.float32) / full_scale).reshape(-1, channels)  # [T*C] -> [T, C]
    return samples, int(segment.frame_rate), int(channels)


def _ffmpeg_reason(message: str) -> str:
    """The last meaningful ffmpeg line from pydub's long error message."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    useful = [ln for ln in lines if "rror" in ln or "nvalid" in ln or "not found" in ln]
    return (useful or lines or ["unknown error"])[-1][:200]
