"""Voice folders (seed manifest format), library archives and the seed directory at start-up."""

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from audio_fixtures import SENTENCES, padded_clip, short_passage
from ingest.archive import export_library, import_library, sync_from_environment
from ingest.folders import export_voice, import_voice
from ingest.library import add_voice
from voices_db import CorruptLibraryError, DuplicateVoiceError, InvalidNameError, VoiceStore

SEED = Path(__file__).parent / "fixtures" / "voices_db" / "seed-makima"


def files_of(store, voice):
    folder = store.audio_path(voice).parent
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.fixture
def library(tmp_path):
    """Two voices ingested with typed transcripts (no Whisper needed), one edited."""
    with VoiceStore(tmp_path / "data") as store:
        add_voice(store, short_passage().path, "River Voice", transcript=" ".join(SENTENCES[8:11]),
                  tags=["calm", "narrator"], description="three sentences")
        add_voice(store, padded_clip().path, "Letter", transcript=" ".join(SENTENCES[4:6]), language="en")
        store.update_voice("letter", transcript=" ".join(SENTENCES[4:6]) + " ", tags=["edited"])
        store.set_default("letter")
        yield store


def test_voice_folder_round_trip_is_exact(library, tmp_path):
    before = library.get("river-voice")
    before_files = files_of(library, before)
    folder = export_voice(library, "river-voice", tmp_path / "out")
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "original.wav", "reference.wav", "transcript.txt"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["id"] == "river-voice" and manifest["reference_audio"] == "reference.wav"
    assert manifest["sample_rate"] == 24000 and manifest["format"] == "pcm_s16"
    assert (folder / "transcript.txt").read_text().strip() == before.transcript
    library.delete_voice("river-voice")
    result = import_voice(library, folder)
    assert result.action == "created"
    after = library.get("river-voice")
    assert after.to_dict() == before.to_dict()
    assert files_of(library, after) == before_files  # byte for byte
    with pytest.raises(DuplicateVoiceError, match="--replace"):
        import_voice(library, folder)
    assert import_voice(library, folder, replace=True).action == "updated"


def test_library_archive_round_trip_is_exact(library, tmp_path):
    before = {v.id: (v.to_dict(), files_of(library, v)) for v in library.iter_all()}
    archive = export_library(library, tmp_path / "library.zip")
    for voice_id in before:
        library.delete_voice(voice_id)
    assert library.count() == 0
    results = import_library(library, archive)
    assert sorted(r.voice.id for r in results) == sorted(before)
    after = {v.id: (v.to_dict(), files_of(library, v)) for v in library.iter_all()}
    assert after == before  # metadata (default voice included) and bytes
    assert library.default_voice().id == "letter"


def _zip(path: Path, entries: dict) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize("entry", ["../evil.txt", "/etc/evil", "voices/../../evil", "voices\\..\\evil"])
def test_archive_with_unsafe_paths_is_refused(entry, tmp_path):
    index = json.dumps({"format": "qwen3-voice-studio-library", "version": 1, "voices": []})
    archive = _zip(tmp_path / "bad.zip", {"library.json": index, entry: "x"})
    with VoiceStore(tmp_path / "data") as store:
        with pytest.raises(CorruptLibraryError, match="unsafe entry"):
            import_library(store, archive)
        assert store.count() == 0 and list(store.layout.tmp_dir.iterdir()) == []
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "data" / "evil").exists()


def test_not_an_archive_is_refused(tmp_path):
    fake = tmp_path / "fake.zip"
    fake.write_text("hello")
    with VoiceStore(tmp_path / "data") as store, pytest.raises(CorruptLibraryError, match="not a library archive"):
        import_library(store, fake)


def test_hostile_manifests_are_refused(library, tmp_path):
    folder = export_voice(library, "river-voice", tmp_path / "out")
    manifest = json.loads((folder / "manifest.json").read_text())
    for changes, error in [({"id": "../../escape"}, InvalidNameError), ({"id": "CON"}, InvalidNameError),
                           ({"reference_audio": "../../../etc/passwd"}, CorruptLibraryError),
                           ({"original_audio": "/etc/hostname"}, CorruptLibraryError)]:
        (folder / "manifest.json").write_text(json.dumps({**manifest, **changes, "id": changes.get("id", "fresh")}))
        with pytest.raises(error):
            import_voice(library, folder)
    assert library.find("fresh") is None and list(library.layout.tmp_dir.iterdir()) == []
    (folder / "manifest.json").write_text("[1, 2]")
    with pytest.raises(CorruptLibraryError, match="JSON object"):
        import_voice(library, folder)


