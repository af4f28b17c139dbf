"""Voice prompts, cached: memory LRU -> SQLite blob -> computed by the engine.

A prompt is keyed by everything it is computed from (``prompt_key``): the processed
clip's PCM hash, the transcript (ICL mode only: an x-vector prompt ignores it), the mode,
the model id and revision, and the version of the preprocessing below. So an edited
transcript, a replaced clip or another model can never be served a stale prompt: its key
simply differs. Old rows are replaced when the new prompt is stored.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from voices_db.audio_io import pcm16_to_float, pcm_sha256, read_wav_pcm16
from voices_db.errors import CorruptLibraryError, LibraryError
from voices_db.store import VoiceStore
from voices_db.voice import Voice

MODES = ("icl", "xvector")
# Bump when the audio handed to create_voice_prompt changes (e.g. a different resampler),
# so prompts computed the old way are recomputed.
PROMPT_PREPROCESS_VERSION = 1


class PromptUnavailableError(LibraryError):
    """No prompt can be produced now (no model loaded, or ICL without a transcript)."""


def model_identity(model: Any) -> tuple[str, str]:
    """(model id, revision) of a loaded engine model.

    A Hub model has its commit as revision. A local directory has none, so its files stand
    in for it (names, sizes and modification times): replacing the weights changes the key.
    """
    revision = getattr(model, "revision", None)
    if not revision:
        revision = _local_fingerprint(Path(str(model.model_id))) or "unknown"
    return str(model.model_id), str(revision)


def _local_fingerprint(folder: Path) -> str | None:
    if not folder.is_dir():
        return None
    digest = hashlib.sha256()
    for path in sorted(list(folder.iterdir()) + list((folder / "speech_tokenizer").glob("*"))):
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.relative_to(folder)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return "local-" + digest.hexdigest()[:16]


def prompt_key(audio_sha256: str, transcript: str | None, mode: str, model_id: str, revision: str) -> str:
    """The cache key of one prompt (sha256 hex)."""
    if mode not in MODES:
        raise ValueError(f"unknown prompt mode {mode!r}; use one of {MODES}")
    payload = {
        "audio_sha256": audio_sha256,
        "transcript": transcript if mode == "icl" else None,
        "mode": mode,
        "model_id": model_id,
        "revision": revision,
        "preprocess": PROMPT_PREPROCESS_VERSION,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class PromptStore:
    """Serves ``engine.VoicePrompt`` objects for library voices.

    ``model`` is a loaded engine model (``model_id``, ``revision``,
    ``create_voice_prompt(wav, sr, transcript)``) or None while none is loaded; without a
    model nothing can be served, since the model is part of every key. ``stats`` counts
    where each prompt came from ("memory", "database", "computed").
    """

    def __init__(self, store: VoiceStore, model: Any = None, capacity: int = 32):
        self.store = store
        self._model, self._identity = None, None
        self.model = model
        self.capacity = max(1, int(capacity))
        self.stats = {"memory": 0, "database": 0, "computed": 0}
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}

    @property
    def model(self) -> Any:
        return self._model

    @model.setter
    def model(self, model: Any) -> None:
        """Switch models (e.g. once loaded); the identity is computed once per model."""
        self._identity = model_identity(model) if model is not None else None
        self._model = model

    def key_for(self, voice: Voice, mode: str) -> str:
        if self.model is None:
            raise PromptUnavailableError("no TTS model is loaded yet, so no voice prompt can be made")
        if voice.audio_sha256 is None:
            raise CorruptLibraryError(f"voice {voice.id!r} has no readable reference audio")
        return prompt_key(voice.audio_sha256, voice.transcript, mode, *self._identity)

    def get(self, voice_id: str, mode: str = "icl"):
        """The prompt of a voice in ``mode`` ("icl" needs a transcript; "xvector" does not)."""
        voice = self.store.get(voice_id)  # fresh row: current transcript and audio hash
        if mode == "icl" and not voice.transcript.strip():
            raise PromptUnavailableError(
                f"voice {voice.id!r} has no transcript; add one, or use the x-vector mode"
            )
        key = self.key_for(voice, mode)
        cached = self._remember(key)
        if cached is not None:
            return cached
        try:
            with self._lock_for(key):  # one computation per key, even with concurrent callers
                cached = self._remember(key)
                if cached is not None:
                    return cached
                return self._load_or_compute(voice, mode, key)
        finally:
            with self._lock:
                self._key_locks.pop(key, None)

    def _load_or_compute(self, voice: Voice, mode: str, key: str):
        from engine.voice_prompt import VoicePrompt  # heavy import (torch): only when prompts are used

        blob = self.store.load_prompt_blob(key)
        if blob is not None:
            prompt = VoicePrompt.from_bytes(blob)
            self._count("database")
        else:
            prompt = self._compute(voice, mode)
            model_id, revision = self._identity
            self.store.save_prompt_blob(voice.id, mode, model_id, revision, key, prompt.to_bytes())
            self._count("computed")
        self._put(key, prompt)
        return prompt

    def _compute(self, voice: Voice, mode: str):
        pcm, sample_rate = read_wav_pcm16(self.store.audio_path(voice))
        if pcm_sha256(pcm) != voice.audio_sha256:
            raise CorruptLibraryError(
                f"the reference audio of voice {voice.id!r} changed outside the library; re-import the voice"
            )
        transcript = voice.transcript if mode == "icl" else None
        return self.model.create_voice_prompt(pcm16_to_float(pcm), sample_rate, transcript)

    def warm(self, voice_id: str) -> list[str]:
        """Compute (or load) every prompt mode the voice supports; returns the modes ready."""
        ready = []
        for mode in MODES:
            try:
                self.get(voice_id, mode)
                ready.append(mode)
            except PromptUnavailableError:
                continue
        return ready

    def clear(self) -> None:
        """Empty the memory cache (the database keeps its rows)."""
        with self._lock:
            self._cache.clear()

    # -- LRU ------------------------------------------------------------------------------

    def _remember(self, key: str):
        with self._lock:
            prompt = self._cache.get(key)
            if prompt is not None:
                self._cache.move_to_end(key)
                self.stats["memory"] += 1
            return prompt

    def _put(self, key: str, prompt) -> None:
        with self._lock:
            self._cache[key] = prompt
            self._cache.move_to_end(key)
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)

    def _count(self, layer: str) -> None:
        with self._lock:
            self.stats[layer] += 1

    def _lock_for(self, key: str) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())
