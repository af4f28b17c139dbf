"""The whole library as one zip archive, and the seed folder read at start-up.

Archive layout: ``library.json`` (format, version, default voice, voice ids) and one voice
folder per voice under ``voices/<id>/`` in the manifest format of ``ingest.folders``.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ingest.folders import ImportResult, export_voice, import_voice, read_manifest
from ingest.transcribe import Transcriber
from ingest.zip_extract import extract_capped, open_zip, read_member
from voices_db import DuplicateVoiceError, VoiceStore
from voices_db.errors import InvalidArchiveError, LibraryError
from voices_db.paths import validate_voice_id

log = logging.getLogger(__name__)

ARCHIVE_FORMAT = "qwen3-voice-studio-library"
ARCHIVE_VERSION = 1
MAX_ARCHIVE_VOICES = 10_000
VOICES_DIR_ENV = "TTS_VOICES_DIR"
DEFAULT_VOICE_ENV = "TTS_DEFAULT_VOICE"


def export_library(store: VoiceStore, archive: str | Path) -> Path:
    """Write every voice and the default choice to ``archive`` (a .zip)."""
    archive = Path(archive)
    default = store.default_voice()
    ids = [v.id for v in store.iter_all()]
    partial = archive.with_name(archive.name + ".partial")
    with store.staging_dir() as stage:
        for voice_id in ids:
            export_voice(store, voice_id, stage / "voices")
        index = {"format": ARCHIVE_FORMAT, "version": ARCHIVE_VERSION,
                 "default_voice": default.id if default else None, "voices": ids}
        (stage / "library.json").write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(stage.rglob("*")):
                if path.is_file():
                    zf.write(path, path.relative_to(stage).as_posix())
    partial.replace(archive)
    return archive


def import_library(store: VoiceStore, archive: str | Path, *, replace: bool = False,
                   transcriber: Transcriber | None = None) -> list[ImportResult]:
    """Import every voice of an archive, or none: every manifest is checked (and, without
    `replace`, every id is free) before any voice is added, and the voices this call created
    are removed again if a later one fails. (With `replace`, voices already overwritten
    stay overwritten.)"""
    with store.staging_dir() as stage:
        index = _safe_extract(Path(archive), stage)
        folders = [stage / "voices" / validate_voice_id(v) for v in index.get("voices", [])]
        for folder in folders:
            manifest = read_manifest(folder)  # every manifest must be sound before anything is imported
            voice_id = manifest.get("id") or folder.name
            if not replace and store.find(voice_id) is not None:
                raise DuplicateVoiceError(f"a voice with id {voice_id!r} already exists (use --replace to overwrite it)")
        results: list[ImportResult] = []
        try:
            for folder in folders:
                results.append(import_voice(store, folder, replace=replace, transcriber=transcriber))
        except BaseException:
            for result in results:
                if result.action == "created":
                    store.delete_voice(result.voice.id)
            raise
    default = index.get("default_voice")
    if default and store.find(default) is not None:
        store.set_default(default)
    return results


def _safe_extract(archive: Path, stage: Path) -> dict:
    """Check library.json, then extract the voice folders it lists with per-file and total
    caps (ingest.zip_extract); other members are not extracted."""
    hint = ": not a library archive (export the library from the studio to get one)"
    with open_zip(archive, InvalidArchiveError, hint) as zf:
        if "library.json" not in zf.namelist():
            raise InvalidArchiveError(f"{archive.name} has no library.json: not a library archive")
        index = _parse_index(read_member(zf, "library.json", archive.name, InvalidArchiveError), archive.name)
        ids = set(index["voices"])

        def listed(name: str) -> bool:
            parts = PurePosixPath(name).parts
            return name == "library.json" or len(parts) >= 3 and parts[0] == "voices" and parts[1] in ids

        extract_capped(zf, stage, archive.name, voices=len(ids), error=InvalidArchiveError,
                       what="a voice library", keep=listed)
    return index


def _parse_index(data: bytes, label: str) -> dict:
    """library.json checked: its format and version, and a list of distinct voice ids."""
    try:
        index = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidArchiveError(f"{label}: library.json is not valid JSON") from None
    if not isinstance(index, dict) or index.get("format") != ARCHIVE_FORMAT:
        raise InvalidArchiveError(f"{label} is not a {ARCHIVE_FORMAT} archive")
    version = index.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise InvalidArchiveError(f"{label}: library.json has no valid version")
    if version > ARCHIVE_VERSION:
        raise InvalidArchiveError(f"{label} was written by a newer studio (archive version {version})")
    voices, default = index.get("voices", []), index.get("default_voice")
    if not isinstance(voices, list) or len(voices) > MAX_ARCHIVE_VOICES or not all(isinstance(v, str) for v in voices):
        raise InvalidArchiveError(f"{label}: library.json must list at most {MAX_ARCHIVE_VOICES} voice ids")
    if len(set(voices)) != len(voices):
        raise InvalidArchiveError(f"{label}: library.json lists a voice twice")
    for voice_id in voices:
        validate_voice_id(voice_id)
    if default is not None and default not in voices:
        raise InvalidArchiveError(f"{label}: the default voice {str(default)[:60]!r} is not in the archive")
    return index


@dataclass
class SyncReport:
    """What ``sync_voices_dir`` did: (id or folder, action) pairs and per-folder errors."""

    actions: list[tuple[str, str]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    default_voice: str | None = None


def sync_voices_dir(store: VoiceStore, voices_dir: str | Path | None, default_voice: str | None = None,
                    transcriber: Transcriber | None = None) -> SyncReport:
    """Import or refresh every voice folder in ``voices_dir`` (seed layout) and apply the
    default voice. Re-running it changes nothing unless a folder changed; a broken
    folder is reported and skipped, never fatal. Nothing is invented for an empty library."""
    report = SyncReport()
    if voices_dir:
        root = Path(voices_dir)
        folders = sorted(p for p in root.iterdir() if (p / "manifest.json").is_file()) if root.is_dir() else []
        if not root.is_dir():
            report.errors.append((str(root), "not a folder"))
        for folder in folders:
            try:
                result = import_voice(store, folder, refresh=True, transcriber=transcriber)
                report.actions.append((result.voice.id, result.action))
            except (LibraryError, OSError, ValueError) as exc:
                log.warning("voice folder %s skipped: %s", folder, exc)
                report.errors.append((folder.name, str(exc)))
    if default_voice:
        if store.find(default_voice) is not None:
            store.set_default(default_voice)
        else:
            report.errors.append((default_voice, f"{DEFAULT_VOICE_ENV}={default_voice!r} names no voice"))
    current = store.default_voice()
    report.default_voice = current.id if current else None
    return report


def sync_from_environment(store: VoiceStore, environ=None, transcriber: Transcriber | None = None) -> SyncReport:
    """``sync_voices_dir`` with ``$TTS_VOICES_DIR`` and ``$TTS_DEFAULT_VOICE`` (app start-up)."""
    environ = os.environ if environ is None else environ
    return sync_voices_dir(store, environ.get(VOICES_DIR_ENV) or None, environ.get(DEFAULT_VOICE_ENV) or None, transcriber)
