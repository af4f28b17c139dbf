"""Real audio for the ingest tests, made once per test session and shared across modules.

Everything is generated at test time (espeak-ng for speech, ffmpeg for containers) into one
temporary folder; module-level caching (not pytest fixtures) lets several test modules
share the clips, the Whisper model and the long-passage result without a conftest.
"""

from __future__ import annotations

import atexit
import functools
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ingest.bench import SENTENCES, synth_passage

GRADIO_AUDIO = Path(__import__("gradio").__file__).parent / "media_assets" / "audio"
CATE_TEXT = "I sleep with a dagger. If you so much as move to touch me, I will sever your mind. You understand?"
# pauses after each sentence of the long passage: two of them long enough to be shortened
LONG_PAUSES = [0.45, 0.8, 0.5, 2.2, 0.6, 0.9, 0.4, 0.7, 1.6, 0.5, 0.8, 0.6, 0.5, 0.9, 0.6]


@functools.lru_cache(maxsize=None)
def workdir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="ingest-tests-"))
    atexit.register(shutil.rmtree, path, True)
    return path


@functools.lru_cache(maxsize=None)
def transcriber():
    from ingest.transcribe import Transcriber

    return Transcriber()


@dataclass(frozen=True)
class Passage:
    path: Path
    sentences: tuple[tuple[str, float, float], ...]  # (text, start s, end s) in the file

    @property
    def text(self) -> str:
        return " ".join(s for s, _, _ in self.sentences)


@functools.lru_cache(maxsize=None)
def long_passage() -> Passage:
    """16 espeak sentences with pauses of 0.4-2.2 s: about 70 s of English."""
    path = workdir() / "long.wav"
    spans = synth_passage(path, SENTENCES, LONG_PAUSES, lead_s=0.7, tail_s=0.6)
    return Passage(path, tuple(spans))


@functools.lru_cache(maxsize=None)
def processed_long_passage():
    """The pipeline's result on the long passage (Whisper runs once for all tests)."""
    from ingest.pipeline import process_clip

    return process_clip(long_passage().path, transcriber())


@functools.lru_cache(maxsize=None)
def padded_clip() -> Passage:
    """Two sentences between 5 s of leading and 6 s of trailing near-silence (noise at
    -70 dBFS), with a 2.5 s pause between them: a third of the file is speech."""
    path = workdir() / "padded.wav"
    spans = synth_passage(path, SENTENCES[4:6], [2.5], lead_s=5.0, tail_s=6.0)
    pcm, sr = read_pcm(path)
    noise = np.random.default_rng(0).normal(0, 32768 * 10 ** (-70 / 20), len(pcm))
    write_pcm(path, np.clip(pcm + noise, -32768, 32767).astype(np.int16), sr)
    return Passage(path, tuple(spans))


@functools.lru_cache(maxsize=None)
def short_passage() -> Passage:
    """Three sentences (about 12 s): the source of the mp3 and webm uploads."""
    path = workdir() / "short.wav"
    return Passage(path, tuple(synth_passage(path, SENTENCES[8:11], [0.5, 0.6], lead_s=0.3, tail_s=0.3)))


def convert(src: Path, suffix: str, *args: str) -> Path:
    """ffmpeg ``src`` -> a sibling file with ``suffix`` (extra ffmpeg output args)."""
    dst = src.with_name(f"{src.stem}-{'-'.join(a.strip('-') for a in args) or 'x'}{suffix}")
    if not dst.exists():
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), *args, str(dst)], check=True)
    return dst


def read_pcm(path: Path) -> tuple[np.ndarray, int]:
    import wave

    with wave.open(str(path), "rb") as f:
        assert f.getsampwidth() == 2
        data = np.frombuffer(f.readframes(f.getnframes()), "<i2").reshape(-1, f.getnchannels())
        return data[:, 0].copy(), f.getframerate()


def write_pcm(path: Path, pcm: np.ndarray, sr: int) -> None:
    from voices_db.audio_io import write_wav_pcm16

    write_wav_pcm16(path, pcm, sr)


def words(text: str) -> list[str]:
    return [w for w in re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split() if w]


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate (Levenshtein over normalized words)."""
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i in range(1, len(ref) + 1):
        prev, row[0] = row[:], i
        for j in range(1, len(hyp) + 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (ref[i - 1] != hyp[j - 1]))
    return row[-1] / max(1, len(ref))


def dbfs(x: np.ndarray) -> float:
    x = np.asarray(x, np.float64)
    return 20 * np.log10(max(np.sqrt(np.mean(x * x)), 1e-12))
