"""The voice library as the app uses it: search and pages, ingest with a preview, edits,
archives, clips used on the fly, and voice prompts computed on the engine worker.

Every method raises `VoiceActionError` (or a `voices_db.LibraryError`, which includes
`ingest.IngestError`) with a message a person can act on; callers show `str(error)`.
"""
from __future__ import annotations

import dataclasses
import logging
import secrets
import shutil
import tempfile
import threading
import time
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest import ProcessedClip, Transcriber, export_library, export_voice, import_library, import_voice, process_clip
from ingest.zip_extract import extract_capped, open_zip
from ingest.library import store_clip
from voices_db import LibraryError, PromptStore, Voice, VoiceStore
from voices_db.audio_io import pcm16_to_float

log = logging.getLogger(__name__)

MODES = ("auto", "icl", "xvector")
EXPORT_MAX_AGE_S = 3600.0


class VoiceActionError(LibraryError):
    """A voice action the app refuses (message meant for a person)."""


@dataclass
class TempClip:
    """A clip used on the fly from the Speak tab: processed but not stored in the library."""

    id: str
    name: str
    clip: ProcessedClip
    prompts: dict[str, Any] = field(default_factory=dict)

    @property
    def transcript(self) -> str:
        return self.clip.transcript


@dataclass(frozen=True)
class ResolvedVoice:
    """The voice a synthesis request will use.

    kind: "library", "clip" (a temp clip) or "none" (no voice: the model's own).
    note: set when the requested voice was not found and the default was used instead.
    """

    kind: str
    id: str | None
    name: str
    has_transcript: bool
    note: str | None = None

    def mode_for(self, requested: str | None) -> tuple[str | None, str | None]:
        """(mode to use, note) for a requested "auto"/"icl"/"xvector" mode."""
        requested = (requested or "auto").lower()
        if requested not in MODES:
            raise VoiceActionError(f"unknown voice mode {requested!r}; use one of {', '.join(MODES)}")
        if self.kind == "none":
            return None, None
        if requested == "icl" and not self.has_transcript:
            return "xvector", f"voice {self.id!r} has no transcript, so x-vector mode is used"
        if requested == "auto":
            return ("icl" if self.has_transcript else "xvector"), None
        return requested, None


def voice_summary(voice: Voice) -> dict:
    """The seed's voice shape (id, name, language, description, isDefault) plus a few extras."""
    return {"id": voice.id, "name": voice.name, "language": voice.language, "description": voice.description,
            "isDefault": voice.is_default, "duration": round(voice.duration, 2),
            "hasTranscript": bool(voice.transcript.strip())}


def voice_detail(voice: Voice) -> dict:
    """Everything a client may show or edit about one voice."""
    out = voice_summary(voice)
    out.update(transcript=voice.transcript, transcriptSource=voice.transcript_source, tags=list(voice.tags),
               sampleRate=voice.sample_rate, loudnessDbfs=voice.loudness_dbfs,
               warnings=[dict(w) for w in voice.warnings], version=voice.version,
               createdAt=voice.created_at, updatedAt=voice.updated_at)
    return out


