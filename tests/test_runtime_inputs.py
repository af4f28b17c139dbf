"""Language normalisation and per-request metrics (no model needed)."""
import time

import pytest

from engine.languages import (LANGUAGES, UnsupportedLanguageError, accepted_values,
                              language_code, normalize_language)
from engine.metrics import RequestMetrics, StopReason


@pytest.mark.parametrize("given, expected", [
    ("English", "english"), ("en", "english"), ("EN", "english"), ("en-US", "english"),
    ("zh", "chinese"), ("zh_CN", "chinese"), ("Chinese", "chinese"), ("中文", "chinese"),
    ("ja", "japanese"), ("JAPANESE", "japanese"), ("ko", "korean"), ("de", "german"),
    ("fr", "french"), ("ru", "russian"), ("pt", "portuguese"), ("pt-BR", "portuguese"),
    ("es", "spanish"), ("it", "italian"), ("Auto", "auto"), ("auto", "auto"), ("", "auto"),
    (None, "auto"), (" german ", "german"),
])
def test_languages_by_name_or_code(given, expected):
    assert normalize_language(given) == expected


def test_all_ten_languages_and_codes():
    assert len(LANGUAGES) == 10
    for name, code in LANGUAGES.items():
        assert normalize_language(code.upper()) == name
        assert language_code(name.title()) == code
    assert language_code("auto") == "auto"
    assert accepted_values()[0] == "auto"


@pytest.mark.parametrize("bad", ["klingon", "xx", "nl", "english!", 3])
def test_unsupported_languages_are_refused_clearly(bad):
    with pytest.raises(UnsupportedLanguageError) as info:
        normalize_language(bad)
    assert info.value.code == "UNSUPPORTED_LANGUAGE"
    if isinstance(bad, str):
        assert "english (en)" in str(info.value)


def test_language_outside_a_checkpoint_is_refused():
    supported = ["english", "chinese", "beijing_dialect"]
    assert normalize_language("EN", supported) == "english"
    assert normalize_language("auto", supported) == "auto"
    with pytest.raises(UnsupportedLanguageError, match="not supported by this model"):
        normalize_language("ja", supported)


def test_metrics_lifecycle():
    m = RequestMetrics(text_chars=12, segments=2)
    time.sleep(0.01)
    m.mark_started()
    assert m.queue_wait_s >= 0.01
    assert m.rtf is None and m.ms_per_frame is None
    m.mark_audio(frames=4, audio_s=0.32)
    first = m.time_to_first_audio_s
    assert first >= m.queue_wait_s
    m.mark_segment(StopReason.LENGTH_GUARD)
    m.mark_audio(frames=6, audio_s=0.48 + 0.25)
    m.mark_segment(StopReason.EOS)
    m.finish()
    assert m.time_to_first_audio_s == first
    assert m.frames == 10 and m.audio_s == pytest.approx(1.05)
    assert m.stop_reason is StopReason.EOS and m.guard_fired
    assert m.rtf == pytest.approx(m.compute_s / 1.05)
    d = m.to_dict()
    assert d["stop_reason"] == "eos" and d["segment_stops"] == ["length_guard", "eos"]
    assert "length guard fired" in m.summary() and "RTF" in m.summary()
    m.finish(StopReason.CANCELLED)
    assert m.stop_reason is StopReason.CANCELLED
