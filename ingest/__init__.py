"""Clip -> voice: decode, trim, cut, level, transcribe, store.

    from ingest import add_voice, Transcriber, IngestError
    from voices_db import VoiceStore, resolve_data_dir

    store = VoiceStore(resolve_data_dir(None))
    transcriber = Transcriber()                  # bundled tiny.en unless told otherwise
    try:
        voice = add_voice(store, "clip.m4a", "Ada", transcriber=transcriber)
    except IngestError as exc:                   # refused: exc.code, str(exc); nothing stored
        ...

Also: ``process_clip`` (the pipeline alone), ``import_voice``/``export_voice`` (voice
folders), ``import_library``/``export_library`` (one archive), ``sync_from_environment``
($TTS_VOICES_DIR, $TTS_DEFAULT_VOICE at start-up). CLI: ``python -m ingest --help``.
"""

from ingest.archive import export_library, import_library, sync_from_environment, sync_voices_dir
from ingest.errors import IngestError, TranscriptNeededError
from ingest.folders import export_voice, import_voice
from ingest.library import add_voice
from ingest.pipeline import IngestOptions, ProcessedClip, process_clip
from ingest.transcribe import Transcriber

__all__ = [
    "IngestError",
    "IngestOptions",
    "ProcessedClip",
    "Transcriber",
    "TranscriptNeededError",
    "add_voice",
    "export_library",
    "export_voice",
    "import_library",
    "import_voice",
    "process_clip",
    "sync_from_environment",
    "sync_voices_dir",
]
