"""Text splitting for long inputs: English, Chinese and Japanese samples, the documented
limits and errors, and the per-segment length guard."""
import pytest

from engine.text_split import (MAX_SEGMENT_UNITS, MAX_TEXT_CHARS, InvalidTextError,
                               length_guard_frames, split_sentences, split_text, text_units)


def test_english_sentences_abbreviations_numbers_and_newlines():
    text = ("Hello there, Mr. Smith! How are you today? I paid $3.14 for it, e.g. at the shop...\n"
            "Chapter two\n\n"
            "\"Is that so?\" she asked. J. R. R. Tolkien wrote it.")
    assert split_sentences(text) == [
        "Hello there, Mr. Smith!",
        "How are you today?",
        "I paid $3.14 for it, e.g. at the shop...",
        "Chapter two",
        "\"Is that so?\"",
        "she asked.",
        "J. R. R. Tolkien wrote it.",
    ]


def test_chinese_sentences():
    text = "今天天气很好。我们去公园散步吧！你觉得怎么样？他说：“好的。”我们走吧。"
    assert split_sentences(text) == ["今天天气很好。", "我们去公园散步吧！", "你觉得怎么样？",
                                      "他说：“好的。”", "我们走吧。"]


def test_japanese_sentences_and_quotes():
    text = "こんにちは。今日はいい天気ですね！「本当に？」と彼は言った。ｶﾀｶﾅも大丈夫｡"
    assert split_sentences(text) == ["こんにちは。", "今日はいい天気ですね！",
                                     "「本当に？」と彼は言った。", "ｶﾀｶﾅも大丈夫｡"]


def test_short_sentences_join_the_next_one():
    # "Yes." joins its successor; the last "OK." joins its predecessor
    assert split_text("Yes. I will come tomorrow morning. OK.") == ["Yes. I will come tomorrow morning. OK."]
    assert split_text("Hi. This is a longer sentence here. And one more sentence follows.") == [
        "Hi. This is a longer sentence here.", "And one more sentence follows."]
    assert split_text("好的。我们明天早上出发。") == ["好的。我们明天早上出发。"]


def test_long_english_sentence_is_cut_at_commas_then_words():
    clauses = [f"clause number {i} of a rather long sentence that goes on" for i in range(12)]
    text = ", ".join(clauses) + "."
    segments = split_text(text)
    assert len(segments) > 1
    assert all(text_units(s) <= MAX_SEGMENT_UNITS for s in segments)
    assert all(s.endswith((",", ".")) for s in segments)  # cut after commas
    assert " ".join(segments) == text

    words = " ".join(f"word{i}" for i in range(120))  # no punctuation at all
    segments = split_text(words, max_units=100)
    assert all(text_units(s) <= 100 for s in segments)
    assert " ".join(segments) == words


def test_long_chinese_and_japanese_cut_at_clause_marks_then_characters():
    zh = "，".join(["我们今天一起去公园散步然后回家吃饭"] * 12) + "。"
    segments = split_text(zh)
    assert len(segments) > 1 and "".join(segments) == zh
    assert all(text_units(s) <= MAX_SEGMENT_UNITS for s in segments)
    assert all(s.endswith(("，", "。")) for s in segments)

    ja = "、".join(["きょうはとてもいいてんきですね"] * 10) + "。"
    segments = split_text(ja, max_units=120)
    assert "".join(segments) == ja and all(text_units(s) <= 120 for s in segments)

    run = "中" * 200  # no punctuation: cut between characters
    segments = split_text(run)
    assert "".join(segments) == run
    assert [text_units(s) for s in segments] == [240, 240, 120]


def test_units_count_wide_characters_three_times():
    assert text_units("abc") == 3
    assert text_units("中文") == 6
    assert text_units("かな") == 6
    assert text_units("한국") == 6


def test_bad_text_is_refused():
    for bad in ["", "   \n\t ", None, 42]:
        with pytest.raises(InvalidTextError) as info:
            split_text(bad)
        assert info.value.code == "INVALID_TEXT"
    with pytest.raises(InvalidTextError, match="5000"):
        split_text("a" * (MAX_TEXT_CHARS + 1))
    assert split_text(" " + "a" * MAX_TEXT_CHARS + " ")  # the limit itself is fine


def test_length_guard_rule():
    # ceil(2.0 * units) + 36
    assert length_guard_frames("Hello there.") == 2 * 12 + 36
    assert length_guard_frames("你好。") == 2 * 7 + 36
    assert length_guard_frames("x" * MAX_SEGMENT_UNITS) == 2 * MAX_SEGMENT_UNITS + 36
