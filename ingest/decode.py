"""Decode any audio file ffmpeg reads to float32 mono at 24 kHz, within hard bounds.

Limits are checked as early as possible: the size before anything is read, the duration
from ffprobe when the container states one, and always while decoding. ffmpeg streams raw
samples through a pipe and is stopped as soon as the clip passes the duration limit, so a
file that hides its length (a FLAC with a zeroed STREAMINFO, a stream without an index)
costs at most the limit's worth of memory, never its real length. Only audio demuxers are
allowed and only local files are opened: a playlist cannot make ffmpeg read other files.
"""

from __future__ import annotations

import json
import logging
import subprocess
import tempfile
import threading
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
# Demuxers of the audio formats people upload (browsers record webm/ogg or wav).
AUDIO_DEMUXERS = "wav,w64,mp3,flac,ogg,matroska,mov,aac,aiff,caf,au,amr,ac3,eac3,wv,ape,asf"
INPUT_OPTIONS = ("-format_whitelist", AUDIO_DEMUXERS, "-protocol_whitelist", "file")
PROBE_TIMEOUT_S = 30.0
DECODE_TIMEOUT_S = 120.0
MAX_SOURCE_RATE = 384000
MAX_CHANNELS = 32
CHUNK_S = 1.0
NARROW_FLOAT_CODECS = ("mp3", "mp4", "aac", "webm", "ogg")  # seconds of audio read from ffmpeg at a time


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


@dataclass(frozen=True)
class StreamInfo:
    """What ffprobe says about the first audio stream; duration None when unknown."""

    codec: str
    sample_rate: int
    channels: int
    duration: float | None
    wide: bool = False  # decoded as 32-bit samples (else 16-bit)


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
    info = probe(path)
    if info.duration is not None and info.duration > max_duration_s:
        raise TooLongError(_too_long(path, f"{info.duration / 60:.1f} min", max_duration_s))
    mono, clipped = _decode_bounded(path, info, max_duration_s)
    if mono.shape[0] == 0:
        raise EmptyAudioError(f"{path.name} decodes to no audio at all")
    if info.sample_rate != TARGET_SR:
        # soxr "HQ" is a band-limited (anti-aliased) resampler, unlike sample dropping.
        mono = soxr.resample(mono, info.sample_rate, TARGET_SR, quality="HQ").astype(np.float32)
    return DecodedAudio(mono, TARGET_SR, info.sample_rate, info.channels, info.codec, clipped)


def _too_long(path: Path, length: str, limit: float) -> str:
    return (
        f"{path.name} lasts {length}; the limit is {limit / 60:.0f} min "
        "(a voice needs only 8-15 s of speech: trim the file first)"
    )


def _unreadable(path: Path, detail: str = "") -> NotAudioError:
    reason = f" ({detail})" if detail else ""
    return NotAudioError(f"{path.name} could not be read as audio: no audio stream found "
                         f"(not an audio file, or a damaged one){reason}")


def probe(path: Path) -> StreamInfo:
    """The first audio stream's codec, rate and channels, and the duration if the file
    states one (a missing, "N/A" or non-finite duration is unknown, not zero)."""
    cmd = ["ffprobe", "-v", "error", *INPUT_OPTIONS, "-show_entries",
           "format=duration:stream=codec_type,codec_name,sample_rate,channels,duration,sample_fmt", "-of", "json",
           f"file:{path.resolve()}"]
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=PROBE_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise _unreadable(path, "ffprobe took too long") from None
    if done.returncode != 0:
        raise _unreadable(path, _ffmpeg_reason(done.stderr.decode(errors="replace")))
    try:
        info = json.loads(done.stdout or b"{}")
    except ValueError:
        raise _unreadable(path) from None
    streams = [s for s in info.get("streams", []) if isinstance(s, dict) and s.get("codec_type") == "audio"]
    if not streams:
        raise _unreadable(path)
    stream = streams[0]
    rate, channels = _number(stream.get("sample_rate")), _number(stream.get("channels"))
    if not (rate and 1000 <= rate <= MAX_SOURCE_RATE and channels and 1 <= channels <= MAX_CHANNELS):
        raise _unreadable(path, f"unusable stream: {rate or '?'} Hz, {channels or '?'} channels")
    duration = _number(info.get("format", {}).get("duration")) or _number(stream.get("duration"))
    # 16-bit samples for 8/16-bit sources and for mp3/aac (float decoders of 16-bit
    # material), 32-bit for the rest: the choice pydub made, so clips ingest as they did.
    sample_fmt, codec = str(stream.get("sample_fmt", "")), str(stream.get("codec_name", ""))
    wide = not (sample_fmt.rstrip("p") in ("u8", "s16") or sample_fmt == "fltp" and codec in NARROW_FLOAT_CODECS)
    return StreamInfo(str(stream.get("codec_name") or "unknown"), int(rate), int(channels), duration or None, wide)


