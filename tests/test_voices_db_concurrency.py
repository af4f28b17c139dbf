"""Concurrent writers (processes and threads) on one library lose nothing and corrupt nothing."""

import multiprocessing
import sqlite3
import threading

import numpy as np

from voices_db import ConflictError, NewVoice, VoiceStore
from voices_db.audio_io import pcm_sha256, write_wav_pcm16

WRITERS = 4
OPS = 25


def _create(store: VoiceStore, name: str) -> str:
    pcm = np.full(2400, 1000, np.int16)
    with store.staging_dir() as stage:
        write_wav_pcm16(stage / "reference.wav", pcm, 24000)
        new = NewVoice(name=name, duration=0.1, sample_rate=24000, audio_sha256=pcm_sha256(pcm))
        return store.create_voice(new, stage).id


def _increment(store: VoiceStore, voice_id: str) -> int:
    """Optimistic read-modify-write of a counter kept in the description; returns retries."""
    retries = 0
    while True:
        voice = store.get(voice_id)
        try:
            store.update_voice(voice_id, expected_version=voice.version, description=str(int(voice.description) + 1))
            return retries
        except ConflictError:
            retries += 1


def writer(data_dir: str, worker: int, store: VoiceStore | None = None) -> list[str]:
    """25 mixed operations: create a voice named "Echo", tag the shared voice, bump its counter."""
    own = store is None
    store = store or VoiceStore(data_dir)
    created = []
    try:
        for i in range(OPS):
            if i % 3 == 0:
                created.append(_create(store, "Echo"))
            elif i % 3 == 1:
                store.add_tags("shared", f"w{worker}-{i}")
            else:
                _increment(store, "shared")
    finally:
        if own:
            store.close()
    return created


def _expected_counts():
    creates = sum(1 for i in range(OPS) if i % 3 == 0)
    tags = sum(1 for i in range(OPS) if i % 3 == 1)
    bumps = sum(1 for i in range(OPS) if i % 3 == 2)
    return creates * WRITERS, tags * WRITERS, bumps * WRITERS


def _check(data_dir, created_ids):
    n_created, n_tags, n_bumps = _expected_counts()
    with VoiceStore(data_dir) as store:
        voices = list(store.iter_all())
        assert len(voices) == 1 + n_created
        echo_ids = sorted(v.id for v in voices if v.name == "Echo")
        assert echo_ids == sorted(created_ids) and len(set(echo_ids)) == n_created
        shared = store.get("shared")
        assert len(shared.tags) == n_tags  # every writer's every tag
        assert int(shared.description) == n_bumps  # no increment lost
        assert sum(1 for v in voices if v.is_default) == 1
        for v in voices:
            assert store.audio_path(v).is_file()
        assert sorted(p.name for p in store.layout.voices_dir.iterdir()) == sorted(v.id for v in voices)
        assert list(store.layout.tmp_dir.iterdir()) == []
    with sqlite3.connect(data_dir / "voices.sqlite3") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _prepare(data_dir):
    with VoiceStore(data_dir) as store:
        _create(store, "shared")
        store.update_voice("shared", description="0")


def test_four_processes_lose_nothing(tmp_path):
    data_dir = tmp_path / "data"
    _prepare(data_dir)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(WRITERS) as pool:
        results = pool.starmap(writer, [(str(data_dir), w) for w in range(WRITERS)])
    _check(data_dir, [i for ids in results for i in ids])


def test_four_threads_on_one_store_lose_nothing(tmp_path):
    data_dir = tmp_path / "data"
    _prepare(data_dir)
    results, errors = [[] for _ in range(WRITERS)], []
    with VoiceStore(data_dir) as store:
        def run(w):
            try:
                results[w] = writer(str(data_dir), w, store)
            except Exception as exc:  # surfaced below: a thread cannot fail the test itself
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(w,)) for w in range(WRITERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    _check(data_dir, [i for ids in results for i in ids])
