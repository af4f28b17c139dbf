"""Voices that survive a Space restart: the live library on local disk, snapshots on a mount.

A Space's own disk is wiped when the Space restarts. Only a mounted storage bucket keeps
files (at `/data` by convention). Such a mount has no file locking and uploads a file when
it is closed, so SQLite must never run on it. So:

- the live library (`voices_db` layout: `voices.sqlite3` + `voices/<id>/...`) stays on
  local disk;
- after each change, `snapshot` writes a consistent copy of the database to the mount. It
  uses the SQLite backup API, so the copy is a plain single file even in WAL mode. The same
  call copies new or changed audio files and removes the files of deleted voices;
- at startup, `restore` copies the last snapshot back to local disk when the local library
  is missing, as it is after every restart.

Mount layout: `MOUNT/voice-studio/{voices.sqlite3, voices/<id>/..., snapshot.json}`.
`snapshot.json` lists the files with their sizes and sha256 hashes, so an unchanged file is
never uploaded again. A file is written as `NAME.partial` and then renamed into place, or
written directly where the mount cannot rename, so a reader never sees half a database.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from voices_db.paths import DB_FILENAME

log = logging.getLogger(__name__)

SUBDIR = "voice-studio"
MANIFEST = "snapshot.json"
AUDIO_DIR = "voices"  # voices_db.paths.DataLayout.voices_dir, relative to the data directory
# Methods of voices_db.VoiceStore that change the library: `watch` snapshots after each one.
MUTATING_METHODS = ("create_voice", "replace_voice", "update_voice", "add_tags", "set_default",
                    "delete_voice", "save_prompt_blob")


@dataclass
class SnapshotReport:
    """What one snapshot wrote (paths relative to the snapshot folder)."""

    copied: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class RestoreReport:
    """What `restore` did: "restored", "kept" (a local library exists) or "empty" (no snapshot)."""

    action: str
    files: int = 0


def snapshot_dir(mount: str | os.PathLike) -> Path:
    """Where the snapshot lives inside a mount."""
    return Path(mount) / SUBDIR


# ---------------------------------------------------------------------------------------
# snapshot


def snapshot(data_dir: str | os.PathLike, mount: str | os.PathLike) -> SnapshotReport:
    """Write a consistent copy of the library in `data_dir` to `mount` (see the module docstring).

    The database copy is taken first, at one point in time. Then the audio files are copied,
    and the database goes into place last, so the database on the mount never names a file
    the mount lacks. The only exception is a voice deleted while the snapshot runs, and the
    snapshot that this deletion triggers fixes it.
    """
    started = time.perf_counter()
    data_dir, target = Path(data_dir), snapshot_dir(mount)
    report = SnapshotReport()
    db = data_dir / DB_FILENAME
    if not db.is_file():
        return report
    target.mkdir(parents=True, exist_ok=True)
    old = _read_manifest(target)
    with tempfile.TemporaryDirectory(prefix="voice-snapshot-") as tmp:
        db_copy = Path(tmp) / DB_FILENAME
        _backup_sqlite(db, db_copy)
        files = _local_files(data_dir)
        for rel, (size, digest) in sorted(files.items()):
            if old.get(rel) != {"size": size, "sha256": digest} or not (target / rel).is_file():
                _publish(data_dir / rel, target / rel)
                report.copied.append(rel)
        _publish(db_copy, target / DB_FILENAME)
        report.copied.append(DB_FILENAME)
    for rel in sorted(set(old) - set(files)):
        _remove(target, rel)
        report.removed.append(rel)
    manifest = {"version": 1, "created": time.time(), "database": DB_FILENAME,
                "files": {rel: {"size": s, "sha256": d} for rel, (s, d) in sorted(files.items())}}
    _write_bytes(target / MANIFEST, json.dumps(manifest, indent=1).encode())
    report.seconds = time.perf_counter() - started
    return report


def _backup_sqlite(source: Path, dest: Path) -> None:
    """A point-in-time copy of a live (WAL) database via the SQLite backup API."""
    src = sqlite3.connect(source, timeout=30)
    try:
        out = sqlite3.connect(dest)
        try:
            src.backup(out)
            out.execute("PRAGMA journal_mode = DELETE")  # one self-contained file, no -wal
        finally:
            out.close()
    finally:
        src.close()


_hash_cache: dict[tuple[str, int, int], str] = {}


def _local_files(data_dir: Path) -> dict[str, tuple[int, str]]:
    """Audio files of the library: relative path -> (size, sha256). Hashes are cached by
    (path, size, mtime), so unchanged files are not read again."""
    out = {}
    root = data_dir / AUDIO_DIR
    if not root.is_dir():
        return out
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name.endswith(".partial"):
            continue
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in _hash_cache:
            _hash_cache[key] = _sha256(path)
        out[path.relative_to(data_dir).as_posix()] = (stat.st_size, _hash_cache[key])
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_manifest(target: Path) -> dict[str, dict]:
    try:
        return dict(json.loads((target / MANIFEST).read_text())["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _publish(source: Path, dest: Path) -> None:
    """Copy a file onto the mount: NAME.partial then rename, or in place if renaming fails."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    shutil.copyfile(source, partial)
    try:
        os.replace(partial, dest)
    except OSError:  # some bucket mounts cannot rename: write in place instead
        shutil.copyfile(source, dest)
        partial.unlink(missing_ok=True)


