"""Ordered, named schema migrations.

The schema version lives in ``PRAGMA user_version`` (0 = empty file); each migration runs
in its own ``BEGIN IMMEDIATE`` transaction together with the version bump, so an upgrade
either completes a step or leaves the file as it was. Migrations are never edited once
released: a change to the schema is a new entry at the end of ``MIGRATIONS``.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from sqlalchemy import Connection, Engine, text

from voices_db.audio_io import pcm16_to_float, pcm_sha256, read_wav_pcm16, rms_dbfs
from voices_db.errors import CorruptLibraryError, DatabaseTooNewError, LibraryError
from voices_db.paths import DataLayout


def utc_now() -> str:
    """Current time as ISO 8601 UTC with microseconds (the format of every timestamp)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[Connection, DataLayout], None]


def _m0001_initial(conn: Connection, layout: DataLayout) -> None:
    conn.exec_driver_sql(
        """CREATE TABLE schema_migrations (
            version INTEGER NOT NULL PRIMARY KEY,
            name VARCHAR NOT NULL,
            applied_at VARCHAR NOT NULL)"""
    )
    conn.exec_driver_sql(
        """CREATE TABLE voices (
            id VARCHAR NOT NULL PRIMARY KEY,
            name TEXT NOT NULL,
            description TEXT NOT NULL,
            language VARCHAR,
            transcript TEXT NOT NULL,
            audio_file TEXT NOT NULL,
            duration FLOAT NOT NULL,
            sample_rate INTEGER NOT NULL,
            created_at VARCHAR NOT NULL)"""
    )


def _m0002_voice_prompts(conn: Connection, layout: DataLayout) -> None:
    conn.exec_driver_sql(
        """CREATE TABLE voice_prompts (
            id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
            voice_id VARCHAR NOT NULL REFERENCES voices (id) ON DELETE CASCADE,
            mode VARCHAR NOT NULL,
            model_id TEXT NOT NULL,
            model_revision TEXT NOT NULL,
            cache_key VARCHAR NOT NULL UNIQUE,
            blob BLOB NOT NULL,
            created_at VARCHAR NOT NULL)"""
    )
    conn.exec_driver_sql("CREATE INDEX ix_voice_prompts_voice ON voice_prompts (voice_id, mode)")


_V3_COLUMNS = (
    "name_key TEXT NOT NULL DEFAULT ''",
    "tags TEXT NOT NULL DEFAULT '[]'",
    "transcript_source VARCHAR NOT NULL DEFAULT 'unknown'",
    "original_file TEXT",
    "loudness_dbfs FLOAT",
    "audio_sha256 VARCHAR",
    "warnings TEXT NOT NULL DEFAULT '[]'",
    "ingest_report TEXT NOT NULL DEFAULT '{}'",
    "is_default BOOLEAN NOT NULL DEFAULT 0",
    "version INTEGER NOT NULL DEFAULT 1",
    "updated_at VARCHAR NOT NULL DEFAULT ''",
)


def _m0003_library_metadata(conn: Connection, layout: DataLayout) -> None:
    for column in _V3_COLUMNS:
        conn.exec_driver_sql(f"ALTER TABLE voices ADD COLUMN {column}")
    rows = conn.execute(text("SELECT id, name, audio_file, created_at FROM voices")).all()
    for voice_id, name, audio_file, created_at in rows:
        conn.execute(
            text(
                "UPDATE voices SET name_key = :key, updated_at = :created, audio_sha256 = :sha, "
                "loudness_dbfs = :loud, warnings = :warnings WHERE id = :id"
            ),
            {"id": voice_id, "key": name.casefold(), "created": created_at, **_measure_legacy_clip(layout, audio_file)},
        )
    # Exactly one default when any voice exists: the oldest one, as v1 had no notion of it.
    conn.exec_driver_sql(
        "UPDATE voices SET is_default = 1 WHERE id = "
        "(SELECT id FROM voices ORDER BY created_at, id LIMIT 1)"
    )
    conn.exec_driver_sql("CREATE INDEX ix_voices_name_key ON voices (name_key, id)")
    conn.exec_driver_sql("CREATE UNIQUE INDEX ix_voices_one_default ON voices (is_default) WHERE is_default = 1")


def _measure_legacy_clip(layout: DataLayout, audio_file: str) -> dict:
    """Hash and loudness of a clip stored by v1; a missing file is kept as a warning."""
    try:
        pcm, _ = read_wav_pcm16(layout.resolve(audio_file))
    except (OSError, LibraryError) as exc:
        warning = {"code": "audio_missing", "message": f"reference audio unreadable at upgrade: {exc}"}
        return {"sha": None, "loud": None, "warnings": json.dumps([warning])}
    loudness = rms_dbfs(pcm16_to_float(pcm))
    return {
        "sha": pcm_sha256(pcm),
        "loud": round(loudness, 2) if loudness != float("-inf") else None,
        "warnings": "[]",
    }


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial", _m0001_initial),
    Migration(2, "voice_prompts", _m0002_voice_prompts),
    Migration(3, "library_metadata", _m0003_library_metadata),
)
LATEST_VERSION = MIGRATIONS[-1].version


def current_version(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("PRAGMA user_version").scalar_one())


def upgrade(engine: Engine, layout: DataLayout, target: int = LATEST_VERSION) -> list[str]:
    """Bring the database to ``target`` (default: latest); return the names applied.

    Refuses, before touching anything, a database whose version is newer than this code.
    Before upgrading a database that already holds data, a copy is kept beside it as
    ``voices.v<N>.bak.sqlite3``.
    """
    version = current_version(engine)
    if version > LATEST_VERSION:
        raise DatabaseTooNewError(
            f"{layout.db_path} has schema version {version}, but this version of the studio "
            f"only knows up to {LATEST_VERSION}: upgrade the studio, or use another --data-dir"
        )
    if 0 < version < target:
        _backup(layout, version)
    applied = []
    for migration in MIGRATIONS:
        if migration.version > target:
            break
        # Re-read the version inside the write lock: another process may have just run it.
        with engine.connect().execution_options(sqlite_write=True) as conn, conn.begin():
            now = int(conn.exec_driver_sql("PRAGMA user_version").scalar_one())
            if now >= migration.version:
                continue
            if now != migration.version - 1:
                raise CorruptLibraryError(f"database at version {now} cannot take migration {migration.version}")
            migration.apply(conn, layout)
            conn.execute(
                text("INSERT INTO schema_migrations (version, name, applied_at) VALUES (:v, :n, :t)"),
                {"v": migration.version, "n": migration.name, "t": utc_now()},
            )
            conn.exec_driver_sql(f"PRAGMA user_version = {int(migration.version)}")
        applied.append(f"{migration.version:04d}_{migration.name}")
    return applied


def _backup(layout: DataLayout, version: int) -> None:
    target = layout.db_path.with_name(f"voices.v{version}.bak.sqlite3")
    if target.exists():
        return
    partial = target.with_suffix(".partial")
    src = sqlite3.connect(str(layout.db_path), timeout=30)
    try:
        dst = sqlite3.connect(str(partial))
        with dst:
            src.backup(dst)
        dst.close()
    finally:
        src.close()
    shutil.move(str(partial), str(target))
