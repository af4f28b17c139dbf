"""Level: remove DC, bring the clip toward -20 dBFS RMS with one linear gain, never above a
0.9 peak. No compression, no limiting, no denoising: the voice is kept as recorded."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from voices_db.audio_io import rms_dbfs

TARGET_DBFS = -20.0
PEAK_CEILING = 0.9


@dataclass(frozen=True)
class Leveled:
    wav: np.ndarray
    gain_db: float
    rms_dbfs: float  # after the gain
    peak: float  # after the gain
    peak_limited: bool  # the ceiling, not the target, set the gain


def level(wav: np.ndarray, target_dbfs: float = TARGET_DBFS, ceiling: float = PEAK_CEILING) -> Leveled:
    """One gain for the whole clip: the smaller of "reach ``target_dbfs``" and "peak at
    ``ceiling``" (so loud clips come down to the target too, and a clip already over the
    ceiling is brought under it)."""
    wav = np.asarray(wav, dtype=np.float64)
    wav = wav - wav.mean()  # DC offset: wastes headroom and thumps at cuts
    peak = float(np.max(np.abs(wav))) if wav.size else 0.0
    if peak == 0.0:
        return Leveled(wav.astype(np.float32), 0.0, float("-inf"), 0.0, False)
    to_target = 10 ** ((target_dbfs - rms_dbfs(wav)) / 20)
    to_ceiling = ceiling / peak
    gain = min(to_target, to_ceiling)
    out = (wav * gain).astype(np.float32)
    return Leveled(out, 20 * np.log10(gain), rms_dbfs(out), float(np.max(np.abs(out))), to_ceiling < to_target)
