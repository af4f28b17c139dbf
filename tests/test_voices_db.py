"""voices_db: paths and names, schema and migrations, the store's invariants (real SQLite)."""

import json
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, inspect

from voices_db import (
    ConflictError,
    DatabaseTooNewError,
    DuplicateVoiceError,
    InvalidNameError,
    NewVoice,
    VoiceNotFoundError,
    VoiceStore,
    resolve_data_dir,
    slugify,
    validate_voice_id,
)
from voices_db.audio_io import pcm_sha256, read_wav_pcm16, write_wav_pcm16
from voices_db.migrations import LATEST_VERSION, MIGRATIONS
from voices_db.schema import Base

V1_FIXTURE = Path(__file__).parent / "fixtures" / "voices_db" / "v1"


def tone(seconds=0.5, freq=220.0, sr=24000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return np.round(0.3 * np.sin(2 * np.pi * freq * t) * 32767).astype(np.int16)


def add(store: VoiceStore, name: str, freq=220.0, **fields):
    pcm = tone(freq=freq)
    with store.staging_dir() as stage:
        write_wav_pcm16(stage / "reference.wav", pcm, 24000)
        (stage / "original.mp3").write_bytes(b"original upload bytes")
        new = NewVoice(name=name, duration=0.5, sample_rate=24000, audio_sha256=pcm_sha256(pcm),
                       original_name="original.mp3", **fields)
        return store.create_voice(new, stage)


@pytest.fixture
def store(tmp_path):
    with VoiceStore(tmp_path / "data") as s:
        yield s


# -- the data directory and names ------------------------------------------------------------


def test_data_dir_rule(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {"VOICE_DATA_DIR": str(tmp_path / "from-env")}
    assert resolve_data_dir("cli-dir", env) == tmp_path / "cli-dir"  # --data-dir wins
    assert resolve_data_dir(None, env) == tmp_path / "from-env"  # then the environment
    assert resolve_data_dir(None, {}) == tmp_path / "data"  # then ./data
    assert resolve_data_dir("", {"VOICE_DATA_DIR": ""}) == tmp_path / "data"


@pytest.mark.parametrize("name, slug", [
    ("Ada Lovelace!", "ada-lovelace"), ("../../etc/passwd", "etc-passwd"), ("/abs/path", "abs-path"),
    ("C:\\Windows\\system32", "c-windows-system32"), ("CON", "con-voice"), ("lpt1", "lpt1-voice"),
    ("Zoë Åström", "zoe-astrom"), ("日本語", "voice"), ("..", "voice"), ("x" * 200, "x" * 44),
])
def test_slugs_are_safe_folder_names(name, slug):
    assert slugify(name) == slug
    assert validate_voice_id(slug) == slug


@pytest.mark.parametrize("bad", ["", "..", "a/b", "a\\b", "/etc", "Ada", "con", "a\x00b", "-x", "x" * 49, "tmp"])
def test_unsafe_ids_are_refused(bad, store):
    with pytest.raises(InvalidNameError):
        validate_voice_id(bad)
    with pytest.raises(InvalidNameError):
        store.layout.voice_dir(bad)


@pytest.mark.parametrize("bad", ["", "   ", "a\x00b", "two\nlines", "x" * 101])
def test_bad_names_are_refused_and_leave_nothing(bad, store):
    with pytest.raises(InvalidNameError):
        add(store, bad)
    assert store.count() == 0
    assert list(store.layout.voices_dir.iterdir()) == [] and list(store.layout.tmp_dir.iterdir()) == []


def test_hostile_names_stay_inside_the_data_dir(store):
    for name in ["../../escape", "/etc/passwd", "..", "CON", "a\\..\\..\\b", "ada", "Ada", "ADA!"]:
        voice = add(store, name)
        path = store.audio_path(voice).resolve()
        assert store.layout.voices_dir.resolve() in path.parents and path.is_file()
    ids = [v.id for v in store.iter_all()]
    assert len(ids) == len(set(ids)) == 8
    assert {"ada", "ada-2", "ada-3"} <= set(ids)  # duplicate names get distinct ids
    assert sorted(p.name for p in store.layout.root.iterdir()) == [
        "tmp", "voices", "voices.sqlite3", "voices.sqlite3-shm", "voices.sqlite3-wal"]


# -- schema and migrations --------------------------------------------------------------------


def test_schema_from_nothing_matches_the_models(tmp_path):
    with VoiceStore(tmp_path) as store:
        assert store.applied_migrations == [f"{m.version:04d}_{m.name}" for m in MIGRATIONS]
        assert store.schema_version == LATEST_VERSION
        built = inspect(store._engine)
        for table in Base.metadata.sorted_tables:
            columns = {c["name"]: c["nullable"] for c in built.get_columns(table.name)}
            assert columns == {c.name: c.nullable for c in table.columns}, table.name
        indexes = {i["name"] for i in built.get_indexes("voices")}
        assert {"ix_voices_name_key", "ix_voices_one_default"} <= indexes
    with sqlite3.connect(tmp_path / "voices.sqlite3") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")] == [1, 2, 3]
    with VoiceStore(tmp_path) as again:  # reopening applies nothing
        assert again.applied_migrations == []


def test_upgrade_from_v1_keeps_every_voice(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(V1_FIXTURE, data)
    with sqlite3.connect(data / "voices.sqlite3") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        before = conn.execute(
            "SELECT id, name, description, language, transcript, created_at FROM voices ORDER BY id").fetchall()
    with VoiceStore(data) as store:
        assert store.applied_migrations == ["0002_voice_prompts", "0003_library_metadata"]
        voices = {v.id: v for v in store.iter_all()}
        after = sorted((v.id, v.name, v.description, v.language, v.transcript, v.created_at) for v in voices.values())
        assert after == [tuple(r) for r in before]
        ada = voices["ada"]
        pcm, sr = read_wav_pcm16(store.audio_path(ada))
        assert ada.audio_sha256 == pcm_sha256(pcm) and sr == 24000
        rms = np.sqrt(np.mean((pcm / 32768.0) ** 2))
        assert ada.loudness_dbfs == pytest.approx(20 * np.log10(rms), abs=0.01)  # about -17.7 dBFS
        assert ada.is_default and not voices["ada-2"].is_default  # the oldest becomes the default
        assert ada.updated_at == ada.created_at and ada.transcript_source == "unknown"
        lost = voices["lost"]
        assert lost.audio_sha256 is None and [w["code"] for w in lost.warnings] == ["audio_missing"]
        # the upgraded library works like a new one
        assert add(store, "Ada").id == "ada-3"
    assert (data / "voices.v1.bak.sqlite3").is_file()  # the pre-upgrade copy is kept


def test_a_newer_database_is_refused_untouched(tmp_path):
    with VoiceStore(tmp_path) as store:
        add(store, "Keep me")
    with sqlite3.connect(tmp_path / "voices.sqlite3") as conn:
        conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    before = (tmp_path / "voices.sqlite3").read_bytes()
    with pytest.raises(DatabaseTooNewError, match=f"schema version {LATEST_VERSION + 1}.*upgrade the studio"):
        VoiceStore(tmp_path)
    assert (tmp_path / "voices.sqlite3").read_bytes() == before


# -- the store --------------------------------------------------------------------------------


def test_exactly_one_default_when_any_voice_exists(store):
    assert store.default_voice() is None
    a, b, c = add(store, "A"), add(store, "B"), add(store, "C")
    assert a.is_default and not b.is_default and not c.is_default  # the first voice
    store.set_default(c.id)
    assert [v.id for v in store.iter_all() if v.is_default] == [c.id]
    store.delete_voice(c.id)  # the default goes: the oldest left takes over
    assert store.default_voice().id == a.id
    store.delete_voice(a.id)
    store.delete_voice(b.id)
    assert store.default_voice() is None and store.count() == 0


def test_two_defaults_are_impossible_at_the_database_level(store):
    add(store, "A")
    add(store, "B")
    with sqlite3.connect(store.layout.db_path) as conn, pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE voices SET is_default = 1")


def test_delete_removes_row_prompts_and_files(store):
    voice = add(store, "Gone")
    folder = store.audio_path(voice).parent
    assert store.save_prompt_blob(voice.id, "icl", "m", "r", "k1", b"blob")
    assert folder.is_dir() and (folder / "original.mp3").is_file()
    store.delete_voice(voice.id)
    assert not folder.exists() and store.find(voice.id) is None
    assert store.load_prompt_blob("k1") is None
    with sqlite3.connect(store.layout.db_path) as conn:
        assert conn.execute("SELECT count(*) FROM voice_prompts").fetchone()[0] == 0
    assert list(store.layout.tmp_dir.iterdir()) == []
    with pytest.raises(VoiceNotFoundError, match="no voice with id 'gone'"):
        store.delete_voice(voice.id)


def test_a_failed_create_leaves_nothing(store, tmp_path):
    add(store, "Taken", voice_id=None)
    with pytest.raises(DuplicateVoiceError):
        add(store, "Other", voice_id="taken")
    assert [v.id for v in store.iter_all()] == ["taken"]
    assert sorted(p.name for p in store.layout.voices_dir.iterdir()) == ["taken"]
    assert list(store.layout.tmp_dir.iterdir()) == []


def test_edits_bump_the_version_and_refuse_stale_writers(store):
    voice = add(store, "Ada", transcript="old words", tags=["calm"])
    assert voice.version == 1
    edited = store.update_voice(voice.id, expected_version=1, transcript="new words", tags="calm, warm , calm")
    assert edited.version == 2 and edited.transcript == "new words" and edited.tags == ("calm", "warm")
    assert edited.updated_at > voice.updated_at and edited.created_at == voice.created_at
    with pytest.raises(ConflictError, match="changed meanwhile"):
        store.update_voice(voice.id, expected_version=1, name="Lost edit")
    assert store.get(voice.id).name == "Ada"
    with pytest.raises(InvalidNameError):
        store.update_voice(voice.id, audio_file="../../x")  # not an editable field
    with pytest.raises(InvalidNameError):
        store.update_voice(voice.id, language="not a language!")


def test_transcript_edit_drops_icl_prompts_only(store):
    voice = add(store, "Ada", transcript="hello")
    store.save_prompt_blob(voice.id, "icl", "m", "r", "icl-key", b"1")
    store.save_prompt_blob(voice.id, "xvector", "m", "r", "xv-key", b"2")
    store.update_voice(voice.id, description="only metadata")
    assert sorted(store.prompt_keys(voice.id)) == [("icl", "icl-key"), ("xvector", "xv-key")]
    store.update_voice(voice.id, transcript="hello again")
    assert store.prompt_keys(voice.id) == [("xvector", "xv-key")]


def test_pages_cover_everything_once_in_name_order(store):
    names = ["delta", "Alpha", "charlie", "bravo", "alpha", "Echo", "foxtrot"]
    for name in names:
        add(store, name)
    seen, cursor = [], None
    while True:
        page = store.list_page(3, cursor)
        assert len(page.items) <= 3
        seen += [(v.name, v.id) for v in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert [n for n, _ in seen] == sorted(names, key=lambda n: (n.casefold(), slugify(n)))
    assert len({i for _, i in seen}) == len(names)
    # a voice added between pages is neither skipped nor repeated past the cursor
    first = store.list_page(2)
    add(store, "zulu")
    rest = list(_pages_from(store, first.next_cursor))
    assert [v.name for v in first.items] + [v.name for v in rest] == sorted(names + ["zulu"], key=str.casefold)
    with pytest.raises(InvalidNameError):
        store.list_page(3, "not-a-cursor")


def _pages_from(store, cursor):
    while cursor:
        page = store.list_page(2, cursor)
        yield from page.items
        cursor = page.next_cursor


def test_search_filters_in_sql_and_pages(store):
    add(store, "Ångström", transcript="Straße und Fluss")
    add(store, "Bob", description="a deep BASS voice")
    add(store, "Carla", language="it", transcript="ciao a tutti")
    add(store, "Dora", transcript="nothing to see")
    names = lambda page: [v.name for v in page.items]  # noqa: E731
    assert names(store.list_page(10, search="ÅNGSTRÖM")) == ["Ångström"]  # every script folds
    assert names(store.list_page(10, search="STRASSE")) == ["Ångström"]  # casefold: ß == ss
    assert names(store.list_page(10, search="bass")) == ["Bob"]
    assert names(store.list_page(10, search=" it ")) == ["Carla"]  # language; blanks trimmed
    everyone = names(store.list_page(10))  # the store's name order
    assert names(store.list_page(10, search="o")) == everyone
    first = store.list_page(2, search="o")
    assert names(first) == everyone[:2] and first.next_cursor
    rest = store.list_page(2, first.next_cursor, search="o")
    assert names(rest) == everyone[2:] and rest.next_cursor is None
    assert store.list_page(10, search="zzz").items == []
    assert names(store.list_page(10, search="   ")) == names(store.list_page(10))


def test_list_page_uses_the_index(store):
    with store._engine.connect() as conn:
        plan = " ".join(str(r) for r in conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN SELECT * FROM voices WHERE (name_key, id) > ('m', 'm') ORDER BY name_key, id LIMIT 51"))
    assert "ix_voices_name_key" in plan and "TEMP B-TREE" not in plan


def test_stale_leftovers_are_swept(tmp_path):
    with VoiceStore(tmp_path) as store:
        keep = add(store, "Keep")
        orphan = store.layout.voices_dir / "orphan"
        orphan.mkdir()
        (orphan / "reference.wav").write_bytes(b"RIFF")
        foreign = store.layout.voices_dir / "not-ours"
        foreign.mkdir()
        (foreign / "manifest.json").write_text("{}")
        stale_tmp = store.layout.tmp_dir / "stage-dead"
        stale_tmp.mkdir()
        fresh_tmp = store.layout.tmp_dir / "stage-live"
        fresh_tmp.mkdir()
        for path in (orphan, foreign, stale_tmp):
            os.utime(path, (0, 0))
        removed = store.sweep_stale()
        assert sorted(Path(p).name for p in removed) == ["orphan", "stage-dead"]
        assert fresh_tmp.exists() and store.audio_path(keep).exists()
        assert foreign.exists()  # a folder the store did not write is never swept...
        assert add(store, "Not Ours").id == "not-ours-2"  # ...nor reused


def test_voice_json_is_plain(store):
    voice = add(store, "Ada", tags=["a"], warnings=[{"code": "short", "message": "m"}], ingest_report={"x": 1})
    data = json.loads(json.dumps(voice.to_dict()))
    assert data["tags"] == ["a"] and data["warnings"][0]["code"] == "short" and data["ingest_report"] == {"x": 1}


def test_the_database_is_plain_sqlite(tmp_path):
    with VoiceStore(tmp_path):
        pass
    engine = create_engine(f"sqlite:///{tmp_path / 'voices.sqlite3'}")
    assert set(inspect(engine).get_table_names()) == {"voices", "voice_prompts", "schema_migrations"}
    engine.dispose()
