"""The ingest pipeline on real audio (espeak-ng, ffmpeg, recorded speech) with real Whisper."""

import functools
import os
import subprocess

import numpy as np
import pytest

from audio_fixtures import (
    CATE_TEXT,
    GRADIO_AUDIO,
    LONG_PAUSES,
    convert,
    dbfs,
    long_passage,
    padded_clip,
    processed_long_passage,
    read_pcm,
    short_passage,
    transcriber,
    wer,
    workdir,
)
from ingest.bench import SENTENCES, espeak, synth_passage
from ingest.errors import IngestError
from ingest.library import add_voice
from ingest.pipeline import process_clip
from voices_db import DuplicateVoiceError, VoiceStore

SR = 24000


def frame_db(pcm: np.ndarray, hop: int = 240) -> np.ndarray:
    x = pcm.astype(np.float64) / 32768
    n = len(x) // hop
    return np.array([dbfs(x[i * hop:(i + 1) * hop]) for i in range(n)])


def edges(pcm: np.ndarray, floor_db: float = -50.0) -> tuple[float, float, float]:
    """(leading silence s, trailing silence s, longest inner silence s) at 10 ms frames."""
    loud = frame_db(pcm) > floor_db
    idx = np.flatnonzero(loud)
    runs, run = [], 0
    for flag in loud[idx[0]:idx[-1] + 1]:
        run = 0 if flag else run + 1
        runs.append(run)
    return idx[0] * 0.01, (len(loud) - 1 - idx[-1]) * 0.01, max(runs) * 0.01


def kept_sentences(clip, passage):
    """Sentences of the passage inside the clip's source intervals; fails on a partial one."""
    kept = []
    for text, start, end in passage.sentences:
        inside = [min(b, end) - max(a, start) for a, b in clip.report["source_intervals"] if b > start and a < end]
        covered = sum(inside)
        assert covered < 0.02 or covered > (end - start) - 0.02, f"sentence cut: {text!r}"
        if covered > 0.02:
            kept.append(text)
    return kept


def assert_level(clip):
    pcm = clip.pcm.astype(np.float64) / 32768
    peak, rms = np.abs(pcm).max(), dbfs(pcm)
    assert peak <= 0.9 + 1 / 32768
    assert rms <= -20 + 0.1
    assert rms >= -20 - 0.1 or peak >= 0.9 - 2 / 32768  # at the target, or held by the ceiling
    assert clip.loudness_dbfs == pytest.approx(rms, abs=0.02)
    assert abs(pcm.mean()) < 1e-3  # DC removed


def test_long_passage_keeps_10_to_12_s_between_sentences():
    passage, clip = long_passage(), processed_long_passage()
    assert 50 < passage.sentences[-1][2] < 90
    assert clip.sample_rate == SR and clip.pcm.dtype == np.int16 and clip.pcm.ndim == 1
    assert 8.0 <= clip.duration <= 15.0
    span = clip.report["span"]
    assert not span["hard_cut"] and {span["start_kind"], span["end_kind"]} <= {"sentence", "edge"}
    assert "hard_cut" not in [w["code"] for w in clip.warnings]
    # no word the cut was chosen against straddles a cut
    for text, start, end in span["words"]:
        for cut in (span["start"], span["end"]):
            assert not (start < cut < end), (text, start, end, cut)
    # every cut (span edges and shortened pauses) lies in silence of the source itself
    source, rate = read_pcm(passage.path)
    for a, b in clip.report["source_intervals"]:
        for cut in (a, b):
            i = int(cut * rate)
            assert np.abs(source[max(0, i - 300):i + 300]).max() < 200, f"cut at {cut:.2f} s is not silent"
            assert not any(s + 0.01 < cut < e - 0.01 for _, s, e in passage.sentences)
    kept = kept_sentences(clip, passage)
    assert 2 <= len(kept) <= 4
    assert wer(" ".join(kept), clip.transcript) <= 0.25, (kept, clip.transcript)
    assert clip.transcript_source == "whisper:tiny.en" and clip.language == "en"
    assert_level(clip)
    lead, tail, longest_pause = edges(clip.pcm)
    assert 0.05 <= lead <= 0.3 and tail <= 0.45 and longest_pause <= 1.1  # pauses over 1 s shortened


