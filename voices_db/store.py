"""The voice library: SQLite (WAL, busy timeout) through SQLAlchemy 2.x, plus voice folders.

Every write runs in a ``BEGIN IMMEDIATE`` transaction, which takes SQLite's write lock up
front: read-modify-write sequences (allocating an id, editing tags, moving the default)
are serialized across threads and processes, so no update is lost and no writer fails
with "database is locked" halfway (the busy timeout makes the others wait instead).
File moves happen inside that transaction and are undone if it fails, so a voice is
either fully there (row + folder) or not at all.
"""

from __future__ import annotations

import base64
import json
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import create_engine, delete, event, func, select, tuple_, update
from sqlalchemy.orm import Session

from voices_db import migrations
from voices_db.errors import ConflictError, DuplicateVoiceError, InvalidNameError, VoiceNotFoundError
from voices_db.paths import DataLayout, clean_name, slugify, validate_voice_id
from voices_db.schema import PromptRow, VoiceRow
from voices_db.voice import EDITABLE_FIELDS, NewVoice, Voice

BUSY_TIMEOUT_S = 30.0
STALE_TMP_S = 3600.0


def _configure(engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # the "begin" hook below issues BEGIN itself
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()
        # SQLite's own lower() folds ASCII only; search must fold every script alike.
        dbapi_conn.create_function("casefold", 1, _casefold, deterministic=True)

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        immediate = conn.get_execution_options().get("sqlite_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class VoiceStore:
    """Voices and cached prompt blobs in one data directory (see ``voices_db.paths``)."""

    def __init__(self, data_dir: str | Path):
        self.layout = DataLayout(Path(data_dir).resolve())
        self.layout.ensure()
        self._engine = create_engine(
            f"sqlite:///{self.layout.db_path}",
            connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False},
        )
        _configure(self._engine)
        self._write_engine = self._engine.execution_options(sqlite_write=True)
        try:
            self.applied_migrations = migrations.upgrade(self._engine, self.layout)
        except BaseException:
            self._engine.dispose()
            raise
        self.sweep_stale()

    # -- plumbing -------------------------------------------------------------------------

    def close(self) -> None:
        """Release the connection pool (the store is unusable afterwards)."""
        self._engine.dispose()

    def __enter__(self) -> "VoiceStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with Session(self._engine, expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with Session(self._write_engine, expire_on_commit=False) as session, session.begin():
            yield session

    @property
    def schema_version(self) -> int:
        return migrations.current_version(self._engine)

    @contextmanager
    def staging_dir(self) -> Iterator[Path]:
        """A fresh folder under ``DATA/tmp`` for building a voice; always removed on exit."""
        path = self.layout.tmp_dir / f"stage-{uuid.uuid4().hex}"
        path.mkdir(parents=True)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def sweep_stale(self, max_age_s: float = STALE_TMP_S) -> list[str]:
        """Remove leftovers of killed processes: old temp folders and voice folders without a row."""
        removed = []
        cutoff = time.time() - max_age_s
        with self._read() as session:
            known = set(session.scalars(select(VoiceRow.id)))
        candidates = list(self.layout.tmp_dir.iterdir()) + [
            p for p in self.layout.voices_dir.iterdir() if p.name not in known and _is_voice_folder(p)
        ]
        for path in candidates:
            try:
                if path.lstat().st_mtime < cutoff:
                    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
                    removed.append(str(path))
            except OSError:
                continue
        return removed

    # -- reading ----------------------------------------------------------------------------

    def find(self, voice_id: str) -> Voice | None:
        """The voice with this id, or None."""
        with self._read() as session:
            row = session.get(VoiceRow, voice_id)
            return Voice.from_row(row) if row else None

    def get(self, voice_id: str) -> Voice:
        """The voice with this id; raises ``VoiceNotFoundError``."""
        voice = self.find(voice_id)
        if voice is None:
            raise VoiceNotFoundError(voice_id)
        return voice

    def count(self) -> int:
        with self._read() as session:
            return session.scalar(select(func.count()).select_from(VoiceRow))

    def default_voice(self) -> Voice | None:
        with self._read() as session:
            row = session.scalar(select(VoiceRow).where(VoiceRow.is_default.is_(True)))
            return Voice.from_row(row) if row else None

    def list_page(self, limit: int = 50, cursor: str | None = None, search: str | None = None) -> "VoicePage":
        """One page of voices sorted by name (keyset pagination over an index).

        ``cursor`` is the ``next_cursor`` of the previous page. The cost of a page does not
        depend on how many voices are stored, and no page is skipped or repeated when voices
        are added or removed between calls. ``search`` keeps the voices whose id, name,
        description, language or transcript contains it, case-insensitively (SQLite scans
        the rows in name order until the page is full).
        """
        limit = max(1, min(int(limit), 500))
        query = select(VoiceRow).order_by(VoiceRow.name_key, VoiceRow.id).limit(limit + 1)
        needle = _casefold(search).strip()
        if needle:
            haystack = func.casefold(VoiceRow.id + " " + VoiceRow.name + " " + VoiceRow.description + " "
                                     + func.coalesce(VoiceRow.language, "") + " " + VoiceRow.transcript)
            query = query.where(func.instr(haystack, needle) > 0)
        if cursor:
            key, last_id = _decode_cursor(cursor)
            query = query.where(tuple_(VoiceRow.name_key, VoiceRow.id) > tuple_(key, last_id))
        with self._read() as session:
            rows = list(session.scalars(query))
        more = len(rows) > limit
        items = [Voice.from_row(r) for r in rows[:limit]]
        next_cursor = _encode_cursor(rows[limit - 1].name_key, rows[limit - 1].id) if more else None
        return VoicePage(items=items, next_cursor=next_cursor)

    def iter_all(self, page_size: int = 200) -> Iterator[Voice]:
        """Every voice, by name, a page at a time."""
        cursor = None
        while True:
            page = self.list_page(page_size, cursor)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def audio_path(self, voice: Voice) -> Path:
        return self.layout.resolve(voice.audio_file)

    def original_path(self, voice: Voice) -> Path | None:
        return self.layout.resolve(voice.original_file) if voice.original_file else None

    # -- writing ----------------------------------------------------------------------------

    def create_voice(self, new: NewVoice, staged_dir: Path) -> Voice:
        """Add a voice whose files were built in ``staged_dir`` (from ``staging_dir()``).

        ``staged_dir`` must hold ``reference.wav`` and, optionally, ``new.original_name``.
        The id is ``new.voice_id`` if given (``DuplicateVoiceError`` if taken), else a slug of
        the name made unique with ``-2``, ``-3``... The first voice becomes the default.
        """
        name = clean_name(new.name)
        staged_dir = Path(staged_dir)
        if not (staged_dir / "reference.wav").is_file():
            raise FileNotFoundError(f"{staged_dir}/reference.wav is missing")
        moved: Path | None = None
        try:
            with self._write() as session:
                voice_id = self._allocate_id(session, new.voice_id, name)
                target = self.layout.voice_dir(voice_id)
                if target.exists():  # our folder without a row: leftover of a killed process
                    shutil.rmtree(target)
                staged_dir.rename(target)
                moved = target
                row = new.to_row(voice_id, name)
                has_default = session.scalar(select(VoiceRow.id).where(VoiceRow.is_default.is_(True)))
                row.is_default = new.is_default or has_default is None
                if row.is_default:
                    session.execute(update(VoiceRow).where(VoiceRow.is_default.is_(True)).values(is_default=False))
                session.add(row)
        except BaseException:
            if moved is not None:  # the row never committed: its folder must go too
                shutil.rmtree(moved, ignore_errors=True)
            raise
        return self.get(voice_id)

    def replace_voice(self, voice_id: str, new: NewVoice, staged_dir: Path) -> Voice:
        """Swap in new files and metadata for an existing voice (seed refresh, ``--replace``).

        Keeps the id, creation time and default flag; drops the voice's cached prompts.
        The old folder is restored if anything fails before the commit.
        """
        name = clean_name(new.name)
        folder = self.layout.voice_dir(voice_id)
        trash = self.layout.tmp_dir / f"replaced-{voice_id}-{uuid.uuid4().hex}"
        swapped = False
        try:
            with self._write() as session:
                row = session.get(VoiceRow, voice_id)
                if row is None:
                    raise VoiceNotFoundError(voice_id)
                fresh = new.to_row(voice_id, name)
                for column in VoiceRow.__table__.columns.keys():
                    if column not in ("id", "created_at", "is_default", "version"):
                        setattr(row, column, getattr(fresh, column))
                row.version += 1
                session.execute(delete(PromptRow).where(PromptRow.voice_id == voice_id))
                if folder.exists():
                    folder.rename(trash)
                Path(staged_dir).rename(folder)
                swapped = True
        except BaseException:
            if swapped:
                shutil.rmtree(folder, ignore_errors=True)
            if trash.exists():
                trash.rename(folder)
            raise
        shutil.rmtree(trash, ignore_errors=True)
        return self.get(voice_id)

    def _allocate_id(self, session: Session, wanted: str | None, name: str) -> str:
        def free(voice_id: str) -> bool:  # no row, and no folder we did not write
            folder = self.layout.voices_dir / voice_id
            return voice_id not in taken and (not folder.exists() or _is_voice_folder(folder))

        if wanted is not None:
            validate_voice_id(wanted)
            taken = {wanted} if session.get(VoiceRow, wanted) is not None else set()
            if not free(wanted):
                raise DuplicateVoiceError(f"a voice with id {wanted!r} already exists")
            return wanted
        stem = slugify(name)
        taken = set(session.scalars(select(VoiceRow.id).where(VoiceRow.id.like(f"{stem}%"))))
        candidate, n = stem, 1
        while not free(candidate):
            n += 1
            candidate = f"{stem}-{n}"
        return candidate

    def update_voice(self, voice_id: str, *, expected_version: int | None = None, **changes: Any) -> Voice:
        """Edit metadata fields (name, description, language, tags, transcript, ...).

        With ``expected_version`` the edit is refused (``ConflictError``) if someone else
        changed the voice since it was read. A new transcript drops the voice's cached ICL
        prompts (x-vector prompts do not depend on it and stay).
        """
        unknown = set(changes) - EDITABLE_FIELDS
        if unknown:
            raise InvalidNameError(f"cannot edit {', '.join(sorted(unknown))}")
        with self._write() as session:
            row = self._row_for_update(session, voice_id, expected_version)
            before = row.transcript
            Voice.apply_changes(row, changes)
            if row.transcript != before:
                session.execute(delete(PromptRow).where(PromptRow.voice_id == voice_id, PromptRow.mode == "icl"))
        return self.get(voice_id)

    def add_tags(self, voice_id: str, *tags: str) -> Voice:
        """Add tags atomically (concurrent callers never drop each other's tags)."""
        with self._write() as session:
            row = self._row_for_update(session, voice_id, None)
            current = json.loads(row.tags)
            Voice.apply_changes(row, {"tags": current + [t for t in tags if t not in current]})
        return self.get(voice_id)

    def _row_for_update(self, session: Session, voice_id: str, expected_version: int | None) -> VoiceRow:
        row = session.get(VoiceRow, voice_id)
        if row is None:
            raise VoiceNotFoundError(voice_id)
        if expected_version is not None and row.version != expected_version:
            raise ConflictError(
                f"voice {voice_id!r} was changed meanwhile (version {row.version}, "
                f"you edited version {expected_version}); reload it and try again"
            )
        return row

    def set_default(self, voice_id: str) -> Voice:
        """Make this voice the default (and no other)."""
        with self._write() as session:
            if session.get(VoiceRow, voice_id) is None:
                raise VoiceNotFoundError(voice_id)
            session.execute(update(VoiceRow).where(VoiceRow.is_default.is_(True)).values(is_default=False))
            session.execute(update(VoiceRow).where(VoiceRow.id == voice_id).values(is_default=True))
        return self.get(voice_id)

    def delete_voice(self, voice_id: str) -> None:
        """Delete a voice, its cached prompts and its files; the oldest voice left becomes
        the default if this one was."""
        trash = self.layout.tmp_dir / f"deleted-{voice_id}-{uuid.uuid4().hex}"
        folder = self.layout.voice_dir(voice_id)
        moved = False
        try:
            with self._write() as session:
                row = session.get(VoiceRow, voice_id)
                if row is None:
                    raise VoiceNotFoundError(voice_id)
                was_default = row.is_default
                session.execute(delete(PromptRow).where(PromptRow.voice_id == voice_id))
                session.delete(row)
                session.flush()
                if was_default:
                    heir = session.scalar(select(VoiceRow).order_by(VoiceRow.created_at, VoiceRow.id).limit(1))
                    if heir is not None:
                        heir.is_default = True
                if folder.exists():
                    folder.rename(trash)
                    moved = True
        except BaseException:
            if moved:  # the row is still there: put its files back
                trash.rename(folder)
            raise
        shutil.rmtree(trash, ignore_errors=True)

    # -- cached prompt blobs (used by voices_db.prompts.PromptStore) ----------------------

    def load_prompt_blob(self, cache_key: str) -> bytes | None:
        with self._read() as session:
            return session.scalar(select(PromptRow.blob).where(PromptRow.cache_key == cache_key))

    def save_prompt_blob(self, voice_id: str, mode: str, model_id: str, revision: str, cache_key: str, blob: bytes) -> bool:
        """Store a prompt blob, replacing older prompts of the same voice, mode and model.

        Returns False (and stores nothing) when the voice was deleted meanwhile.
        """
        with self._write() as session:
            if session.get(VoiceRow, voice_id) is None:
                return False
            session.execute(
                delete(PromptRow).where(
                    PromptRow.voice_id == voice_id,
                    PromptRow.mode == mode,
                    PromptRow.model_id == model_id,
                    PromptRow.model_revision == revision,
                )
            )
            session.execute(delete(PromptRow).where(PromptRow.cache_key == cache_key))
            session.add(
                PromptRow(
                    voice_id=voice_id,
                    mode=mode,
                    model_id=model_id,
                    model_revision=revision,
                    cache_key=cache_key,
                    blob=bytes(blob),
                    created_at=migrations.utc_now(),
                )
            )
        return True

    def prompt_keys(self, voice_id: str) -> list[tuple[str, str]]:
        """(mode, cache_key) of every prompt stored for a voice."""
        with self._read() as session:
            rows = session.execute(select(PromptRow.mode, PromptRow.cache_key).where(PromptRow.voice_id == voice_id))
            return [tuple(r) for r in rows]


def _is_voice_folder(path: Path) -> bool:
    """True for a folder holding only what the store writes (never sweep anything else)."""
    if not path.is_dir() or path.is_symlink():
        return False
    return all(p.is_file() and (p.name == "reference.wav" or p.name.startswith("original.")) for p in path.iterdir())


@dataclass(frozen=True)
class VoicePage:
    """A page of ``VoiceStore.list_page``; ``next_cursor`` is None on the last page."""

    items: list[Voice] = field(default_factory=list)
    next_cursor: str | None = None


def _encode_cursor(name_key: str, voice_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([name_key, voice_id]).encode()).decode()


def _decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        key, voice_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return str(key), str(voice_id)
    except (ValueError, TypeError) as exc:
        raise InvalidNameError("invalid page cursor") from exc


def _casefold(text: str | None) -> str:
    return text.casefold() if text else ""
