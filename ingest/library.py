"""Adding processed clips to the library (the glue between the pipeline and the store)."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from ingest.pipeline import IngestOptions, ProcessedClip, process_clip
from ingest.transcribe import Transcriber
from voices_db import NewVoice, PromptStore, Voice, VoiceStore
from voices_db.audio_io import write_wav_pcm16
from voices_db.paths import clean_name
from voices_db.prompts import PromptUnavailableError

log = logging.getLogger(__name__)


def original_name_for(path: Path) -> str:
    """``original.<ext>`` with a sanitized extension (the upload's own name is not trusted)."""
    ext = re.sub(r"[^a-z0-9]", "", path.suffix.lower())[:8]
    return f"original.{ext or 'bin'}"


def compact_report(report: dict) -> dict:
    """The ingest report without its word lists (kept small: a list page loads it per voice)."""
    out = dict(report)
    for key in ("span", "whisper"):
        if isinstance(out.get(key), dict):
            out[key] = {k: v for k, v in out[key].items() if k != "words"}
    return out


def add_voice(
    store: VoiceStore,
    path: str | Path,
    name: str,
    *,
    transcript: str | None = None,
    language: str | None = None,
    description: str = "",
    tags: list[str] | tuple[str, ...] = (),
    transcriber: Transcriber | None = None,
    options: IngestOptions = IngestOptions(),
    prompts: PromptStore | None = None,
    voice_id: str | None = None,
) -> Voice:
    """Ingest one clip as a new voice and return it.

    The clip is processed before anything is written; the processed WAV and the original
    upload are staged in ``DATA/tmp`` and moved into place in the same transaction as the
    row, so a refused or failed ingest leaves no file and no row. With ``prompts`` and a
    loaded model, the voice's prompts are computed right away.
    """
    path = Path(path)
    clean_name(name)  # refuse a bad name before spending time on the audio
    clip = process_clip(path, transcriber or Transcriber(), transcript, language, options)
    voice = store_clip(store, clip, name, original=path, description=description, tags=tags, voice_id=voice_id)
    if prompts is not None and prompts.model is not None:
        try:
            prompts.warm(voice.id)
        except PromptUnavailableError as exc:  # the voice is stored; prompts can come later
            log.warning("prompts for %s not computed: %s", voice.id, exc)
    return voice


def store_clip(
    store: VoiceStore,
    clip: ProcessedClip,
    name: str,
    *,
    original: Path | None = None,
    description: str = "",
    tags=(),
    voice_id: str | None = None,
) -> Voice:
    """Write a processed clip (and its original) into the library as a new voice."""
    with store.staging_dir() as stage:
        write_wav_pcm16(stage / "reference.wav", clip.pcm, clip.sample_rate)
        original_name = None
        if original is not None:
            original_name = original_name_for(original)
            shutil.copyfile(original, stage / original_name)
        new = NewVoice(
            name=name,
            duration=round(clip.duration, 4),
            sample_rate=clip.sample_rate,
            audio_sha256=clip.audio_sha256,
            transcript=clip.transcript,
            transcript_source=clip.transcript_source,
            language=clip.language,
            description=description,
            tags=list(tags),
            loudness_dbfs=clip.loudness_dbfs,
            warnings=clip.warnings,
            ingest_report=compact_report(clip.report),
            original_name=original_name,
            voice_id=voice_id,
        )
        return store.create_voice(new, stage)
