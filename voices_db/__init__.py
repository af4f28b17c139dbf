"""The voice library: voices and cached voice prompts in SQLite, files beside it.

    from voices_db import VoiceStore, PromptStore, resolve_data_dir

    store = VoiceStore(resolve_data_dir(args.data_dir))
    page = store.list_page(limit=50)
    prompts = PromptStore(store, model)          # model: a loaded engine model, or None
    prompt = prompts.get("ada", mode="icl")      # memory LRU -> SQLite blob -> computed
"""

from voices_db.errors import (
    ConflictError,
    CorruptLibraryError,
    DatabaseTooNewError,
    DuplicateVoiceError,
    InvalidArchiveError,
    InvalidNameError,
    LibraryError,
    VoiceNotFoundError,
)
from voices_db.paths import DataLayout, resolve_data_dir, slugify, validate_voice_id
from voices_db.prompts import PromptStore, PromptUnavailableError, prompt_key
from voices_db.store import VoicePage, VoiceStore
from voices_db.voice import NewVoice, Voice

__all__ = [
    "ConflictError",
    "CorruptLibraryError",
    "DataLayout",
    "DatabaseTooNewError",
    "DuplicateVoiceError",
    "InvalidArchiveError",
    "InvalidNameError",
    "LibraryError",
    "NewVoice",
    "PromptStore",
    "PromptUnavailableError",
    "Voice",
    "VoiceNotFoundError",
    "VoicePage",
    "VoiceStore",
    "prompt_key",
    "resolve_data_dir",
    "slugify",
    "validate_voice_id",
]
