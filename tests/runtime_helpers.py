"""Shared by the runtime tests: the tiny checkpoints loaded once, voices made from a
synthetic clip through the real encoders, and the one-shot reference decode."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

FIXTURES = Path(__file__).parent / "fixtures"


@functools.lru_cache(maxsize=None)
def tiny_model(shape: str = "a"):
    """The tiny checkpoint with its codec decoder and encoder attached (float32, CPU)."""
    from engine import load_model

    return load_model(FIXTURES / f"tiny_{shape}", device="cpu", dtype=torch.float32)


def reference_clip(seconds: float = 1.5, sr: int = 24000) -> np.ndarray:
    """A voiced-sounding synthetic clip: harmonics of a gliding pitch, syllable-rate envelope."""
    t = np.arange(int(seconds * sr)) / sr
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    wav = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return (0.3 * wav * envelope / np.abs(wav).max()).astype(np.float32)


@functools.lru_cache(maxsize=None)
def voice(shape: str = "a", mode: str = "icl"):
    """A VoicePrompt made by the real speaker and codec encoders of the tiny checkpoint."""
    transcript = "This is the reference clip." if mode == "icl" else None
    return tiny_model(shape).create_voice_prompt(reference_clip(), 24000, transcript)


def one_shot(model, codes: torch.Tensor, voice=None) -> np.ndarray:
    """decode(generate_codes(...)) as the official wrapper does it: with ICL the reference
    codes are decoded in front and their samples cut off."""
    decoder = model.codec_decoder
    if voice is not None and voice.mode == "icl":
        ref = voice.ref_codes
        wav = decoder.decode(torch.cat([ref, codes.to(ref.device)]))
        return wav[ref.shape[0] * decoder.config.hop:].numpy()
    return decoder.decode(codes).numpy()
