"""Splitting text to speak into segments the model synthesizes one after another.

Why split at all: the talker attends over the whole utterance, so a long text costs memory
and time quadratically, drifts in voice and, worst, sometimes never emits its end token.
Short segments bound all three; the runtime streams them back to back as one utterance.

The rules (what `split_text` does, in order):

1. The text is validated: after stripping it must be non-empty and at most
   `MAX_TEXT_CHARS` (5,000) characters, else `InvalidTextError`.
2. Lines are separate (a newline always ends a sentence: headings and list items often
   carry no punctuation).
3. Each line is cut into sentences after a terminator: Latin `. ! ? …` followed by a space
   or the end of the line (so "3.14" and "e.g." inside a word stay whole; a few common
   abbreviations such as "Mr." and single-letter initials do not end a sentence); CJK and
   Japanese `。 ！ ？ ｡ ．` end a sentence wherever they are (those scripts use no spaces).
   Closing quotes and brackets after a terminator stay with their sentence (and a quote
   followed by a quoting particle, 「…？」と言った, does not end it).
4. A sentence longer than `MAX_SEGMENT_UNITS` is cut at clause marks (Latin `, ; :`
   followed by a space, CJK/Japanese `， 、 ； ：`), clauses being packed greedily up to the
   limit; a clause still too long is cut between words, and a run without spaces (CJK)
   between characters.
5. A piece shorter than `MIN_SEGMENT_UNITS` ("Yes.", "好的。") is joined to the next one
   (the last one to the previous), because Qwen3-TTS is unreliable on very short inputs;
   a join never makes a segment longer than `MAX_SEGMENT_UNITS`.

Lengths are counted in *units*: one per character, `WIDE_UNITS` (3) for a CJK ideograph,
kana or hangul syllable, since one of those takes about as long to say as three Latin
letters. `MAX_SEGMENT_UNITS` = 240 is roughly 15 s of speech in any of these scripts.

`length_guard_frames` is the per-segment length guard (see its docstring).
"""
from __future__ import annotations

import math
import re

from engine.errors import InvalidParameterError

MAX_TEXT_CHARS = 5000
MAX_SEGMENT_UNITS = 240
MIN_SEGMENT_UNITS = 10
WIDE_UNITS = 3

# Length guard: a segment may produce at most ceil(GUARD_FRAMES_PER_UNIT * units) +
# GUARD_BASE_FRAMES codec frames (12.5 per second). Normal speech needs about 0.8 frame
# per Latin character (~15 characters/s) and 2.5-3 per CJK character (3 units), so the
# guard allows speech about 2.5x slower than normal plus 3 s, and cuts a runaway
# generation (a known failure on very short inputs) after a few seconds.
GUARD_FRAMES_PER_UNIT = 2.0
GUARD_BASE_FRAMES = 36


class InvalidTextError(InvalidParameterError):
    """Text to speak is empty, whitespace only, or longer than `MAX_TEXT_CHARS`."""

    code = "INVALID_TEXT"


_LATIN_TERMS = ".!?…"
_CJK_TERMS = "。！？｡．"
_CLOSERS = "\"'”’»)]}」』）】》〉"
_QUOTE_CONTINUATIONS = "とっ、，"
_SENTENCE_END = re.compile(f"[{re.escape(_LATIN_TERMS + _CJK_TERMS)}]+[{re.escape(_CLOSERS)}]*")
# A clause ends after a Latin mark followed by a space, or after a CJK mark anywhere.
_CLAUSE_END = re.compile(r"[,;:](?=\s)|[，、；：]")
_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "no",
    "fig", "approx", "dept", "inc", "ltd", "co", "mt", "jan", "feb", "mar", "apr", "jun",
    "jul", "aug", "sep", "sept", "oct", "nov", "dec",
}


def is_wide(ch: str) -> bool:
    """True for characters that are a syllable each: CJK ideographs, kana, hangul."""
    cp = ord(ch)
    return (0x3040 <= cp <= 0x30FF  # hiragana, katakana
            or 0x3400 <= cp <= 0x4DBF or 0x4E00 <= cp <= 0x9FFF or 0xF900 <= cp <= 0xFAFF  # CJK
            or 0xAC00 <= cp <= 0xD7AF or 0x1100 <= cp <= 0x11FF  # hangul
            or 0xFF66 <= cp <= 0xFF9F  # half-width katakana
            or 0x20000 <= cp <= 0x2FA1F)  # CJK extensions


def text_units(text: str) -> int:
    """Length of `text` in units: 1 per character, `WIDE_UNITS` per CJK/kana/hangul character."""
    return sum(WIDE_UNITS if is_wide(ch) else 1 for ch in text)


def length_guard_frames(segment: str) -> int:
    """Most codec frames a segment may produce: ceil(2.0 * units) + 36.

    E.g. "Hello there." (12 units) -> 60 frames (4.8 s); a 240-unit segment -> 516 frames
    (41 s). A generation that reaches it is ended and reported as stopped by the guard.
    """
    return math.ceil(GUARD_FRAMES_PER_UNIT * text_units(segment)) + GUARD_BASE_FRAMES