def test_edges_trimmed_and_long_pauses_shortened():
    passage = padded_clip()
    clip = process_clip(passage.path, transcriber())
    lead, tail, longest_pause = edges(clip.pcm)
    assert 0.05 <= lead <= 0.3, lead  # ~150 ms before the first speech
    assert tail <= 0.45, tail
    assert 0.3 <= longest_pause <= 0.6, longest_pause  # the 2.5 s pause, down to ~0.5 s
    speech = sum(e - s for _, s, e in passage.sentences)
    assert speech < clip.duration < speech + 1.2
    assert len(clip.report["source_intervals"]) == 2  # one piece per side of the shortened pause
    assert wer(passage.text, clip.transcript) <= 0.25, clip.transcript
    codes = {w["code"] for w in clip.warnings}
    assert {"low_speech_ratio", "low_sample_rate"} <= codes  # 22.05 kHz espeak, mostly silence
    assert "clipping" not in codes
    assert_level(clip)


@pytest.mark.parametrize("suffix, args, rate, channels", [
    (".mp3", ("-ac", "2", "-ar", "44100"), 44100, 2),
    (".webm", ("-c:a", "libopus", "-ac", "2", "-b:a", "48k"), 48000, 2),
])
def test_browser_formats_decode_to_24k_mono(suffix, args, rate, channels):
    passage = short_passage()
    upload = convert(passage.path, suffix, *args)
    clip = process_clip(upload, transcriber())
    assert clip.report["source"]["sample_rate"] == rate and clip.report["source"]["channels"] == channels
    assert clip.sample_rate == SR and clip.pcm.ndim == 1
    assert clip.report["span"] is None and 9.0 < clip.duration <= 15.0
    assert wer(passage.text, clip.transcript) <= 0.25, clip.transcript
    assert "low_sample_rate" not in {w["code"] for w in clip.warnings}
    assert_level(clip)


def test_real_recorded_speech():
    clip = process_clip(GRADIO_AUDIO / "cate_blanch.mp3", transcriber())
    assert clip.report["source"]["sample_rate"] == 32000
    assert wer(CATE_TEXT, clip.transcript) <= 0.25, clip.transcript
    assert 6.0 < clip.duration < 7.9  # edges trimmed
    assert "short" in {w["code"] for w in clip.warnings}  # 7 s: usable, but under 8 s
    assert_level(clip)


def test_user_transcript_wins():
    clip = process_clip(short_passage().path, transcriber(), transcript="  Exactly   what I typed. ")
    assert clip.transcript == "Exactly what I typed." and clip.transcript_source == "user"
    assert clip.report["whisper"] is None


def test_long_clip_with_user_transcript_keeps_the_matching_words():
    path = workdir() / "medium.wav"
    spans = synth_passage(path, SENTENCES[:7], LONG_PAUSES, lead_s=0.5, tail_s=0.5)
    passage_text = " ".join(s for s, _, _ in spans)
    clip = process_clip(path, transcriber(), transcript=passage_text)
    assert 8.0 <= clip.duration <= 15.0 and clip.transcript_source == "user"
    kept = kept_sentences(clip, type("P", (), {"sentences": spans})())
    assert clip.transcript == " ".join(kept)  # the user's own words and punctuation


def test_non_english_with_its_transcript_is_accepted():
    path = workdir() / "de.wav"
    text = "Der schnelle braune Fuchs springt über den faulen Hund. Eine Stimme ist nur so gut wie ihre Aufnahme."
    espeak(text, path, voice="de")
    clip = process_clip(path, transcriber(), transcript=text, language="de")
    assert clip.transcript == text and clip.language == "de"


# -- refusals: each with its message, and nothing left behind ---------------------------------


