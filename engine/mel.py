"""Log-mel spectrogram fed to the speaker encoder.

Reproduces the official feature (`mel_spectrogram` in qwen_tts' modeling_qwen3_tts.py) without
librosa: 128 Slaney-scale mel bands with Slaney area normalization, a Hann-windowed STFT of
magnitude sqrt(re^2 + im^2 + 1e-9), and natural log of the mel energies clamped at 1e-5.

The official call pads (n_fft - hop) / 2 samples on each side by reflection and then runs the
STFT with center=False, so frame i covers samples [i*hop - 384, i*hop + 640) of the input and a
clip of N samples yields (N + 2*384 - 1024) // 256 + 1 frames.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# Slaney's mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above.
_F_SP = 200.0 / 3.0
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


@dataclass(frozen=True)
class MelConfig:
    """STFT and filterbank parameters; the defaults are the speaker encoder's."""

    sample_rate: int = 24000
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float = 12000.0


SPEAKER_MEL = MelConfig()


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / _F_SP
    high = hz >= _MIN_LOG_HZ
    mel[high] = _MIN_LOG_MEL + np.log(hz[high] / _MIN_LOG_HZ) / _LOGSTEP
    return mel


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    hz = mel * _F_SP
    high = mel >= _MIN_LOG_MEL
    hz[high] = _MIN_LOG_HZ * np.exp(_LOGSTEP * (mel[high] - _MIN_LOG_MEL))
    return hz


@functools.lru_cache(maxsize=8)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Slaney-normalized triangular filters, float32 [n_mels, n_fft // 2 + 1].

    Same construction as librosa.filters.mel(htk=False, norm="slaney"): band edges equally
    spaced on the Slaney mel scale, triangles over the FFT bin centre frequencies, each scaled
    by 2 / (upper edge - lower edge) so every band has about the same area.
    """
    bin_hz = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)  # [F] FFT bin centre frequencies
    edges_hz = _mel_to_hz(np.linspace(_hz_to_mel(np.array([fmin]))[0], _hz_to_mel(np.array([fmax]))[0], n_mels + 2))
    widths = np.diff(edges_hz)  # [n_mels + 1]
    offsets = edges_hz[:, None] - bin_hz[None, :]  # [n_mels + 2, F]
    rising = -offsets[:-2] / widths[:-1, None]
    falling = offsets[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)
    area_norm = 2.0 / (edges_hz[2:] - edges_hz[:-2])
    weights *= area_norm[:, None]  # float32 in place, as librosa does
    weights.setflags(write=False)
    return weights


def num_frames(num_samples: int, cfg: MelConfig = SPEAKER_MEL) -> int:
    """Number of mel frames the official padding rule yields for a clip of `num_samples`."""
    pad = (cfg.n_fft - cfg.hop_length) // 2
    return (num_samples + 2 * pad - cfg.n_fft) // cfg.hop_length + 1


def log_mel_spectrogram(wav: torch.Tensor, cfg: MelConfig = SPEAKER_MEL) -> torch.Tensor:
    """wav [B, N] or [N] float in [-1, 1] at cfg.sample_rate -> log-mel [B, n_mels, frames].

    Computed in float32 whatever the input dtype (the official feature is float32 too).
    """
    if wav.dim() == 1:
        wav = wav[None]
    wav = wav.float()
    pad = (cfg.n_fft - cfg.hop_length) // 2
    if wav.shape[-1] <= pad:
        raise ValueError(f"audio of {wav.shape[-1]} samples is too short for a {cfg.n_fft}-point mel")
    # Reflect-pad by (n_fft - hop) / 2 and run an uncentred STFT: frames are centred on
    # hop/2 + i*hop rather than i*hop, exactly as the official feature.
    wav = F.pad(wav[:, None], (pad, pad), mode="reflect")[:, 0]  # [B, N + 2*pad]
    window = torch.hann_window(cfg.win_length, device=wav.device)
    spec = torch.stft(
        wav, cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length, window=window,
        center=False, normalized=False, onesided=True, return_complex=True,
    )  # [B, F, frames]
    magnitude = torch.sqrt(torch.view_as_real(spec).pow(2).sum(-1) + 1e-9)
    basis = torch.from_numpy(mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax).copy())
    mel = torch.matmul(basis.to(wav.device), magnitude)  # [B, n_mels, frames]
    return torch.log(torch.clamp(mel, min=1e-5))
