"""Persistent voices on a Space: the live library on local disk, snapshots on the mount.

Real VoiceStore libraries (SQLite in WAL mode, real files) are snapshot to a folder that
stands in for the mounted bucket, restored into an empty data directory, and reopened.
"""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from space_runtime import persistence
from space_runtime.persistence import Persistence, restore, snapshot, snapshot_dir
from space_runtime.runtime import SpaceRuntime, SpaceSettings
from voices_db import DuplicateVoiceError, NewVoice, VoiceStore
from voices_db.audio_io import pcm_sha256, read_wav_pcm16, write_wav_pcm16


def add(store: VoiceStore, name: str, freq: float = 220.0):
    t = np.arange(12000) / 24000
    pcm = np.round(0.3 * np.sin(2 * np.pi * freq * t) * 32767).astype(np.int16)
    with store.staging_dir() as stage:
        write_wav_pcm16(stage / "reference.wav", pcm, 24000)
        (stage / "original.mp3").write_bytes(f"upload of {name}".encode())
        new = NewVoice(name=name, duration=0.5, sample_rate=24000, audio_sha256=pcm_sha256(pcm),
                       original_name="original.mp3", transcript=f"I am {name}.")
        return store.create_voice(new, stage)


def files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def library(tmp_path):
    with VoiceStore(tmp_path / "live") as store:
        yield store


def test_snapshot_then_restore_gives_back_the_library(library, tmp_path):
    ada, bob = add(library, "Ada"), add(library, "Bob", 330.0)
    library.set_default(bob.id)
    library.save_prompt_blob(ada.id, "icl", "m", "r", "key-1", b"prompt bytes")
    live = library.layout.root
    # the writes are still in the WAL: the backup API must include them
    assert (live / "voices.sqlite3-wal").stat().st_size > 0
    mount = tmp_path / "bucket"
    mount.mkdir()

    report = snapshot(live, mount)

    target = snapshot_dir(mount)
    assert "voices.sqlite3" in report.copied
    assert not list(target.glob("*-wal")) and not list(target.glob("*-shm")) and not list(target.rglob("*.partial"))
    with sqlite3.connect(target / "voices.sqlite3") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one self-contained file

    fresh = tmp_path / "after-restart"
    assert restore(mount, fresh).action == "restored"
    with VoiceStore(fresh) as again:
        assert [v.id for v in again.iter_all()] == [ada.id, bob.id]
        assert again.default_voice().id == bob.id
        assert again.get(ada.id).transcript == "I am Ada."
        assert again.load_prompt_blob("key-1") == b"prompt bytes"
        pcm, sr = read_wav_pcm16(again.audio_path(again.get(bob.id)))
        assert sr == 24000 and pcm_sha256(pcm) == bob.audio_sha256
    assert {k: v for k, v in files_under(fresh / "voices").items()} == files_under(live / "voices")


def test_snapshots_copy_only_changes_and_drop_deleted_voices(library, tmp_path):
    ada, bob = add(library, "Ada"), add(library, "Bob", 330.0)
    live, mount = library.layout.root, tmp_path / "bucket"
    first = snapshot(live, mount)
    assert len(first.copied) == 5  # 2 voices x (reference.wav, original.mp3) + the database

    assert snapshot(live, mount).copied == ["voices.sqlite3"]  # nothing else changed

    library.delete_voice(ada.id)
    third = snapshot(live, mount)
    assert sorted(third.removed) == [f"voices/{ada.id}/original.mp3", f"voices/{ada.id}/reference.wav"]
    assert not (snapshot_dir(mount) / "voices" / ada.id).exists()  # the emptied folder goes too

    fresh = tmp_path / "after-restart"
    restore(mount, fresh)
    with VoiceStore(fresh) as again:
        assert [v.id for v in again.iter_all()] == [bob.id]


def test_restore_never_overwrites_a_local_library(library, tmp_path):
    add(library, "Ada")
    mount = tmp_path / "bucket"
    assert restore(mount, tmp_path / "empty").action == "empty"  # no snapshot yet
    snapshot(library.layout.root, mount)
    assert restore(mount, library.layout.root).action == "kept"