def validate_text(text) -> str:
    """The text stripped of surrounding whitespace, or `InvalidTextError` if unusable."""
    if not isinstance(text, str):
        raise InvalidTextError(f"text must be a string, got {type(text).__name__}")
    stripped = text.strip()
    if not stripped:
        raise InvalidTextError("text is empty: give at least one word to speak")
    if len(stripped) > MAX_TEXT_CHARS:
        raise InvalidTextError(f"text is {len(stripped)} characters long; the limit is "
                               f"{MAX_TEXT_CHARS} per request: split it into several requests")
    return stripped


def split_sentences(text: str) -> list[str]:
    """Sentences of `text` (rules 2-3 of the module docstring), stripped, in order."""
    sentences: list[str] = []
    for line in text.splitlines():
        start = 0
        for match in _SENTENCE_END.finditer(line):
            if _ends_sentence(line, start, match):
                sentences.append(line[start:match.end()].strip())
                start = match.end()
        sentences.append(line[start:].strip())
    return [s for s in sentences if s]


def _ends_sentence(line: str, start: int, match: re.Match) -> bool:
    end = match.end()
    if any(ch in _CJK_TERMS for ch in match.group()):
        # 「本当に？」と彼は言った。: a quoted question followed by a quoting particle
        # is still one sentence.
        quoted = match.group()[-1] in _CLOSERS
        return not (quoted and end < len(line) and line[end] in _QUOTE_CONTINUATIONS)
    if end < len(line) and not line[end].isspace():
        return False  # "3.14", "e.g.x", "U.S.A" inside a token
    if match.group().rstrip(_CLOSERS) != ".":
        return True  # "!", "?", "...", "?!" always end
    words = line[start:match.start()].split()
    if not words:
        return True
    word = words[-1].lstrip(_CLOSERS + "\"'(“‘«").lower()
    return not (word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()))


def split_long(sentence: str, max_units: int = MAX_SEGMENT_UNITS) -> list[str]:
    """Cut one sentence into pieces of at most `max_units` (rule 4): clauses, words, characters."""
    if text_units(sentence) <= max_units:
        return [sentence]
    pieces: list[str] = []
    for clause in _cut_after(sentence, _CLAUSE_END):
        if text_units(clause) <= max_units:
            pieces.append(clause)
        else:
            pieces.extend(_split_words(clause, max_units))
    return _pack(pieces, max_units)


def _cut_after(text: str, pattern: re.Pattern) -> list[str]:
    parts, start = [], 0
    for match in pattern.finditer(text):
        parts.append(text[start:match.end()].strip())
        start = match.end()
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def _split_words(text: str, max_units: int) -> list[str]:
    pieces: list[str] = []
    for word in text.split():
        while text_units(word) > max_units:  # a run without spaces: cut between characters
            cut = _prefix_within(word, max_units)
            pieces.append(word[:cut])
            word = word[cut:]
        pieces.append(word)
    return pieces


def _prefix_within(word: str, max_units: int) -> int:
    total = 0
    for i, ch in enumerate(word):
        total += WIDE_UNITS if is_wide(ch) else 1
        if total > max_units:
            return max(i, 1)
    return len(word)


def _join(a: str, b: str) -> str:
    """Join two pieces: no space between CJK characters, a space otherwise."""
    if a and b and (is_wide(a[-1]) or a[-1] in _CJK_TERMS + "，、；：") and is_wide(b[0]):
        return a + b
    return f"{a} {b}" if a and b else a + b


def _pack(pieces: list[str], max_units: int) -> list[str]:
    """Greedily join consecutive pieces while the result stays within `max_units`."""
    packed: list[str] = []
    for piece in pieces:
        if packed and text_units(_join(packed[-1], piece)) <= max_units:
            packed[-1] = _join(packed[-1], piece)
        else:
            packed.append(piece)
    return packed


def _merge_short(pieces: list[str], min_units: int, max_units: int) -> list[str]:
    """Join pieces shorter than `min_units` to their successor (the last to its predecessor)."""
    merged: list[str] = []
    carry = ""
    for piece in pieces:
        joined = _join(carry, piece)
        if carry and text_units(joined) > max_units:
            merged.append(carry)
            joined = piece
        carry = joined
        if text_units(carry) >= min_units:
            merged.append(carry)
            carry = ""
    if carry:
        if merged and text_units(_join(merged[-1], carry)) <= max_units:
            merged[-1] = _join(merged[-1], carry)
        else:
            merged.append(carry)
    return merged


def split_text(text: str, max_units: int = MAX_SEGMENT_UNITS,
               min_units: int = MIN_SEGMENT_UNITS) -> list[str]:
    """Validate `text` and cut it into segments to synthesize in order (module docstring).

    Returns at least one segment; raises `InvalidTextError` for empty or over-long text.
    """
    text = validate_text(text)
    if max_units < WIDE_UNITS or min_units > max_units:
        raise InvalidParameterError(f"bad segment limits: min_units={min_units}, max_units={max_units}")
    pieces = [p for s in split_sentences(text) for p in split_long(s, max_units)]
    return _merge_short(pieces, min_units, max_units)
