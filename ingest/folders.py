"""Voice folders in the seed manifest format: ``manifest.json`` + ``reference.wav`` +
``transcript.txt`` (see ../shared/seeds/voice-manifest-example.json), one per voice.

Export writes the stored files byte for byte and every metadata field; import of such a
folder keeps the audio bytes as they are (a canonical 24 kHz mono 16-bit WAV of 3-16 s
with a transcript) and restores the metadata, so export -> delete -> import is exact.
Any other folder (a seed with a float WAV, a long clip, no transcript) goes through the
ingest pipeline. Unknown manifest keys (``accent``, ``notes``...) are kept and written back.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import wave
from dataclasses import dataclass
from pathlib import Path

from ingest.decode import MAX_FILE_BYTES
from ingest.library import compact_report, original_name_for
from ingest.manifest import parse_manifest
from ingest.pipeline import IngestOptions, process_clip
from ingest.transcribe import Transcriber
from voices_db import DuplicateVoiceError, NewVoice, Voice, VoiceStore
from voices_db.audio_io import is_canonical_wav, pcm16_to_float, pcm_sha256, read_wav_pcm16, rms_dbfs, write_wav_pcm16
from voices_db.errors import InvalidArchiveError
from voices_db.paths import slugify, validate_voice_id

MANIFEST = "manifest.json"
TRANSCRIPT = "transcript.txt"
MANIFEST_VERSION = 1
MAX_MANIFEST_BYTES = 1 << 20
MAX_TRANSCRIPT_BYTES = 64 * 1024  # a 10-minute clip's words fit several times
MAX_AUDIO_BYTES = MAX_FILE_BYTES  # the ingest limit: a larger clip is refused anyway
WAV_HEADER_SLACK = 4096  # RIFF header and small chunks (LIST, fact) around the samples
_OURS = {
    "studio_manifest_version", "name", "id", "description", "language", "sample_rate", "format",
    "model_backend", "reference_audio", "transcript_file", "original_audio", "tags",
    "transcript_source", "duration", "loudness_dbfs", "audio_sha256", "warnings",
    "ingest_report", "created_at", "updated_at", "version", "transcript",
}


def export_voice(store: VoiceStore, voice_id: str, dest: str | Path) -> Path:
    """Write ``dest/<id>/`` (manifest.json, reference.wav, transcript.txt, original.*)."""
    voice = store.get(voice_id)
    folder = Path(dest) / voice.id
    if folder.exists() and any(folder.iterdir()):
        raise DuplicateVoiceError(f"{folder} already exists and is not empty")
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(store.audio_path(voice), folder / "reference.wav")
    (folder / TRANSCRIPT).write_text(voice.transcript + "\n", encoding="utf-8")
    original = store.original_path(voice)
    if original is not None and original.exists():
        shutil.copyfile(original, folder / original.name)
    (folder / MANIFEST).write_text(json.dumps(manifest_for(voice), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return folder


def manifest_for(voice: Voice) -> dict:
    """The manifest of a stored voice (the seed's keys first, then the studio's)."""
    report = dict(voice.ingest_report)
    extra = report.pop("manifest_extra", {})
    return {
        "name": voice.name,
        "id": voice.id,
        "description": voice.description,
        "language": voice.language,
        "sample_rate": voice.sample_rate,
        "format": "pcm_s16",
        "model_backend": "qwen3",
        "reference_audio": "reference.wav",
        **extra,
        "studio_manifest_version": MANIFEST_VERSION,
        "transcript_file": TRANSCRIPT,
        "original_audio": Path(voice.original_file).name if voice.original_file else None,
        "tags": list(voice.tags),
        "transcript_source": voice.transcript_source,
        "duration": voice.duration,
        "loudness_dbfs": voice.loudness_dbfs,
        "audio_sha256": voice.audio_sha256,
        "warnings": [dict(w) for w in voice.warnings],
        "ingest_report": report,
        "created_at": voice.created_at,
        "updated_at": voice.updated_at,
        "version": voice.version,
    }


@dataclass(frozen=True)
class ImportResult:
    voice: Voice
    action: str  # "created", "updated" or "unchanged"


def import_voice(
    store: VoiceStore,
    folder: str | Path,
    *,
    transcriber: Transcriber | None = None,
    replace: bool = False,
    refresh: bool = False,
    options: IngestOptions = IngestOptions(),
) -> ImportResult:
    """Import one voice folder.

    An existing voice with the same id is an error unless ``replace`` (always overwrite)
    or ``refresh`` (overwrite only if the folder changed since it was imported: how seed
    folders are re-read at every start without duplicating or reprocessing voices).
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    voice_id = validate_voice_id(manifest.get("id") or slugify(str(manifest.get("name") or folder.name)))
    reference = _inside(folder, manifest.get("reference_audio") or "reference.wav", MAX_AUDIO_BYTES)
    fingerprint = _fingerprint(folder, reference)
    existing = store.find(voice_id)
    if existing is not None:
        if refresh and existing.ingest_report.get("folder_fingerprint") == fingerprint:
            return ImportResult(existing, "unchanged")
        if refresh and not replace and "folder_fingerprint" not in existing.ingest_report:
            raise DuplicateVoiceError(
                f"a voice with id {voice_id!r} was added by hand: the seed folder does not overwrite it"
            )
        if not (replace or refresh):
            raise DuplicateVoiceError(f"a voice with id {voice_id!r} already exists (use --replace to overwrite it)")
    new, processed = _new_voice(
        folder, manifest, voice_id, reference, fingerprint if refresh else None, transcriber, options
    )
    with store.staging_dir() as stage:
        _stage_files(folder, manifest, reference, stage, new, processed)
        if existing is None:
            return ImportResult(store.create_voice(new, stage), "created")
        return ImportResult(store.replace_voice(voice_id, new, stage), "updated")


