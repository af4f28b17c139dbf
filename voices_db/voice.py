"""Plain records handed out by the store (never live ORM objects), and field validation."""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any

from voices_db.errors import InvalidNameError
from voices_db.migrations import utc_now
from voices_db.paths import clean_name
from voices_db.schema import VoiceRow

EDITABLE_FIELDS = frozenset({"name", "description", "language", "tags", "transcript", "transcript_source"})
MAX_TAG_LEN = 40
MAX_DESCRIPTION_LEN = 2000
MAX_TRANSCRIPT_LEN = 5000
_LANGUAGE = re.compile(r"^[a-z]{2,3}(?:-[a-z0-9]{2,8})?$|^[a-z]{4,20}$")


def clean_tags(tags: Any) -> list[str]:
    """Tags as a de-duplicated list of short single-line strings, order kept."""
    if isinstance(tags, str):
        tags = [t for t in tags.split(",")]
    out: list[str] = []
    for tag in tags or []:
        tag = unicodedata.normalize("NFC", str(tag)).strip()
        if not tag:
            continue
        if len(tag) > MAX_TAG_LEN or any(unicodedata.category(c) == "Cc" for c in tag):
            raise InvalidNameError(f"invalid tag {tag[:50]!r}: at most {MAX_TAG_LEN} characters, one line")
        if tag not in out:
            out.append(tag)
    return out


def clean_language(language: str | None) -> str | None:
    """A language code or name in lowercase (``"en"``, ``"english"``, ``"pt-br"``), or None."""
    if language is None or not str(language).strip():
        return None
    value = str(language).strip().lower()
    if not _LANGUAGE.match(value):
        raise InvalidNameError(f"invalid language {language!r}: use a code such as 'en' or a name such as 'english'")
    return value


def clean_text(value: Any, what: str, limit: int) -> str:
    value = "" if value is None else str(value).strip()
    if "\x00" in value:
        raise InvalidNameError(f"the {what} contains a NUL character")
    if len(value) > limit:
        raise InvalidNameError(f"the {what} is longer than {limit} characters")
    return value


@dataclass(frozen=True)
class Voice:
    """One voice of the library as stored (see ``voices_db.schema.VoiceRow``)."""

    id: str
    name: str
    description: str
    language: str | None
    tags: tuple[str, ...]
    transcript: str
    transcript_source: str
    audio_file: str
    original_file: str | None
    duration: float
    sample_rate: int
    loudness_dbfs: float | None
    audio_sha256: str | None
    warnings: tuple[dict, ...]
    ingest_report: dict
    is_default: bool
    version: int
    created_at: str
    updated_at: str

    @classmethod
    def from_row(cls, row: VoiceRow) -> "Voice":
        return cls(
            id=row.id,
            name=row.name,
            description=row.description,
            language=row.language,
            tags=tuple(json.loads(row.tags)),
            transcript=row.transcript,
            transcript_source=row.transcript_source,
            audio_file=row.audio_file,
            original_file=row.original_file,
            duration=float(row.duration),
            sample_rate=int(row.sample_rate),
            loudness_dbfs=row.loudness_dbfs,
            audio_sha256=row.audio_sha256,
            warnings=tuple(json.loads(row.warnings)),
            ingest_report=json.loads(row.ingest_report),
            is_default=bool(row.is_default),
            version=int(row.version),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples become lists)."""
        data = asdict(self)
        data["tags"] = list(self.tags)
        data["warnings"] = [dict(w) for w in self.warnings]
        return data

    @staticmethod
    def apply_changes(row: VoiceRow, changes: dict[str, Any]) -> None:
        """Validate and set editable fields on a row; bumps ``version`` and ``updated_at``."""
        for key, value in changes.items():
            if key == "name":
                row.name = clean_name(value)
                row.name_key = row.name.casefold()
            elif key == "tags":
                row.tags = json.dumps(clean_tags(value))
            elif key == "language":
                row.language = clean_language(value)
            elif key == "description":
                row.description = clean_text(value, "description", MAX_DESCRIPTION_LEN)
            elif key == "transcript":
                row.transcript = clean_text(value, "transcript", MAX_TRANSCRIPT_LEN)
            elif key == "transcript_source":
                row.transcript_source = clean_text(value, "transcript source", 100) or "unknown"
        row.version = (row.version or 0) + 1
        row.updated_at = utc_now()


@dataclass
class NewVoice:
    """Everything needed to create a voice, apart from its files."""

    name: str
    duration: float
    sample_rate: int
    audio_sha256: str
    transcript: str = ""
    transcript_source: str = "user"
    language: str | None = None
    description: str = ""
    tags: list[str] = field(default_factory=list)
    loudness_dbfs: float | None = None
    warnings: list[dict] = field(default_factory=list)
    ingest_report: dict = field(default_factory=dict)
    original_name: str | None = None  # file name inside the staged folder, e.g. "original.m4a"
    voice_id: str | None = None  # explicit id (imports); None: derived from the name
    is_default: bool = False
    created_at: str | None = None  # kept by imports so a round trip is exact
    updated_at: str | None = None
    version: int = 1

    def to_row(self, voice_id: str, name: str) -> VoiceRow:
        now = utc_now()
        folder = f"voices/{voice_id}"
        return VoiceRow(
            id=voice_id,
            name=name,
            name_key=name.casefold(),
            description=clean_text(self.description, "description", MAX_DESCRIPTION_LEN),
            language=clean_language(self.language),
            tags=json.dumps(clean_tags(self.tags)),
            transcript=clean_text(self.transcript, "transcript", MAX_TRANSCRIPT_LEN),
            transcript_source=self.transcript_source or "unknown",
            audio_file=f"{folder}/reference.wav",
            original_file=f"{folder}/{self.original_name}" if self.original_name else None,
            duration=float(self.duration),
            sample_rate=int(self.sample_rate),
            loudness_dbfs=self.loudness_dbfs,
            audio_sha256=self.audio_sha256,
            warnings=json.dumps(list(self.warnings)),
            ingest_report=json.dumps(self.ingest_report),
            is_default=False,
            version=max(1, int(self.version)),
            created_at=self.created_at or now,
            updated_at=self.updated_at or self.created_at or now,
        )