def test_a_damaged_snapshot_is_refused(library, tmp_path):
    add(library, "Ada")
    mount = tmp_path / "bucket"
    snapshot(library.layout.root, mount)
    db = snapshot_dir(mount) / "voices.sqlite3"
    data = bytearray(db.read_bytes())
    data[4096:8192] = b"\xff" * 4096  # garble a page of the tables
    db.write_bytes(bytes(data))
    with pytest.raises(sqlite3.DatabaseError):
        restore(mount, tmp_path / "fresh")
    assert not (tmp_path / "fresh" / "voices.sqlite3").exists()


def test_a_mount_that_cannot_rename_gets_files_written_in_place(library, tmp_path, monkeypatch):
    """Some bucket mounts have no rename. That limitation is the one thing simulated here."""
    add(library, "Ada")

    def no_rename(src, dst):
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(persistence.os, "replace", no_rename)
    snapshot(library.layout.root, tmp_path / "bucket")
    target = snapshot_dir(tmp_path / "bucket")
    assert not list(target.rglob("*.partial"))
    monkeypatch.undo()
    restore(tmp_path / "bucket", tmp_path / "fresh")
    with VoiceStore(tmp_path / "fresh") as again:
        assert again.count() == 1


def test_watch_snapshots_after_each_successful_change(library, tmp_path):
    mount = tmp_path / "bucket"
    keeper = Persistence(library.layout.root, mount)
    store = keeper.watch(library)
    ada = add(store, "Ada")
    assert keeper.flush(30)
    assert keeper.snapshots >= 1 and keeper.last_error is None
    assert (snapshot_dir(mount) / "voices" / ada.id / "reference.wav").is_file()

    before = keeper.snapshots
    store.find(ada.id), store.list_page()  # reads never snapshot
    with pytest.raises(DuplicateVoiceError):
        with store.staging_dir() as stage:  # a refused write does not either
            write_wav_pcm16(stage / "reference.wav", np.zeros(2400, np.int16), 24000)
            new = NewVoice(name="Ada", duration=0.1, sample_rate=24000, audio_sha256="0" * 64, voice_id=ada.id)
            store.create_voice(new, stage)
    assert keeper.flush(30) and keeper.snapshots == before

    store.update_voice(ada.id, transcript="New words.")
    assert keeper.flush(30) and keeper.snapshots == before + 1
    restore(mount, tmp_path / "fresh")
    with VoiceStore(tmp_path / "fresh") as again:
        assert again.get(ada.id).transcript == "New words."


def test_without_a_mount_nothing_is_written_and_the_notice_says_so(library, tmp_path):
    keeper = Persistence(library.layout.root, None)
    assert keeper.watch(library) is library and keeper.restore().action == "empty"
    keeper.changed()
    assert keeper.flush(1) and keeper.snapshots == 0
    assert "will not survive a restart" in keeper.notice
    assert Persistence(library.layout.root, tmp_path).notice is None


def test_settings_keep_sqlite_off_the_mount(tmp_path, monkeypatch):
    mount = tmp_path / "data"
    mount.mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    env = {"VOICE_PERSIST_DIR": str(mount), "VOICE_DATA_DIR": str(mount / "voices"), "GRADIO_SERVER_PORT": "7861"}
    settings = SpaceSettings.from_env(env)
    assert settings.mount == mount.resolve()
    assert settings.data_dir == tmp_path / "home" / "voice-data" and settings.problems
    assert (settings.host, settings.port) == ("0.0.0.0", 7861)

    assert SpaceSettings.from_env({"VOICE_PERSIST_DIR": "off"}).mount is None
    missing = SpaceSettings.from_env({"VOICE_PERSIST_DIR": str(tmp_path / "nope")})
    assert missing.mount is None and "not a writable folder" in missing.problems[0]


def test_prepare_restores_the_snapshot_where_the_app_will_look(library, tmp_path, monkeypatch):
    ada = add(library, "Ada")
    mount = tmp_path / "bucket"
    snapshot(library.layout.root, mount)
    monkeypatch.setenv("VOICE_DATA_DIR", "unused")
    space = SpaceRuntime(SpaceSettings(data_dir=tmp_path / "local", mount=mount, host="0.0.0.0", port=7860))
    space.prepare()
    assert os.environ["VOICE_DATA_DIR"] == str(tmp_path / "local")
    with VoiceStore(tmp_path / "local") as again:
        assert again.get(ada.id).name == "Ada"
    assert space.notice is None
