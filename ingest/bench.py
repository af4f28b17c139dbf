"""``python -m ingest.bench``: the two figures of the voice library (no engine needed).

1. Ingest of a 60 s clip end to end (decode, VAD, two Whisper passes, store) with the
   bundled tiny.en model, as a fraction of the clip's duration (target <= 0.5).
2. One page of the voice list with 10,000 voices stored against the same page with 100
   (target <= 2x: a page must not scale with the library).

The clip is English speech from espeak-ng (sentences with pauses), as in the tests.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import tempfile
import time
import wave
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from voices_db import VoiceStore

SENTENCES = (
    "The morning train was late again, so we walked to the old bridge.",
    "My sister likes to read books about the history of the sea.",
    "We planted three small trees in the garden behind the house.",
    "The weather turned cold, and everyone stayed inside to keep warm.",
    "He wrote a long letter to his friend who lives in the city.",
    "After dinner, the children played a game of cards by the fire.",
    "The shop on the corner sells fresh bread every single day.",
    "She opened the window and listened to the birds in the park.",
    "Our teacher asked us to write a short story about a dog.",
    "The river was quiet, and the boats moved slowly down the stream.",
    "They bought a new table and four chairs for the kitchen.",
    "When the rain stopped, we went outside to look at the sky.",
    "My father fixed the old radio that was broken for years.",
    "The small cat slept all afternoon on the warm stone wall.",
    "We met our neighbors at the market on Saturday morning.",
    "The lights in the tall building went out just after midnight.",
)


def espeak(text: str, path: Path, voice: str = "en-us", speed: int = 150) -> tuple[np.ndarray, int]:
    """Speak ``text`` with espeak-ng into ``path``; returns (int16 samples, rate)."""
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True)
    with wave.open(str(path), "rb") as f:
        return np.frombuffer(f.readframes(f.getnframes()), "<i2").copy(), f.getframerate()


def synth_passage(path: Path, sentences, pauses, lead_s: float = 0.0, tail_s: float = 0.0, voice: str = "en-us"):
    """Sentences spoken one by one, joined by the given pauses (digital silence), as a WAV.

    Returns a list of (sentence, start_s, end_s): where each sentence's sound lies in the
    file (espeak's own edge silence excluded), so tests know the true speech positions.
    """
    parts, spans, cursor, rate = [], [], 0, 22050
    scratch = Path(path).with_suffix(".part.wav")
    parts.append(np.zeros(int(lead_s * rate), np.int16))
    cursor += len(parts[0])
    for i, text in enumerate(sentences):
        pcm, rate = espeak(text, scratch, voice)
        loud = np.flatnonzero(np.abs(pcm) > 100)
        spans.append((text, (cursor + loud[0]) / rate, (cursor + loud[-1] + 1) / rate))
        gap = np.zeros(int((pauses[i] if i < len(sentences) - 1 else tail_s) * rate), np.int16)
        parts += [pcm, gap]
        cursor += len(pcm) + len(gap)
    scratch.unlink()
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(np.concatenate(parts).tobytes())
    return spans


def bench_ingest(work: Path, seconds: float, runs: int) -> dict:
    from ingest.library import add_voice
    from ingest.transcribe import Transcriber
    from voices_db import VoiceStore

    n = max(1, math.ceil(seconds / 4.75))  # ~3.9 s of speech + ~0.8 s of pause per sentence
    clip = work / "clip.wav"
    sentences = [SENTENCES[i % len(SENTENCES)] for i in range(n)]
    pauses = [(0.4, 0.9, 0.6, 1.4, 0.5, 0.7)[i % 6] for i in range(n)]
    spans = synth_passage(clip, sentences, pauses, lead_s=0.5, tail_s=0.5)
    mp3 = work / "clip.mp3"  # what a browser upload looks like: compressed, stereo, 44.1 kHz
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(clip), "-ac", "2", "-ar", "44100", str(mp3)], check=True)
    duration = spans[-1][2] + 0.5
    transcriber = Transcriber()
    times = []
    with VoiceStore(work / "data") as store:
        for i in range(runs):
            start = time.perf_counter()
            voice = add_voice(store, mp3, f"Bench {i}", transcriber=transcriber)
            times.append(time.perf_counter() - start)
    return {
        "clip_seconds": round(duration, 2),
        "kept_seconds": voice.duration,
        "first_run_seconds": round(times[0], 2),  # includes loading Whisper
        "best_run_seconds": round(min(times), 2),
        "ratio_first": round(times[0] / duration, 3),
        "ratio_best": round(min(times) / duration, 3),
        "stage_timings": voice.ingest_report.get("timings"),
    }


def fill_library(data_dir: Path, count: int) -> "VoiceStore":
    """A library with ``count`` voice rows (rows only: listing never reads the audio)."""
    from voices_db import VoiceStore
    from voices_db.schema import VoiceRow

    store = VoiceStore(data_dir)
    rng = np.random.default_rng(count)
    now = "2025-01-01T00:00:00.000000+00:00"
    report = json.dumps({  # the size of a real (compact) ingest report
        "pipeline_version": 1, "source": {"sample_rate": 44100, "channels": 2, "codec": "mp3", "duration": 61.2},
        "speech_seconds": 52.1, "trimmed_duration": 58.3, "source_intervals": [[12.1, 18.9], [19.7, 24.6]],
        "span": {"start": 11.2, "end": 22.9, "start_kind": "sentence", "end_kind": "sentence", "hard_cut": False},
        "gain_db": 4.2, "peak_limited": False,
        "whisper": {"model": "tiny.en", "language": "en", "language_probability": 1.0, "avg_logprob": -0.3},
        "timings": {"decode": 0.4, "vad": 0.2, "transcribe_full": 4.1, "span": 0.03, "transcribe_kept": 1.2},
    })
    warnings = json.dumps([{"code": "low_sample_rate", "message": "the source was recorded at 22050 Hz"}])
    with store._write() as session:  # bulk rows, one transaction (a benchmark shortcut)
        for i in range(count):
            name = f"Voice {rng.integers(0, 10**9):09d} {i}"
            session.add(VoiceRow(
                id=f"v{i:06d}", name=name, name_key=name.casefold(), description="", language="en",
                tags="[]", transcript="A short transcript of the clip. " * 4, transcript_source="user",
                audio_file=f"voices/v{i:06d}/reference.wav", duration=10.0, sample_rate=24000,
                loudness_dbfs=-20.0, audio_sha256="0" * 64, warnings=warnings, ingest_report=report,
                is_default=i == 0, version=1, created_at=now, updated_at=now))
    return store


def bench_listing(work: Path, counts: tuple[int, ...], page: int, repeat: int) -> dict:
    out = {}
    for count in counts:
        with fill_library(work / f"lib{count}", count) as store:
            first = _median_time(lambda: store.list_page(page), repeat)
            middle_cursor = _cursor_at(store, page, count // 2)
            middle = _median_time(lambda: store.list_page(page, middle_cursor), repeat)
            out[count] = {"first_page_ms": round(first * 1e3, 3), "middle_page_ms": round(middle * 1e3, 3)}
    small, large = out[counts[0]], out[counts[-1]]
    out["ratio_first_page"] = round(large["first_page_ms"] / small["first_page_ms"], 2)
    out["ratio_middle_page"] = round(large["middle_page_ms"] / small["middle_page_ms"], 2)
    return out


def _cursor_at(store, page: int, index: int):
    cursor = None
    for _ in range(index // page):
        cursor = store.list_page(page, cursor).next_cursor
    return cursor


def _median_time(fn, repeat: int) -> float:
    fn()  # warm the connection pool and SQLite's page cache
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingest.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the ingested clip")
    parser.add_argument("--runs", type=int, default=2, help="ingest runs (the first loads Whisper)")
    parser.add_argument("--page", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=100)
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--skip-listing", action="store_true")
    args = parser.parse_args(argv)
    result = {}
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        if not args.skip_ingest:
            result["ingest"] = bench_ingest(Path(tmp), args.seconds, args.runs)
        if not args.skip_listing:
            result["listing"] = bench_listing(Path(tmp), (100, 10_000), args.page, args.repeat)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
