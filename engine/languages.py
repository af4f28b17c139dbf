"""Languages the 12 Hz Base models speak, accepted by name or ISO code.

The model's config (`talker_config.codec_language_id`) names languages in lower case
("english", "chinese", ...); that canonical name is what the talker prompt needs. Users
and APIs say "English", "en", "EN-us", "zh-CN" or "Japanese": `normalize_language` maps
all of them to the canonical name, case-insensitively, and "auto" (or None / "") to
"auto", which lets the model pick the language from the text. Anything else raises
`UnsupportedLanguageError` with the list of accepted values.
"""
from __future__ import annotations

from typing import Iterable

from engine.errors import InvalidParameterError

AUTO = "auto"

# canonical name -> ISO 639-1 code (the ten languages of the released models)
LANGUAGES: dict[str, str] = {
    "english": "en",
    "chinese": "zh",
    "japanese": "ja",
    "korean": "ko",
    "german": "de",
    "french": "fr",
    "russian": "ru",
    "portuguese": "pt",
    "spanish": "es",
    "italian": "it",
}

# Other spellings people use: ISO 639-2/3 codes, native names, common aliases.
_ALIASES: dict[str, str] = {
    "eng": "english", "zho": "chinese", "chi": "chinese", "cmn": "chinese", "mandarin": "chinese",
    "jpn": "japanese", "kor": "korean", "deu": "german", "ger": "german", "fra": "french",
    "fre": "french", "rus": "russian", "por": "portuguese", "spa": "spanish", "ita": "italian",
    "中文": "chinese", "汉语": "chinese", "日本語": "japanese", "한국어": "korean",
    "deutsch": "german", "français": "french", "русский": "russian", "português": "portuguese",
    "español": "spanish", "italiano": "italian",
}


class UnsupportedLanguageError(InvalidParameterError):
    """A language the model does not speak, or a name/code that is not recognised."""

    code = "UNSUPPORTED_LANGUAGE"


def _lookup() -> dict[str, str]:
    table = {name: name for name in LANGUAGES}
    table.update({code: name for name, code in LANGUAGES.items()})
    table.update(_ALIASES)
    return table


_LOOKUP = _lookup()


def accepted_values() -> list[str]:
    """Human-readable list of accepted languages, for messages and API capabilities."""
    return [AUTO] + [f"{name} ({code})" for name, code in LANGUAGES.items()]


def normalize_language(language: str | None, supported: Iterable[str] | None = None) -> str:
    """Canonical lower-case language name ("english", ...) or "auto".

    language: a name or ISO code in any case; a region suffix ("en-US", "zh_CN") is
        ignored; None or "" mean "auto".
    supported: the canonical names a particular checkpoint knows (its
        `codec_language_id` keys); when given, a language outside it is refused too.
    Raises UnsupportedLanguageError.
    """
    if language is None:
        return AUTO
    if not isinstance(language, str):
        raise UnsupportedLanguageError(f"language must be a string, got {type(language).__name__}")
    key = language.strip().lower()
    if key in ("", AUTO):
        return AUTO
    name = _LOOKUP.get(key) or _LOOKUP.get(key.replace("_", "-").split("-")[0])
    if name is None:
        raise UnsupportedLanguageError(
            f"unsupported language {language!r}; use one of: {', '.join(accepted_values())}")
    if supported is not None:
        known = {s.lower() for s in supported}
        if name not in known:
            raise UnsupportedLanguageError(
                f"language {language!r} ({name}) is not supported by this model; "
                f"it knows: {', '.join([AUTO] + sorted(k for k in known if 'dialect' not in k))}")
    return name


def language_code(language: str | None) -> str:
    """ISO 639-1 code of a language ("auto" stays "auto")."""
    name = normalize_language(language)
    return AUTO if name == AUTO else LANGUAGES[name]