def read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not path.is_file():
        raise InvalidArchiveError(f"{folder} is not a voice folder: {MANIFEST} is missing")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise InvalidArchiveError(f"{path} is too large to be a manifest")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidArchiveError(f"{path} is not valid JSON ({str(exc)[:200]})") from None
    return parse_manifest(data, str(path))


def _inside(folder: Path, name: str, max_bytes: int) -> Path:
    """A file named by a manifest, refused unless it is directly inside ``folder`` and at
    most ``max_bytes`` long (checked before it is read)."""
    path = folder / str(name)
    if Path(str(name)).name != str(name) or path.resolve().parent != folder.resolve() or not path.is_file():
        raise InvalidArchiveError(f"{folder}: {name!r} is not a file inside the voice folder")
    if path.stat().st_size > max_bytes:
        raise InvalidArchiveError(f"{folder}: {name} is larger than {max_bytes // 1024} KB: too large for a voice")
    return path


def _fingerprint(folder: Path, reference: Path) -> str:
    digest = hashlib.sha256()
    for path in (folder / MANIFEST, reference, folder / TRANSCRIPT):
        if not path.is_file():
            digest.update(b"-")
            continue
        with open(path, "rb") as f:  # in pieces: the sizes were checked, memory need not hold them
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def _read_transcript(folder: Path, manifest: dict) -> str | None:
    name = manifest.get("transcript_file") or TRANSCRIPT
    path = folder / str(name)
    if Path(str(name)).name == str(name) and path.is_file():
        _inside(folder, name, MAX_TRANSCRIPT_BYTES)
        try:
            return path.read_text(encoding="utf-8").strip() or None
        except UnicodeDecodeError:
            raise InvalidArchiveError(f"{path} is not UTF-8 text") from None
    return (str(manifest.get("transcript") or "").strip()) or None


def _new_voice(folder, manifest, voice_id, reference, fingerprint, transcriber, options) -> tuple[NewVoice, object]:
    """The voice to create, and the processed PCM to write (None: copy the file as is)."""
    transcript = _read_transcript(folder, manifest)
    report = dict(manifest.get("ingest_report") or {})
    extra = {k: v for k, v in manifest.items() if k not in _OURS}
    if extra:  # e.g. the seed's "accent" and "notes": written back on export
        report["manifest_extra"] = extra
    if fingerprint is not None:
        report["folder_fingerprint"] = fingerprint
    common = dict(
        name=str(manifest.get("name") or voice_id),
        voice_id=voice_id,
        description=str(manifest.get("description") or ""),
        tags=list(manifest.get("tags") or []),
        created_at=manifest.get("created_at"),
        updated_at=manifest.get("updated_at"),
        version=int(manifest.get("version") or 1),
        ingest_report=report,
    )
    if transcript and _keep_as_is(reference, options):
        pcm, rate = read_wav_pcm16(reference)
        loudness = rms_dbfs(pcm16_to_float(pcm))
        new = NewVoice(
            **common, duration=round(len(pcm) / rate, 4), sample_rate=rate, audio_sha256=pcm_sha256(pcm),
            transcript=transcript, transcript_source=str(manifest.get("transcript_source") or "import"),
            language=manifest.get("language"), warnings=list(manifest.get("warnings") or []),
            loudness_dbfs=manifest.get("loudness_dbfs", round(loudness, 2) if loudness > -200 else None),
        )
        return new, None
    clip = process_clip(reference, transcriber or Transcriber(), transcript, manifest.get("language"), options)
    report["pipeline"] = compact_report(clip.report)
    new = NewVoice(
        **common, duration=round(clip.duration, 4), sample_rate=clip.sample_rate, audio_sha256=clip.audio_sha256,
        transcript=clip.transcript, transcript_source=clip.transcript_source, language=clip.language,
        loudness_dbfs=clip.loudness_dbfs, warnings=clip.warnings,
    )
    return new, clip.pcm


def _keep_as_is(reference: Path, options: IngestOptions) -> bool:
    """A reference that is already what the pipeline would produce is stored untouched.

    Its header is not trusted: the file's real size must match the samples it claims (else
    it goes through the pipeline, whose decoder is bounded), and it is small enough to read."""
    longest = int((options.max_span_s + 1.0) * 24000) * 2
    size = reference.stat().st_size
    if size > longest + WAV_HEADER_SLACK or not is_canonical_wav(reference):
        return False
    pcm, rate = read_wav_pcm16(reference)
    with wave.open(str(reference), "rb") as src:
        claimed = src.getnframes()
    if claimed != len(pcm) or not 0 <= size - 2 * len(pcm) <= WAV_HEADER_SLACK:
        return False
    return options.min_speech_s <= len(pcm) / rate <= options.max_span_s + 1.0


def _stage_files(folder: Path, manifest: dict, reference: Path, stage: Path, new: NewVoice, processed) -> None:
    """Copy (or write) the files of ``new`` into ``stage``; sets ``new.original_name``."""
    if processed is None:
        shutil.copyfile(reference, stage / "reference.wav")
    else:
        write_wav_pcm16(stage / "reference.wav", processed, new.sample_rate)
    original = manifest.get("original_audio")
    if original:
        source = _inside(folder, original, MAX_AUDIO_BYTES)
        new.original_name = original_name_for(source)
        shutil.copyfile(source, stage / new.original_name)
    elif processed is not None:  # the seed's own file is the original upload
        new.original_name = original_name_for(reference)
        shutil.copyfile(reference, stage / new.original_name)

