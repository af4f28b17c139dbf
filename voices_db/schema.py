"""SQLAlchemy models of the current schema (the tables themselves come from migrations).

``tests/test_voices_db.py`` checks that the schema the migrations build from nothing has
exactly these tables and columns, so the two cannot drift apart.
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class VoiceRow(Base):
    """One voice: its processed clip, transcript and metadata."""

    __tablename__ = "voices"

    id: Mapped[str] = mapped_column(String, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    # casefolded name: the list is sorted by it, through an index, so a page costs the
    # same with 100 voices or 10,000
    name_key: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    language: Mapped[str | None] = mapped_column(String, nullable=True)
    tags: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of strings
    transcript: Mapped[str] = mapped_column(Text, default="")
    # "user", "whisper:<model>", "import" or "unknown" (voices from schema v1)
    transcript_source: Mapped[str] = mapped_column(String, default="unknown")
    audio_file: Mapped[str] = mapped_column(Text)  # relative to the data directory
    original_file: Mapped[str | None] = mapped_column(Text, nullable=True)
    duration: Mapped[float] = mapped_column()
    sample_rate: Mapped[int] = mapped_column(Integer)
    loudness_dbfs: Mapped[float | None] = mapped_column(nullable=True)
    audio_sha256: Mapped[str | None] = mapped_column(String, nullable=True)
    warnings: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of {code, message}
    ingest_report: Mapped[str] = mapped_column(Text, default="{}")  # JSON object
    is_default: Mapped[bool] = mapped_column(default=False)
    version: Mapped[int] = mapped_column(Integer, default=1)  # bumped on every edit
    created_at: Mapped[str] = mapped_column(String)  # ISO 8601, UTC
    updated_at: Mapped[str] = mapped_column(String)

    __table_args__ = (
        Index("ix_voices_name_key", "name_key", "id"),
        Index("ix_voices_one_default", "is_default", unique=True, sqlite_where=text("is_default = 1")),
    )


class PromptRow(Base):
    """A cached ``VoicePrompt.to_bytes()`` for one voice, mode and model."""

    __tablename__ = "voice_prompts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    voice_id: Mapped[str] = mapped_column(ForeignKey("voices.id", ondelete="CASCADE"))
    mode: Mapped[str] = mapped_column(String)  # "icl" or "xvector"
    model_id: Mapped[str] = mapped_column(Text)
    model_revision: Mapped[str] = mapped_column(Text)
    cache_key: Mapped[str] = mapped_column(String, unique=True)
    blob: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[str] = mapped_column(String)

    __table_args__ = (Index("ix_voice_prompts_voice", "voice_id", "mode"),)


class MigrationRow(Base):
    """Log of applied migrations; ``PRAGMA user_version`` holds the current version."""

    __tablename__ = "schema_migrations"

    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String)
    applied_at: Mapped[str] = mapped_column(String)