class VoiceService:
    """The library (store + prompt cache + Whisper) bound to the app's model host."""

    def __init__(self, store: VoiceStore, host, transcriber: Transcriber | None = None, temp_capacity: int = 32):
        self.store = store
        self.host = host
        self.transcriber = transcriber or Transcriber()
        self.prompts = PromptStore(store, None)
        self._temp: OrderedDict[str, TempClip] = OrderedDict()
        self._temp_capacity = temp_capacity
        self._lock = threading.Lock()

    def attach_model(self, model) -> None:
        """Called once the model is loaded: prompts can be computed from now on."""
        self.prompts.model = model
        self.prompts.clear()

    # ---- reading ----------------------------------------------------------------------
    def default(self) -> Voice | None:
        return self.store.default_voice()

    def get(self, voice_id: str) -> Voice:
        return self.store.get(voice_id)

    def find(self, voice_id: str) -> Voice | None:
        try:
            return self.store.find(voice_id)
        except LibraryError:
            return None

    def search(self, query: str = "", limit: int = 20, cursor: str | None = None) -> tuple[list[Voice], str | None]:
        """One page of voices sorted by name, optionally filtered by `query` (case-insensitive,
        matched against id, name, description, language and transcript). Returns (voices,
        next cursor or None)."""
        page = self.store.list_page(max(1, min(int(limit), 200)), cursor or None, search=query)
        return page.items, page.next_cursor

    def choices(self, temp_ids=()) -> list[tuple[str, str]]:
        """(label, id) of every voice, the default first, then the temp clips in `temp_ids`
        (a visitor sees only the clips they uploaded)."""
        voices = list(self.store.iter_all())
        voices.sort(key=lambda v: not v.is_default)
        out = [(f"{v.name} (default)" if v.is_default else v.name, v.id) for v in voices]
        with self._lock:
            out += [(f"Clip: {self._temp[t].name}", t) for t in reversed(list(temp_ids)) if t in self._temp]
        return out

    # ---- ingest -----------------------------------------------------------------------
    def process(self, path: str | Path, transcript: str | None = None, language: str | None = None) -> ProcessedClip:
        """Run the ingest pipeline on a clip (nothing is stored): the preview."""
        if not path:
            raise VoiceActionError("no clip: upload an audio file or record one first")
        return process_clip(Path(path), self.transcriber, transcript or None, language or None)

    def save(self, clip: ProcessedClip, name: str, *, original: str | Path | None = None, transcript: str | None = None,
             language: str | None = None, description: str = "") -> Voice:
        """Store a processed clip as a new voice (transcript/language as edited in the preview)."""
        if transcript is not None and transcript.strip() != clip.transcript:
            clip = dataclasses.replace(clip, transcript=" ".join(transcript.split()), transcript_source="user")
        if language:
            clip = dataclasses.replace(clip, language=language)
        original_path = Path(original) if original and Path(original).is_file() else None
        voice = store_clip(self.store, clip, name, original=original_path, description=description)
        self.warm_later(voice.id)
        return voice

    def add(self, path: str | Path, name: str, *, transcript: str | None = None, language: str | None = None,
            description: str = "") -> Voice:
        """Process and store in one go (the REST upload)."""
        from voices_db.paths import clean_name

        clean_name(name)  # refuse a bad name before the pipeline runs
        clip = self.process(path, transcript, language)
        return self.save(clip, name, original=path, description=description)

    def warm_later(self, voice_id: str) -> None:
        """Compute the voice's prompts on the worker in the background, if a model is loaded."""
        if self.host.model is None:
            return
        try:
            self.host.submit_call(lambda: self.prompts.warm(voice_id))
        except Exception as e:  # noqa: BLE001 - prompts are computed again on first use
            log.info("prompts of %s not precomputed: %s", voice_id, e)

    # ---- edits ------------------------------------------------------------------------
    def update(self, voice_id: str, expected_version: int | None = None, **changes) -> Voice:
        """Edit name, description, language, tags or transcript (None: unchanged). With
        `expected_version`, refuses an edit of a voice someone changed meanwhile."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if "language" in changes and changes["language"] in ("", "auto"):
            changes["language"] = None
        if "transcript" in changes:
            changes["transcript"] = " ".join(str(changes["transcript"]).split())
            if changes["transcript"] == self.store.get(voice_id).transcript:
                del changes["transcript"]  # unchanged: keep its source (e.g. whisper)
            else:
                changes.setdefault("transcript_source", "user")
        return self.store.update_voice(voice_id, expected_version=expected_version, **changes)

    def set_default(self, voice_id: str) -> Voice:
        return self.store.set_default(voice_id)

    def delete(self, voice_id: str) -> None:
        self.store.delete_voice(voice_id)

    # ---- archives -----------------------------------------------------------------------
    def export_voice_zip(self, voice_id: str) -> Path:
        """A zip of the voice's folder (manifest.json, reference.wav, transcript.txt)."""
        voice = self.get(voice_id)
        out = _export_dir() / f"voice-{voice.id}.zip"
        with tempfile.TemporaryDirectory() as tmp:
            folder = export_voice(self.store, voice.id, tmp)
            with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
                for path in sorted(folder.rglob("*")):
                    if path.is_file():
                        zf.write(path, path.relative_to(Path(tmp)).as_posix())
        return out

    def export_library_zip(self) -> Path:
        if self.store.count() == 0:
            raise VoiceActionError("the library is empty: there is nothing to export")
        return export_library(self.store, _export_dir() / "voice-library.zip")

    def import_zip(self, path: str | Path, replace: bool = False) -> list[str]:
        """Import a library archive or a zipped voice folder; returns the imported voice ids."""
        path = Path(path)
        with open_zip(path, VoiceActionError, "; export a voice or the library to get one") as zf:
            names = zf.namelist()
        if "library.json" in names:
            results = import_library(self.store, path, replace=replace, transcriber=self.transcriber)
        else:
            with self.store.staging_dir() as stage:
                folder = _extract_voice_folder(path, stage)
                results = [import_voice(self.store, folder, replace=replace, transcriber=self.transcriber)]
        for result in results:
            self.warm_later(result.voice.id)
        return [r.voice.id for r in results]

    # ---- clips used on the fly --------------------------------------------------------------
    def add_temp(self, clip: ProcessedClip, name: str = "") -> TempClip:
        """Remember a processed clip for synthesis without storing it (bounded, oldest dropped)."""
        temp = TempClip(id=f"clip-{secrets.token_hex(6)}", name=(name or "uploaded clip").strip()[:60], clip=clip)
        with self._lock:
            self._temp[temp.id] = temp
            while len(self._temp) > self._temp_capacity:
                self._temp.popitem(last=False)
        return temp

    def temp(self, temp_id: str) -> TempClip | None:
        with self._lock:
            return self._temp.get(temp_id)

    # ---- synthesis ----------------------------------------------------------------------
    def resolve(self, voice_id: str | None) -> ResolvedVoice:
        """The voice to speak with: `voice_id`, else the default; an unknown id falls back to
        the default with a note (the seed's VOICE_NOT_FOUND behaviour)."""
        note = None
        if voice_id:
            temp = self.temp(voice_id)
            if temp is not None:
                return ResolvedVoice("clip", temp.id, temp.name, bool(temp.transcript.strip()))
            voice = self.find(voice_id)
            if voice is not None:
                return ResolvedVoice("library", voice.id, voice.name, bool(voice.transcript.strip()))
            note = f"voice {voice_id!r} was not found"
        default = self.default()
        if default is None:
            note = note and note + "; the library is empty, so the model's own voice is used"
            return ResolvedVoice("none", None, "the model's own voice", False, note)
        note = note and note + f"; using the default voice {default.id!r}"
        return ResolvedVoice("library", default.id, default.name, bool(default.transcript.strip()), note)

    def prompt_fn(self, voice: ResolvedVoice, mode: str | None):
        """A function computing the voice prompt (to run on the worker thread)."""
        if voice.kind == "none" or mode is None:
            return lambda: None
        if voice.kind == "library":
            return lambda: self.prompts.get(voice.id, mode)
        temp = self.temp(voice.id)
        if temp is None:
            raise VoiceActionError(f"the clip {voice.id!r} is no longer available; upload it again")

        def compute():
            if mode not in temp.prompts:
                model = self.host.require_ready()
                transcript = temp.transcript if mode == "icl" else None
                temp.prompts[mode] = model.create_voice_prompt(
                    pcm16_to_float(temp.clip.pcm), temp.clip.sample_rate, transcript)
            return temp.prompts[mode]

        return compute

    async def aprompt(self, voice: ResolvedVoice, mode: str | None, session=None):
        """The voice prompt, computed (or fetched from the cache) on the worker thread."""
        fn = self.prompt_fn(voice, mode)
        return None if voice.kind == "none" else await self.host.acall(fn, session)


def _export_dir() -> Path:
    """A fresh folder for a download; exports older than an hour are removed."""
    root = Path(tempfile.gettempdir()) / "qwen3-studio-exports"
    root.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - EXPORT_MAX_AGE_S
    for old in root.iterdir():
        try:
            if old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            continue
    folder = root / secrets.token_hex(8)
    folder.mkdir()
    return folder


def _extract_voice_folder(archive: Path, stage: Path) -> Path:
    """Extract a zipped voice folder safely; returns the folder holding manifest.json."""
    with open_zip(archive, VoiceActionError, "") as zf:
        extract_capped(zf, stage, archive.name, voices=1, error=VoiceActionError, what="a voice folder")
    manifests = sorted(stage.rglob("manifest.json"), key=lambda p: len(p.parts))
    if not manifests:
        raise VoiceActionError(f"{archive.name} holds no manifest.json: zip a voice folder "
                               "(manifest.json + reference.wav + transcript.txt) or export one from the studio")
    return manifests[0].parent
