"""Reference audio for voice prompts: checked, mixed to mono, resampled to the model rate.

Resampling is band-limited (libsoxr, "HQ" quality): content above the new Nyquist frequency is
filtered out instead of folding back as aliasing, which naive interpolation would do. It is
the resampler the official pipeline uses too (librosa's default `soxr_hq`), with the same
output length, ceil(N * target / source), so the codes and x-vectors we compute from a clip at
any rate equal the official ones.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from engine.errors import AudioInputError

MODEL_SAMPLE_RATE = 24000
MIN_SECONDS = 1.0
SILENCE_PEAK = 1e-3  # -60 dBFS: a peak below this is silence (or a broken capture)
MAX_FLOAT_PEAK = 2.0  # float samples above this are integer PCM mistaken for float
MAX_CHANNELS = 8
MIN_RATE, MAX_RATE = 8000, 384000
# Silence appended to an ICL reference before it is encoded. The model continues the
# reference; a clip cut right after its last phoneme makes the first generated phoneme
# continue that one, a known Qwen3-TTS artefact that half a second of silence removes.
REFERENCE_SILENCE_S = 0.5


def to_mono(wav) -> np.ndarray:
    """A numpy array or torch tensor -> mono float32 [N] (not yet checked for content).

    Integer PCM is scaled to [-1, 1). 2-D input is [N, C] (soundfile) or [C, N] (torch): the
    channel axis is the one with at most 8 entries; channels are averaged.
    """
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().cpu().numpy()
    if not isinstance(wav, np.ndarray):
        raise AudioInputError(f"audio must be a numpy array or torch tensor, got {type(wav).__name__}")
    if wav.dtype.kind in "iu":
        info = np.iinfo(wav.dtype)
        wav = (wav.astype(np.float64) - (info.max + 1 + info.min) / 2) / ((info.max - info.min + 1) / 2)
    elif wav.dtype.kind != "f":
        raise AudioInputError(f"audio samples must be numbers, got dtype {wav.dtype}")
    if wav.ndim == 2:
        if wav.shape[1] <= MAX_CHANNELS and wav.shape[0] > wav.shape[1]:
            wav = wav.mean(axis=1)  # [N, C]
        elif wav.shape[0] <= MAX_CHANNELS and wav.shape[1] > wav.shape[0]:
            wav = wav.mean(axis=0)  # [C, N]
        else:
            raise AudioInputError(f"cannot tell channels from samples in audio of shape {wav.shape}; "
                                  "pass mono [N] or [N, channels]")
    elif wav.ndim != 1:
        raise AudioInputError(f"audio must be 1-D (mono) or 2-D (channels), got shape {wav.shape}")
    return np.ascontiguousarray(wav, dtype=np.float32)


def check_audio(wav: np.ndarray, sr: int, *, min_seconds: float = MIN_SECONDS) -> None:
    """Raise AudioInputError unless `wav` (mono float32) at `sr` is usable as reference audio."""
    if wav.size == 0:
        raise AudioInputError("the audio is empty (0 samples)")
    if not np.isfinite(wav).all():
        bad = int((~np.isfinite(wav)).sum())
        raise AudioInputError(f"the audio contains {bad} NaN or infinite samples")
    seconds = wav.size / sr
    if seconds < min_seconds:
        raise AudioInputError(f"the audio is {seconds:.2f} s long; a voice reference needs at least "
                              f"{min_seconds:g} s of speech")
    peak = float(np.abs(wav).max())
    if peak < SILENCE_PEAK:
        raise AudioInputError(f"the audio is silent (peak {20 * math.log10(max(peak, 1e-12)):.0f} dBFS); "
                              "record or upload a clip with speech")
    if peak > MAX_FLOAT_PEAK:
        raise AudioInputError(f"float samples reach {peak:.3g}; audio must lie in [-1, 1] "
                              "(integer PCM passed as float? divide by 32768)")


def check_rate(sr) -> int:
    """The sample rate as an int, or AudioInputError."""
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer, float)) or sr != int(sr):
        raise AudioInputError(f"sample rate must be a whole number of Hz, got {sr!r}")
    if not MIN_RATE <= int(sr) <= MAX_RATE:
        raise AudioInputError(f"sample rate {sr} Hz is outside the supported {MIN_RATE}..{MAX_RATE} Hz")
    return int(sr)


def resample(wav: np.ndarray, orig_sr: int, target_sr: int = MODEL_SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling of mono float32 audio; output length ceil(N * target / orig)."""
    if orig_sr == target_sr:
        return wav
    import soxr  # here, not at import: the engine's import needs only torch, numpy, safetensors, tokenizers

    out = soxr.resample(np.ascontiguousarray(wav, dtype=np.float32), orig_sr, target_sr, quality="HQ")
    # The length rule of librosa.resample (the official path), float ratio included, so that
    # clip lengths, and hence code counts, agree with the official prompt to the sample.
    length = int(np.ceil(wav.shape[0] * (float(target_sr) / orig_sr)))
    if out.shape[0] < length:  # soxr rounds the length; pad the last fraction of a sample
        out = np.pad(out, (0, length - out.shape[0]))
    return np.ascontiguousarray(out[:length], dtype=np.float32)


def load_reference(wav, sr, target_sr: int = MODEL_SAMPLE_RATE, *,
                   min_seconds: float = MIN_SECONDS) -> np.ndarray:
    """Any-rate, any-layout audio -> checked mono float32 [N] at `target_sr`.

    Raises AudioInputError for unusable audio: empty, non-finite, shorter than `min_seconds`,
    silent, out of range, or an unsupported shape or rate.
    """
    sr = check_rate(sr)
    mono = to_mono(wav)
    check_audio(mono, sr, min_seconds=min_seconds)
    return resample(mono, sr, target_sr)


def append_silence(wav: np.ndarray, sr: int, seconds: float) -> np.ndarray:
    """Mono float32 audio with `seconds` of silence appended (0 <= seconds <= 5; 0: unchanged)."""
    if not isinstance(seconds, (int, float)) or not 0 <= seconds <= 5:
        raise AudioInputError(f"reference silence must be between 0 and 5 seconds, got {seconds!r}")
    mono = to_mono(wav)
    pad = int(round(float(sr) * seconds))
    return np.concatenate([mono, np.zeros(pad, dtype=np.float32)]) if pad else mono
