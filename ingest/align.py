"""Cutting a user's transcript to the span kept from a long clip.

The user's text wins over Whisper's, but when a long clip is cut to 8-15 s its full
transcript no longer matches the audio. Whisper's words (with times) are aligned to the
user's words (without times) by a word-level diff; the span's word range in Whisper's
list then maps to a range of the user's words, whose spelling and punctuation are kept.
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher

from ingest.errors import TranscriptNeededError
from ingest.transcribe import Word

MIN_MATCHED = 0.6  # share of the span's heard words that must be found in the user's text


def normalize_word(word: str) -> str:
    """Lowercase, letters/digits/apostrophes only: ``"Bridge."`` -> ``"bridge"``."""
    return re.sub(r"[^\w']+", "", word.lower()).strip("'")


def user_words_for_span(user_text: str, words: tuple[Word, ...], first: int, last: int) -> str:
    """The part of ``user_text`` spoken in ``words[first:last]``; refuses when the user's
    text and what was heard disagree too much to tell."""
    tokens = user_text.split()
    heard = [normalize_word(w.text) for w in words]
    said = [normalize_word(t) for t in tokens]
    matcher = SequenceMatcher(None, heard, said, autojunk=False)
    opcodes = matcher.get_opcodes()
    matched = sum(
        max(0, min(i2, last) - max(i1, first)) for tag, i1, i2, _, _ in opcodes if tag == "equal"
    )
    if last <= first or matched < MIN_MATCHED * (last - first):
        raise TranscriptNeededError(
            "the clip is longer than 15 s and the transcript you gave does not match what was "
            "heard closely enough to cut it with the audio: send a clip of 8-15 s with its "
            "transcript, or leave the transcript out to let the studio write it"
        )
    start, end = _user_index(opcodes, first), _user_index(opcodes, last)
    return " ".join(tokens[start:end])


def _user_index(opcodes, index: int) -> int:
    """Position in the user's words of the boundary before heard word ``index``."""
    for tag, i1, i2, j1, j2 in opcodes:
        if i1 <= index < i2 or (tag == "insert" and i1 == index):
            if tag == "equal":
                return j1 + (index - i1)
            if tag == "replace":
                return j1 + round((index - i1) * (j2 - j1) / (i2 - i1))
            return j1  # a heard-only word ("delete") or unheard user words ("insert")
    return opcodes[-1][4] if opcodes else 0