def _seed_dir(root: Path) -> Path:
    """TTS_VOICES_DIR with the seed's example voice (float WAV, as its manifest says) and a
    ready-made one (24 kHz 16-bit WAV)."""
    makima = root / "makima"
    shutil.copytree(SEED, makima)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(short_passage().path), "-ar", "24000",
                    "-c:a", "pcm_f32le", str(makima / "reference.wav")], check=True)
    (makima / "transcript.txt").write_text(" ".join(SENTENCES[8:11]) + "\n")
    ready = root / "ready"
    ready.mkdir()
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(short_passage().path), "-ar", "24000",
                    "-c:a", "pcm_s16le", str(ready / "reference.wav")], check=True)
    (ready / "manifest.json").write_text(json.dumps({"name": "Ready", "language": "en"}))
    (ready / "transcript.txt").write_text("Typed by hand.")
    broken = root / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text(json.dumps({"name": "Broken", "id": "../escape"}))
    return root


def test_seed_voices_are_imported_once_and_refreshed(tmp_path):
    seeds = _seed_dir(tmp_path / "seeds")
    env = {"TTS_VOICES_DIR": str(seeds), "TTS_DEFAULT_VOICE": "makima"}
    with VoiceStore(tmp_path / "data") as store:
        report = sync_from_environment(store, env)
        assert sorted(report.actions) == [("makima", "created"), ("ready", "created")]
        assert [name for name, _ in report.errors] == ["broken"]  # reported, not fatal
        assert report.default_voice == "makima" and store.default_voice().id == "makima"
        makima = store.get("makima")
        assert makima.transcript == " ".join(SENTENCES[8:11]) and makima.transcript_source == "user"
        # processed: leveled towards -20 dBFS, held lower by the 0.9 peak limit (the float WAV
        # peaks at 0.91; pydub used to misread float WAVs at 0.64 and level them to -20)
        assert makima.sample_rate == 24000 and -22.0 < makima.loudness_dbfs <= -19.9
        ready = store.get("ready")
        assert store.audio_path(ready).read_bytes() == (seeds / "ready" / "reference.wav").read_bytes()
        # a second start changes nothing and duplicates nothing
        again = sync_from_environment(store, env)
        assert sorted(again.actions) == [("makima", "unchanged"), ("ready", "unchanged")]
        assert store.count() == 2 and store.get("makima").version == makima.version
        # an edited seed is refreshed in place, and its cached prompts are dropped
        store.save_prompt_blob("makima", "icl", "m", "r", "stale", b"x")
        (seeds / "makima" / "transcript.txt").write_text(" ".join(SENTENCES[8:10]) + "\n")
        third = sync_from_environment(store, env)
        assert ("makima", "updated") in third.actions and store.prompt_keys("makima") == []
        assert store.get("makima").transcript == " ".join(SENTENCES[8:10])
        assert store.get("makima").created_at == makima.created_at and store.count() == 2
        # the seed's own keys survive an export
        out = json.loads((export_voice(store, "makima", tmp_path / "out") / "manifest.json").read_text())
        assert out["accent"] == "ja" and out["notes"].startswith("Default voice for the Makima system")


def test_an_empty_library_stays_empty(tmp_path):
    with VoiceStore(tmp_path / "data") as store:
        report = sync_from_environment(store, {})
        assert report.actions == [] and report.errors == [] and report.default_voice is None
        missing = sync_from_environment(store, {"TTS_DEFAULT_VOICE": "nobody"})
        assert missing.errors and "names no voice" in missing.errors[0][1]
        assert store.count() == 0


def test_seeds_never_overwrite_a_voice_added_by_hand(tmp_path):
    seeds = _seed_dir(tmp_path / "seeds")
    with VoiceStore(tmp_path / "data") as store:
        mine = add_voice(store, padded_clip().path, "Ready", transcript="Mine.")
        report = sync_from_environment(store, {"TTS_VOICES_DIR": str(seeds)})
        assert ("makima", "created") in report.actions
        assert any(name == "ready" and "added by hand" in msg for name, msg in report.errors)
        assert store.get("ready").to_dict() == mine.to_dict()