def _number(value) -> float | None:
    """A positive finite number from ffprobe's JSON (which writes "N/A" for unknown)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if 0 < number < float("inf") else None


def _decode_bounded(path: Path, info: StreamInfo, max_duration_s: float) -> tuple[np.ndarray, float]:
    """(mono float32 samples at the source rate, share of clipped source samples).

    ffmpeg writes integer frames of the source's channels to a pipe; each chunk is counted,
    checked for clipping and mixed down at once, so memory holds the mono clip only and
    never more than ``max_duration_s`` of it: ffmpeg is killed the moment the clip is longer."""
    limit = int(max_duration_s * info.sample_rate)
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", *INPUT_OPTIONS, "-i", f"file:{path.resolve()}",
           "-map", "0:a:0", "-vn", "-sn", "-dn", "-f", "s32le" if info.wide else "s16le",
           "-acodec", "pcm_s32le" if info.wide else "pcm_s16le", "-ar", str(info.sample_rate),
           "-ac", str(info.channels), "pipe:1"]
    dtype, full_scale = ("<i4", 2.0**31) if info.wide else ("<i2", 2.0**15)
    frame_bytes = np.dtype(dtype).itemsize * info.channels
    chunk = max(1, int(CHUNK_S * info.sample_rate)) * frame_bytes
    mono = np.empty(limit + 1, np.float32)  # pages are committed only as they are written
    n = clipped = 0
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors)
        expired = threading.Event()

        def expire():
            expired.set()
            proc.kill()

        timer = threading.Timer(DECODE_TIMEOUT_S, expire)
        timer.start()
        pending = b""
        try:
            while n <= limit:
                data = proc.stdout.read(chunk)
                if not data:
                    break
                data = pending + data
                usable = len(data) - len(data) % frame_bytes
                pending = data[usable:]
                raw = np.frombuffer(data[:usable], dtype).reshape(-1, info.channels)
                take = min(len(raw), limit + 1 - n)
                frames = raw[:take].astype(np.float32) / np.float32(full_scale)
                clipped += int(np.count_nonzero(np.abs(frames) >= CLIP_LEVEL))
                mono[n:n + take] = frames.mean(axis=1, dtype=np.float64)
                n += take
            if n > limit:  # the rest is never decoded
                proc.kill()
        except BaseException:
            proc.kill()
            raise
        finally:
            proc.stdout.close()
            code = proc.wait()
            timer.cancel()
        if n > limit:
            raise TooLongError(_too_long(path, f"more than {max_duration_s / 60:.1f} min", max_duration_s))
        if code != 0:
            errors.seek(0)
            reason = _ffmpeg_reason(errors.read(64 * 1024).decode(errors="replace"))
            if expired.is_set():
                reason = f"decoding took longer than {DECODE_TIMEOUT_S:.0f} s"
            raise NotAudioError(f"{path.name} could not be decoded: it is not audio, or it is damaged ({reason})")
    return mono[:n], clipped / max(1, n * info.channels)


def _ffmpeg_reason(message: str) -> str:
    """The last meaningful ffmpeg line of its error output."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    useful = [ln for ln in lines if "rror" in ln or "nvalid" in ln or "not found" in ln]
    return (useful or lines or ["unknown error"])[-1][:200]
