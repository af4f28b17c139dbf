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
from voices_db import VoiceStore
from voices_db.errors import CorruptLibraryError, LibraryError
from voices_db.paths import validate_voice_id

log = logging.getLogger(__name__)

ARCHIVE_FORMAT = "qwen3-voice-studio-library"
ARCHIVE_VERSION = 1
MAX_ARCHIVE_MEMBERS = 100_000
MAX_UNPACKED_BYTES = 20 * 2**30
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
    """Import every voice of an archive (checked in full before any voice is added)."""
    with store.staging_dir() as stage:
        index = _safe_extract(Path(archive), stage)
        folders = [stage / "voices" / validate_voice_id(v) for v in index.get("voices", [])]
        for folder in folders:
            read_manifest(folder)  # every manifest must be sound before anything is imported
        results = [import_voice(store, f, replace=replace, transcriber=transcriber) for f in folders]
    default = index.get("default_voice")
    if default and store.find(default) is not None:
        store.set_default(default)
    return results


def check_zip_members(zf: zipfile.ZipFile, label: str, *, max_members: int, max_bytes: int,
                      error: type[Exception] = CorruptLibraryError, what: str = "a voice library") -> None:
    """Refuse, before extracting anything, a zip too big to unpack (`max_members`,
    `max_bytes` uncompressed) or holding an unsafe member name: absolute, with '..', a
    backslash or NUL, or a symbolic link. Raises `error` with a message naming `label`."""
    members = zf.infolist()
    if len(members) > max_members or sum(m.file_size for m in members) > max_bytes:
        raise error(f"{label} is too large to be {what}")
    for member in members:
        name = member.filename
        is_link = (member.external_attr >> 16) & 0o170000 == 0o120000
        if name.startswith("/") or ".." in PurePosixPath(name).parts or "\\" in name or "\x00" in name or is_link:
            raise error(f"{label}: unsafe entry {name!r}")


def _safe_extract(archive: Path, stage: Path) -> dict:
    """Extract after checking every member name (no absolute paths, no '..', no links)."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise CorruptLibraryError(f"{archive.name} is not a library archive ({exc})") from exc
    with zf:
        check_zip_members(zf, archive.name, max_members=MAX_ARCHIVE_MEMBERS, max_bytes=MAX_UNPACKED_BYTES)
        if "library.json" not in zf.namelist():
            raise CorruptLibraryError(f"{archive.name} has no library.json: not a library archive")
        zf.extractall(stage)
    index = json.loads((stage / "library.json").read_text(encoding="utf-8"))
    if not isinstance(index, dict) or index.get("format") != ARCHIVE_FORMAT:
        raise CorruptLibraryError(f"{archive.name} is not a {ARCHIVE_FORMAT} archive")
    if int(index.get("version", 0)) > ARCHIVE_VERSION:
        raise CorruptLibraryError(f"{archive.name} was written by a newer studio (archive version {index['version']})")
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
