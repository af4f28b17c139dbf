"""Voice prompt cache: keys, and memory LRU -> SQLite -> engine with the real tiny model."""

import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from voices_db import CorruptLibraryError, NewVoice, PromptStore, PromptUnavailableError, VoiceStore, prompt_key
from voices_db.audio_io import pcm_sha256, write_wav_pcm16

FIXTURES = Path(__file__).parent / "fixtures"
TEXT = "The small cat slept all afternoon."


def test_a_local_checkpoint_is_identified_by_its_files(tmp_path):
    from voices_db.prompts import model_identity

    (tmp_path / "model.safetensors").write_bytes(b"weights")
    model = SimpleNamespace(model_id=str(tmp_path), revision=None)
    first = model_identity(model)
    assert first[1].startswith("local-") and model_identity(model) == first
    (tmp_path / "model.safetensors").write_bytes(b"other weights")
    assert model_identity(model) != first  # replaced weights: new key, no stale prompt
    assert model_identity(SimpleNamespace(model_id="Qwen/x", revision="abc")) == ("Qwen/x", "abc")


def test_key_covers_everything_a_prompt_depends_on():
    base = dict(audio_sha256="a" * 64, transcript="hello", mode="icl", model_id="m", revision="r")
    key = prompt_key(**base)
    for field, other in [("audio_sha256", "b" * 64), ("transcript", "hello!"), ("mode", "xvector"),
                         ("model_id", "m2"), ("revision", "r2")]:
        assert prompt_key(**{**base, field: other}) != key, field
    xvec = {**base, "mode": "xvector"}
    assert prompt_key(**{**xvec, "transcript": "anything else"}) == prompt_key(**xvec)  # not part of it
    with pytest.raises(ValueError):
        prompt_key(**{**base, "mode": "other"})


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 24 kHz mono 16-bit clip of espeak-ng speech."""
    import soxr

    from voices_db.audio_io import float_to_pcm16, read_wav_pcm16

    folder = tmp_path_factory.mktemp("clip")
    raw = folder / "raw.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(raw), TEXT], check=True)
    pcm, sr = read_wav_pcm16(raw)
    wav = soxr.resample(pcm.astype(np.float32) / 32768, sr, 24000)
    out = folder / "reference.wav"
    write_wav_pcm16(out, float_to_pcm16(wav), 24000)
    return out


def add_voice(store: VoiceStore, clip: Path, transcript: str = TEXT):
    from voices_db.audio_io import read_wav_pcm16

    pcm, sr = read_wav_pcm16(clip)
    with store.staging_dir() as stage:
        (stage / "reference.wav").write_bytes(clip.read_bytes())
        new = NewVoice(name="Cat", duration=len(pcm) / sr, sample_rate=sr, audio_sha256=pcm_sha256(pcm),
                       transcript=transcript)
        return store.create_voice(new, stage)


def test_without_a_model_or_transcript_nothing_is_served(tmp_path, clip):
    with VoiceStore(tmp_path) as store:
        voice = add_voice(store, clip, transcript="")
        prompts = PromptStore(store, model=None)
        with pytest.raises(PromptUnavailableError, match="no TTS model is loaded"):
            prompts.get(voice.id, "xvector")
        prompts.model = SimpleNamespace(model_id="any", revision="r")  # the transcript check comes first
        with pytest.raises(PromptUnavailableError, match="no transcript"):
            prompts.get(voice.id, "icl")


def _load_tiny(name: str):
    engine = pytest.importorskip("engine")
    load_model = getattr(engine, "load_model", None)
    if load_model is None or not (FIXTURES / name / "config.json").is_file():
        pytest.skip("the engine's load_model or the tiny checkpoint is not available yet")
    import torch

    model = load_model(str(FIXTURES / name), device="cpu", dtype=torch.float32)
    if not hasattr(model, "create_voice_prompt"):
        pytest.skip("the engine's create_voice_prompt is not available yet")
    return model


@pytest.fixture(scope="module")
def tiny_a():
    return _load_tiny("tiny_a")


def _same(p, q) -> bool:
    import torch

    codes_equal = (p.ref_codes is None and q.ref_codes is None) or torch.equal(p.ref_codes, q.ref_codes)
    return torch.equal(p.xvector, q.xvector) and codes_equal and p.ref_text == q.ref_text and p.mode == q.mode


def test_memory_then_database_then_engine(tmp_path, clip, tiny_a):
    with VoiceStore(tmp_path) as store:
        voice = add_voice(store, clip)
        prompts = PromptStore(store, tiny_a)
        icl = prompts.get(voice.id, "icl")
        assert prompts.stats == {"memory": 0, "database": 0, "computed": 1}
        assert icl.mode == "icl" and icl.ref_text == TEXT and icl.model_id == tiny_a.model_id
        assert icl.ref_codes.shape[1] == 16 and icl.ref_codes.shape[0] > 0
        assert prompts.get(voice.id, "icl") is icl  # memory
        assert prompts.stats["memory"] == 1
        xvec = prompts.get(voice.id, "xvector")
        assert xvec.mode == "xvector" and xvec.ref_codes is None
        # a fresh process-level cache finds both in SQLite, equal to what was computed
        again = PromptStore(store, tiny_a)
        assert _same(again.get(voice.id, "icl"), icl) and _same(again.get(voice.id, "xvector"), xvec)
        assert again.stats == {"memory": 0, "database": 2, "computed": 0}
        # what the engine computes from the stored clip is what was cached
        assert _same(prompts._compute(store.get(voice.id), "icl"), icl)


def test_transcript_edit_invalidates_icl_not_xvector(tmp_path, clip, tiny_a):
    with VoiceStore(tmp_path) as store:
        voice = add_voice(store, clip)
        prompts = PromptStore(store, tiny_a)
        old_icl, old_xvec = prompts.get(voice.id, "icl"), prompts.get(voice.id, "xvector")
        store.update_voice(voice.id, transcript="The small cat slept all day.")
        fresh = PromptStore(store, tiny_a)  # no memory: what the database serves
        new_icl = fresh.get(voice.id, "icl")
        assert new_icl.ref_text == "The small cat slept all day." and new_icl is not old_icl
        assert fresh.stats["computed"] == 1
        assert _same(fresh.get(voice.id, "xvector"), old_xvec)
        assert fresh.stats == {"memory": 0, "database": 1, "computed": 1}
        assert prompts.get(voice.id, "icl").ref_text == "The small cat slept all day."  # memory is keyed too
        assert sorted(mode for mode, _ in store.prompt_keys(voice.id)) == ["icl", "xvector"]


def test_another_model_gets_its_own_prompts(tmp_path, clip, tiny_a):
    tiny_b = _load_tiny("tiny_b")
    with VoiceStore(tmp_path) as store:
        voice = add_voice(store, clip)
        a = PromptStore(store, tiny_a).get(voice.id, "xvector")
        b_store = PromptStore(store, tiny_b)
        b = b_store.get(voice.id, "xvector")
        assert b_store.stats["computed"] == 1 and b.model_id == tiny_b.model_id != a.model_id
        assert len(store.prompt_keys(voice.id)) == 2


def test_a_clip_changed_behind_the_library_is_refused(tmp_path, clip, tiny_a):
    with VoiceStore(tmp_path) as store:
        voice = add_voice(store, clip)
        path = store.audio_path(voice)
        data = bytearray(path.read_bytes())
        data[-2:] = b"\x00\x10"
        path.write_bytes(bytes(data))
        with pytest.raises(CorruptLibraryError, match="changed outside the library"):
            PromptStore(store, tiny_a).get(voice.id, "xvector")


def test_deleting_the_voice_deletes_its_prompts(tmp_path, clip, tiny_a):
    with VoiceStore(tmp_path) as store:
        voice = add_voice(store, clip)
        prompts = PromptStore(store, tiny_a)
        prompts.warm(voice.id)
        assert len(store.prompt_keys(voice.id)) == 2
        store.delete_voice(voice.id)
        assert store.prompt_keys(voice.id) == []
        with pytest.raises(KeyError):
            prompts.get(voice.id, "icl")