def _write_bytes(dest: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(delete=False) as f:
        f.write(data)
    try:
        _publish(Path(f.name), dest)
    finally:
        os.unlink(f.name)


def _remove(target: Path, rel: str) -> None:
    path = target / rel
    path.unlink(missing_ok=True)
    parent = path.parent
    while parent != target and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()  # drop the emptied voice folder
        parent = parent.parent


# ---------------------------------------------------------------------------------------
# restore


def restore(mount: str | os.PathLike, data_dir: str | os.PathLike) -> RestoreReport:
    """Copy the snapshot in `mount` to `data_dir` if `data_dir` holds no library yet.

    A local library is never overwritten: it is the live one and at least as new as the
    snapshot. The database is copied last and checked before it goes into place.
    """
    source, data_dir = snapshot_dir(mount), Path(data_dir)
    if (data_dir / DB_FILENAME).exists():
        return RestoreReport("kept")
    if not (source / DB_FILENAME).is_file():
        return RestoreReport("empty")
    files = 0
    audio = source / AUDIO_DIR
    for path in sorted(audio.rglob("*")) if audio.is_dir() else []:
        if path.is_file() and not path.name.endswith(".partial"):
            dest = data_dir / path.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
            files += 1
    partial = data_dir / (DB_FILENAME + ".partial")
    shutil.copyfile(source / DB_FILENAME, partial)
    _check_database(partial)
    os.replace(partial, data_dir / DB_FILENAME)
    return RestoreReport("restored", files)


def _check_database(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        result = conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()
    if result != "ok":
        path.unlink(missing_ok=True)
        raise sqlite3.DatabaseError(f"the voice library snapshot is damaged ({result}); it was not restored")


# ---------------------------------------------------------------------------------------
# the app's handle


class Persistence:
    """The live library in `data_dir`, kept on `mount` (None: no persistent storage).

    restore() at startup, before the library is opened; changed() after each change (or
    `watch(store)` once, which calls it after every write to the store); flush() at exit.
    Snapshots run on one background thread, and changes that arrive during a snapshot are
    coalesced into the next one. A failed snapshot is logged and retried at the next change.
    """

    def __init__(self, data_dir: str | os.PathLike, mount: str | os.PathLike | None):
        self.data_dir = Path(data_dir)
        self.mount = Path(mount) if mount is not None else None
        self.last_error: BaseException | None = None
        self.snapshots = 0
        self._cond = threading.Condition()
        self._pending = False
        self._running = False
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return self.mount is not None

    @property
    def notice(self) -> str | None:
        """A message for the UI when voices will not survive a restart, else None."""
        if self.enabled:
            return None
        return ("This Space has no persistent storage, so voices added here will not survive a "
                "restart. To keep them, mount a storage bucket at /data (or set VOICE_PERSIST_DIR "
                "to where one is mounted) and restart the Space.")

    def restore(self) -> RestoreReport:
        if not self.enabled:
            return RestoreReport("empty")
        report = restore(self.mount, self.data_dir)
        log.info("voice library snapshot on %s: %s (%d files)", self.mount, report.action, report.files)
        return report

    def changed(self) -> None:
        """The library changed: schedule a snapshot (returns at once)."""
        if not self.enabled:
            return
        with self._cond:
            self._pending = True
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="voice-snapshots", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def flush(self, timeout: float | None = 60.0) -> bool:
        """Wait until no snapshot is pending or running; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._running, timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._pending:
                    self._running = False
                    self._cond.notify_all()
                    return
                self._pending, self._running = False, True
            try:
                report = snapshot(self.data_dir, self.mount)
                self.snapshots += 1
                self.last_error = None
                log.info("voice library snapshot: %d file(s) copied, %d removed in %.2f s",
                         len(report.copied), len(report.removed), report.seconds)
            except Exception as e:  # noqa: BLE001 - a failed snapshot must not break the app
                self.last_error = e
                log.exception("voice library snapshot to %s failed", self.mount)

    def watch(self, store):
        """Make `store` (a voices_db.VoiceStore) call `changed()` after every successful write.

        Only the instance is wrapped, not the class, so the method list is explicit
        (MUTATING_METHODS) and reads through the store stay untouched. Returns `store`.
        """
        if not self.enabled:
            return store
        for name in MUTATING_METHODS:
            method = getattr(store, name, None)
            if method is not None:
                setattr(store, name, self._after(method))
        return store

    def _after(self, method):
        def wrapper(*args, **kwargs):
            result = method(*args, **kwargs)
            self.changed()
            return result

        wrapper.__name__ = wrapper.__qualname__ = method.__name__
        wrapper.__doc__ = method.__doc__
        return wrapper
