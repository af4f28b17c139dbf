"""The declared schema of a voice folder's ``manifest.json``, checked before anything is
written: a wrong type (``"warnings": "abc"``, ``"version": "x"``, ``"tags": 5``), a number out
of range, a lone surrogate or a NUL in any string refuses the folder with a message that
names the field, instead of importing a voice that later breaks reading or export.

Keys the studio does not know (the seed's ``accent``, ``notes``...) are kept as they are.
"""
from __future__ import annotations

import json
import math
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from voices_db.errors import InvalidArchiveError

MAX_TEXT = 5000


def _plain_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("is not valid Unicode (a lone surrogate)") from None
    return value


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


Text = Annotated[str, Field(max_length=MAX_TEXT), AfterValidator(_plain_text)]
Short = Annotated[str, Field(max_length=200), AfterValidator(_plain_text)]
FileName = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_plain_text)]
Number = Annotated[float, AfterValidator(_finite)]


class ManifestWarning(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    code: Short
    message: Text


class Manifest(BaseModel):
    """Every key the studio reads or writes (see ``ingest.folders.manifest_for``)."""

    model_config = ConfigDict(strict=True, extra="allow")

    studio_manifest_version: int | None = Field(None, ge=1, le=1000)
    name: Text | None = None
    id: Short | None = None
    description: Text | None = None
    language: Short | None = None
    sample_rate: int | None = Field(None, ge=1000, le=384000)
    format: Short | None = None
    model_backend: Short | None = None
    reference_audio: FileName | None = None
    transcript_file: FileName | None = None
    original_audio: FileName | None = None
    transcript: Text | None = None
    tags: list[Short] | None = Field(None, max_length=100)
    transcript_source: Short | None = None
    duration: Number | None = Field(None, ge=0, le=86400)
    loudness_dbfs: Number | None = Field(None, ge=-1000, le=100)
    audio_sha256: Short | None = None
    warnings: list[ManifestWarning] | None = Field(None, max_length=100)
    ingest_report: dict[str, Any] | None = None
    created_at: Short | None = None
    updated_at: Short | None = None
    version: int | None = Field(None, ge=1, le=2**31 - 1)


def parse_manifest(data: Any, label: str) -> dict:
    """The manifest as a plain dict of checked values; InvalidArchiveError naming the bad
    fields otherwise. `label` names the file in messages."""
    if not isinstance(data, dict):
        raise InvalidArchiveError(f"{label} must hold a JSON object")
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")  # extras and the report too
    except UnicodeEncodeError:
        raise InvalidArchiveError(f"{label} holds text that is not valid Unicode (a lone surrogate)") from None
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'manifest'}: {e['msg']}"
                             for e in exc.errors()[:3])
        raise InvalidArchiveError(f"{label} is not a valid voice manifest ({problems})") from None
    checked = manifest.model_dump(exclude_unset=True)
    return {key: checked.get(key, value) for key, value in data.items()}  # extras as they came
