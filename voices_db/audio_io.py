"""Reading and writing the library's canonical audio: 16-bit PCM WAV, mono.

Kept dependency-free (stdlib ``wave`` + numpy) so the database layer, its migrations and
the prompt store can read clips without ffmpeg.
"""

from __future__ import annotations

import hashlib
import math
import wave
from pathlib import Path

import numpy as np

from voices_db.errors import CorruptLibraryError


def float_to_pcm16(wav: np.ndarray) -> np.ndarray:
    """float32 in [-1, 1] -> int16, rounded (not truncated) and clipped."""
    return np.clip(np.round(np.asarray(wav, dtype=np.float64) * 32767.0), -32768, 32767).astype(np.int16)


def pcm16_to_float(pcm: np.ndarray) -> np.ndarray:
    """int16 -> float32 in [-1, 1)."""
    return (np.asarray(pcm, dtype=np.int16).astype(np.float32) / 32768.0).astype(np.float32)


def write_wav_pcm16(path: str | Path, pcm: np.ndarray, sample_rate: int) -> None:
    """Write mono int16 samples as a plain RIFF/WAVE file."""
    pcm = np.ascontiguousarray(pcm, dtype="<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(int(sample_rate))
        out.writeframes(pcm.tobytes())


def read_wav_pcm16(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a mono 16-bit WAV written by the library: (int16 samples, sample rate)."""
    try:
        with wave.open(str(path), "rb") as src:
            if src.getnchannels() != 1 or src.getsampwidth() != 2:
                raise CorruptLibraryError(f"{path}: expected mono 16-bit PCM WAV")
            rate = src.getframerate()
            data = src.readframes(src.getnframes())
    except (wave.Error, EOFError) as exc:
        raise CorruptLibraryError(f"{path}: not a readable WAV file ({exc})") from exc
    return np.frombuffer(data, dtype="<i2").astype(np.int16), rate


def is_canonical_wav(path: str | Path, sample_rate: int = 24000) -> bool:
    """True when ``path`` is already a mono 16-bit PCM WAV at ``sample_rate``."""
    try:
        with wave.open(str(path), "rb") as src:
            return (src.getnchannels(), src.getsampwidth(), src.getframerate()) == (1, 2, sample_rate)
    except (wave.Error, EOFError, OSError):
        return False


def pcm_sha256(pcm: np.ndarray) -> str:
    """Hash of the samples themselves (little-endian int16), independent of WAV headers."""
    return hashlib.sha256(np.ascontiguousarray(pcm, dtype="<i2").tobytes()).hexdigest()


def rms_dbfs(wav: np.ndarray) -> float:
    """RMS level in dB relative to full scale (float audio in [-1, 1]); -inf for silence."""
    wav = np.asarray(wav, dtype=np.float64)
    if wav.size == 0:
        return float("-inf")
    rms = math.sqrt(float(np.mean(wav * wav)))
    return 20.0 * math.log10(rms) if rms > 0 else float("-inf")