@functools.lru_cache(maxsize=None)
def _bad_inputs():
    root = workdir() / "bad"
    root.mkdir(exist_ok=True)
    (root / "notes.txt").write_text("this is not audio\n" * 50)
    (root / "empty.wav").write_bytes(b"")
    silence = root / "silence.wav"
    from voices_db.audio_io import write_wav_pcm16

    write_wav_pcm16(silence, np.zeros(SR * 5, np.int16), SR)
    noise = root / "noise.wav"
    write_wav_pcm16(noise, (np.random.default_rng(1).normal(0, 3000, SR * 6)).astype(np.int16), SR)
    m4a = convert(short_passage().path, ".m4a", "-c:a", "aac")
    truncated = root / "truncated.m4a"
    truncated.write_bytes(m4a.read_bytes()[: m4a.stat().st_size // 2])  # index at the end: lost
    huge = root / "huge.wav"
    with open(huge, "wb") as f:  # sparse: 51 MB on paper, nothing on disk
        f.truncate(51 * 2**20)
    too_long = root / "eleven-minutes.mp3"
    if not too_long.exists():
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "660",
                        "-b:a", "8k", str(too_long)], check=True)
    german = root / "german.wav"
    espeak("Der schnelle braune Fuchs springt über den faulen Hund. Eine geklonte Stimme ist nur so gut "
           "wie ihre Referenzaufnahme.", german, voice="de")
    return {
        "not_audio": (root / "notes.txt", {}, "could not be read as audio"),
        "empty": (root / "empty.wav", {}, "is empty"),
        "silence": (silence, {}, "the clip is silent"),
        "no_speech": (noise, {}, "no speech was found"),
        "truncated": (truncated, {}, "damaged"),
        "too_large": (huge, {}, "51.0 MB; the limit is 50 MB"),
        "too_long": (too_long, {}, "lasts 11.0 min; the limit is 10 min"),
        "too_short": (GRADIO_AUDIO / "heath_ledger.mp3", {}, "s of speech remain after trimming"),
        "transcript_needed": (german, {}, "may not be in English"),
        "transcript_needed_language": (german, {"language": "de"}, "please type the clip's transcript"),
    }


EXPECTED_CODE = {"truncated": "not_audio", "transcript_needed_language": "transcript_needed"}
BAD_CASES = ["not_audio", "empty", "silence", "no_speech", "truncated", "too_large", "too_long", "too_short",
             "transcript_needed", "transcript_needed_language"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_is_refused_and_leaves_nothing(case, tmp_path):
    path, kwargs, message = _bad_inputs()[case]
    data = tmp_path / "data"
    with VoiceStore(data) as store:
        with pytest.raises(IngestError) as info:
            add_voice(store, path, "Bad", transcriber=transcriber(), **kwargs)
        assert info.value.code == EXPECTED_CODE.get(case, case)
        assert message in str(info.value)
        assert store.count() == 0
    assert sorted(os.listdir(data)) == ["tmp", "voices", "voices.sqlite3"]
    assert os.listdir(data / "voices") == [] and os.listdir(data / "tmp") == []


def test_a_failed_store_after_processing_leaves_nothing(tmp_path):
    with VoiceStore(tmp_path) as store:
        kept = add_voice(store, short_passage().path, "First", transcript="typed", voice_id="taken")
        with pytest.raises(DuplicateVoiceError):
            add_voice(store, short_passage().path, "Second", transcript="typed", voice_id="taken")
        assert [v.id for v in store.iter_all()] == ["taken"] and store.get("taken").name == "First"
        assert sorted(os.listdir(store.layout.voices_dir)) == ["taken"]
        assert os.listdir(store.layout.tmp_dir) == []
        files = sorted(os.listdir(store.audio_path(kept).parent))
        assert files == ["original.wav", "reference.wav"]


def test_clipped_source_is_warned_about_and_kept_under_the_ceiling():
    pcm, rate = read_pcm(short_passage().path)
    hot = workdir() / "clipped.wav"
    from voices_db.audio_io import write_wav_pcm16

    write_wav_pcm16(hot, np.clip(pcm.astype(np.int32) * 8, -32768, 32767).astype(np.int16), rate)
    clip = process_clip(hot, transcriber(), transcript="typed")
    assert "clipping" in {w["code"] for w in clip.warnings}
    assert_level(clip)  # a hot clip comes down: peak <= 0.9, RMS <= -20 dBFS


def test_an_unavailable_whisper_model_falls_back_to_the_bundled_one():
    from ingest.transcribe import Transcriber

    fallback = Transcriber("no-such-whisper-model")
    clip = process_clip(GRADIO_AUDIO / "cate_blanch_2.mp3", fallback)
    assert clip.transcript_source == "whisper:tiny.en"
    assert wer("I trust you had an historic evening.", clip.transcript) <= 0.25, clip.transcript
    notes = [w["message"] for w in clip.warnings if w["code"] == "transcriber"]
    assert notes and "'no-such-whisper-model' could not be loaded" in notes[0]
