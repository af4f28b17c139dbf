"""`stream()` on the tiny checkpoints: chunks equal the one-shot decode, cancellation within
one frame, the length guard, long text as one utterance, refused input, ICL references."""
import threading

import numpy as np
import pytest
import torch

from engine.languages import UnsupportedLanguageError
from engine.metrics import StopReason
from engine.sampling import SamplingParams
from engine.streaming import AudioChunk, stream
from engine.text_split import InvalidTextError, length_guard_frames, split_text
from runtime_helpers import one_shot, reference_clip, tiny_model, voice

TEXT = "Hello there, how are you doing today?"


def concat(chunks) -> np.ndarray:
    return np.concatenate([c.pcm for c in chunks]) if chunks else np.zeros(0, np.float32)


@pytest.mark.parametrize("mode", ["icl", "xvector", None])
def test_chunks_concatenate_to_the_one_shot_decode(shape, mode):
    model = tiny_model(shape)
    prompt = voice(shape, mode) if mode else None
    sampling = SamplingParams(seed=11, max_new_tokens=30)
    codes = model.generate_codes(TEXT, voice=prompt, language="english", sampling=sampling)
    expected = one_shot(model, codes, prompt)
    s = stream(model, TEXT, voice=prompt, language="en", sampling=sampling, chunk_frames=3,
               first_chunk_frames=1, split=False)
    chunks = list(s)
    assert all(isinstance(c, AudioChunk) and c.pcm.dtype == np.float32 for c in chunks)
    assert chunks[0].num_frames == 1 and all(c.num_frames <= 3 for c in chunks)
    assert [c.frame_index for c in chunks] == list(np.cumsum([0] + [c.num_frames for c in chunks[:-1]]))
    np.testing.assert_allclose(concat(chunks), expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(model.decode(codes, voice=prompt), expected, atol=1e-5, rtol=0)
    assert s.metrics.frames == codes.shape[0]
    assert s.metrics.time_to_first_audio_s <= s.metrics.compute_s
    assert s.metrics.audio_s == pytest.approx(expected.shape[0] / 24000)


def test_cancel_stops_within_one_frame_and_ends_cleanly():
    model = tiny_model("a")
    cancel = threading.Event()
    counting = _CountingModel(model)
    s = stream(counting, "A long sentence that should go on for quite a while, really.", language="en",
               sampling=SamplingParams(seed=1, min_new_tokens=500, max_new_tokens=500), chunk_frames=1,
               cancel=cancel, split=False)
    received = []
    for chunk in s:  # no exception: a clean end
        received.append(chunk)
        if len(received) == 3:
            generated_at_cancel = counting.frames
            cancel.set()
    assert len(received) == 3
    assert counting.frames <= generated_at_cancel + 1
    assert counting.open_iterators == 0  # the talker run was closed, its caches released
    assert s.metrics.stop_reason is StopReason.CANCELLED


def test_length_guard_ends_a_generation_that_never_stops():
    model = tiny_model("a")
    text = "Hi there!"
    forced = SamplingParams(seed=2, min_new_tokens=100_000, max_new_tokens=100_000)  # EOS banned
    s = stream(model, text, language="en", sampling=forced)
    frames = sum(c.num_frames for c in s)
    assert frames == length_guard_frames(text) == 2 * 9 + 36
    assert s.metrics.stop_reason is StopReason.LENGTH_GUARD and s.metrics.guard_fired

    capped = SamplingParams(seed=2, min_new_tokens=7, max_new_tokens=7)  # the caller's own limit
    s = stream(model, text, language="en", sampling=capped)
    assert sum(c.num_frames for c in s) == 7
    assert s.metrics.stop_reason is StopReason.MAX_TOKENS


def test_natural_end_is_reported_as_eos():
    model = tiny_model("a")
    sampling = SamplingParams(seed=1)
    codes = model.generate_codes(TEXT, language="en", sampling=sampling)
    assert 0 < codes.shape[0] < length_guard_frames(TEXT)  # this seed stops by itself
    s = stream(model, TEXT, language="en", sampling=sampling)
    assert sum(c.num_frames for c in s) == codes.shape[0]
    assert s.metrics.stop_reason is StopReason.EOS and not s.metrics.guard_fired


def test_long_text_streams_segments_in_order_with_pauses_in_one_voice():
    model = tiny_model("a")
    prompt = voice("a", "icl")
    text = "The first sentence is here. 第二句话在这里。\nそして三番目の文です。"
    segments = split_text(text)
    assert len(segments) == 3
    sampling = SamplingParams(seed=5, max_new_tokens=12)
    s = stream(model, text, voice=prompt, language="auto", sampling=sampling, segment_pause_s=0.25)
    chunks = list(s)
    pauses = [c for c in chunks if c.is_pause]
    assert [c.segment_index for c in pauses] == [1, 2]
    assert all(c.duration_s == pytest.approx(0.25) and not c.pcm.any() for c in pauses)
    assert [c.segment_index for c in chunks] == sorted(c.segment_index for c in chunks)
    for k, segment in enumerate(segments):  # each segment: the one-shot audio of that text
        codes = model.generate_codes(segment, voice=prompt, language="auto",
                                     sampling=sampling.replace(seed=5 + k))
        got = concat([c for c in chunks if c.segment_index == k and not c.is_pause])
        np.testing.assert_allclose(got, one_shot(model, codes, prompt), atol=1e-5, rtol=0)
    starts = np.cumsum([0] + [c.pcm.shape[0] for c in chunks[:-1]]) / 24000
    np.testing.assert_allclose([c.start_s for c in chunks], starts)  # one continuous timeline
    assert s.metrics.segments == 3 and len(s.metrics.segment_stops) == 3
    assert s.metrics.audio_s == pytest.approx(concat(chunks).shape[0] / 24000)


def test_bad_text_and_languages_are_refused_before_anything_runs():
    model = tiny_model("a")
    for bad in ["", "  \n ", "x" * 5001]:
        with pytest.raises(InvalidTextError):
            stream(model, bad)
    with pytest.raises(UnsupportedLanguageError, match="klingon"):
        stream(model, "Hello.", language="klingon")
    with pytest.raises(Exception, match="chunk_frames"):
        stream(model, "Hello.", chunk_frames=0)
    s = stream(model, "Hello there.", language="EN", sampling=SamplingParams(seed=1, max_new_tokens=2))
    assert s.plan.language == "english"


def test_icl_reference_gets_silence_before_encoding():
    """create_voice_prompt appends ~0.5 s of silence to an ICL reference before encoding it
    (6 more frames at the released 12.5 Hz); the x-vector is the clip's own; 0 turns it off."""
    model = tiny_model("a")
    clip = reference_clip(1.0)
    padded = model.create_voice_prompt(clip, 24000, "Reference words.")
    plain = model.create_voice_prompt(clip, 24000, "Reference words.", reference_silence_s=0)
    extra = round(0.5 * 24000 / model.codec_config.encode_downsample_rate)
    assert padded.ref_codes.shape[0] == plain.ref_codes.shape[0] + extra
    torch.testing.assert_close(padded.ref_codes[:plain.ref_codes.shape[0] - 1], plain.ref_codes[:-1])
    torch.testing.assert_close(padded.xvector, plain.xvector)
    assert model.create_voice_prompt(clip, 24000, None).ref_codes is None
    with pytest.raises(Exception, match="between 0 and 5"):
        model.create_voice_prompt(clip, 24000, "Reference words.", reference_silence_s=-1)


class _CountingModel:
    """The real model, with the frames it generates counted (observation only)."""

    def __init__(self, model):
        self._model, self.frames, self.open_iterators = model, 0, 0

    def __getattr__(self, name):
        return getattr(self._model, name)

    def iter_codes(self, *args, **kwargs):
        inner = self._model.iter_codes(*args, **kwargs)
        self.open_iterators += 1
        try:
            for codes in inner:
                self.frames += 1
                yield codes
        finally:
            inner.close()
            self.open_iterators -= 1
