"""Archives and manifests from hostile hands: zip bombs inside the old caps are refused
while streaming, with bounded memory and disk; a WAV whose header hides data is re-encoded,
not copied; 500 fuzzed manifests are each refused (a 4xx-class error, nothing written) or
imported as a voice that reads, edits and exports."""
import json
import os
import random
import shutil
import zipfile

import pytest

from hostile_inputs import disk_peak_growth_mb, peak_rss_growth_mb, zip_bytes
from test_app_support import CLIP_TEXT, make_clip
from voices_db import LibraryError

MAX_GROWTH_MB = 300
MAX_DISK_MB = 60


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    from voices_db import VoiceStore
    from webapp.model_host import ModelHost
    from webapp.voices import VoiceService

    tmp = tmp_path_factory.mktemp("archives")
    store = VoiceStore(tmp / "data")
    svc = VoiceService(store, ModelHost("unused/not-loaded"))  # never started: no model
    svc.tmp = tmp
    svc.voice = svc.add(make_clip(tmp / "clip.wav"), "Ada", transcript=CLIP_TEXT)
    svc.folder = svc.export_voice_zip(svc.voice.id)
    yield svc
    store.close()


def voice_files(service) -> dict[str, bytes]:
    with zipfile.ZipFile(service.folder) as zf:
        return {name.split("/", 1)[1]: zf.read(name) for name in zf.namelist()}


def assert_nothing_written(service, before: list[str]):
    assert sorted(os.listdir(service.store.layout.voices_dir)) == before
    assert os.listdir(service.store.layout.tmp_dir) == []


def bounded_import(service, archive):
    before = sorted(os.listdir(service.store.layout.voices_dir))

    def attempt():
        with pytest.raises(LibraryError) as info:
            service.import_zip(archive)
        return info.value

    growth, (disk, error) = peak_rss_growth_mb(os.getpid(), lambda: disk_peak_growth_mb(service.tmp, attempt))
    assert growth < MAX_GROWTH_MB and disk < MAX_DISK_MB, (growth, disk)
    assert_nothing_written(service, before)
    return error


def test_a_library_zip_bomb_is_refused_before_it_unpacks(service, tmp_path):
    files = voice_files(service)
    index = {"format": "qwen3-voice-studio-library", "version": 1, "default_voice": "bomb", "voices": ["bomb"]}
    manifest = {**json.loads(files["manifest.json"]), "id": "bomb"}
    bomb = tmp_path / "library.zip"
    bomb.write_bytes(zip_bytes([("library.json", json.dumps(index).encode()),
                                ("voices/bomb/manifest.json", json.dumps(manifest).encode()),
                                ("voices/bomb/transcript.txt", files["transcript.txt"]),
                                ("voices/bomb/reference.wav", (2**30, 0))]))
    assert bomb.stat().st_size < 2 * 2**20
    error = bounded_import(service, bomb)
    assert "reference.wav unpacks to 1024.0 MB" in str(error)


def test_a_voice_zip_with_a_huge_transcript_is_refused(service, tmp_path):
    files = voice_files(service)
    bomb = tmp_path / "voice.zip"
    bomb.write_bytes(zip_bytes([("v/manifest.json", files["manifest.json"]), ("v/reference.wav", files["reference.wav"]),
                                ("v/transcript.txt", (512 * 2**20, ord("a")))]))
    error = bounded_import(service, bomb)
    assert "transcript.txt unpacks to 512.0 MB" in str(error)


def test_a_member_that_lies_about_its_size_is_a_clear_error(service, tmp_path):
    files = voice_files(service)
    liar = tmp_path / "liar.zip"
    liar.write_bytes(zip_bytes([("v/manifest.json", files["manifest.json"]), ("v/transcript.txt", files["transcript.txt"]),
                                ("v/reference.wav", (100 * 2**20, 0))], lie={"v/reference.wav": 10_000}))
    error = bounded_import(service, liar)
    assert "reference.wav is damaged" in str(error)


def test_a_wav_hiding_data_behind_its_header_is_re_encoded(service, tmp_path):
    files = voice_files(service)
    folder = tmp_path / "hidden" / "hidden"
    folder.mkdir(parents=True)
    manifest = {**json.loads(files["manifest.json"]), "id": "hidden", "name": "Hidden", "original_audio": None}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "transcript.txt").write_bytes(files["transcript.txt"])
    (folder / "reference.wav").write_bytes(files["reference.wav"] + os.urandom(20 * 2**20))
    archive = shutil.make_archive(str(tmp_path / "hidden-voice"), "zip", tmp_path / "hidden")
    [voice_id] = service.import_zip(archive)
    stored = service.store.audio_path(service.get(voice_id))
    assert stored.stat().st_size < 2 * 2**20  # rewritten from the decoded samples, not copied
    service.delete(voice_id)


HOSTILE = ["abc", "", 5, -1, 0, 2**31, 10**40, 1e308, -1e308, True, None, [], {}, [1, "x"], {"a": 1},
           "\ud800", "x\x00y", "x" * 20000, "../../etc/passwd", "/etc/hostname", "reference.wav",
           [{"code": 1}], [{"code": "c", "message": "m", "extra": 1}], [[[[[]]]]], float("nan"), float("inf")]
KEYS = ["name", "id", "description", "language", "sample_rate", "reference_audio", "transcript_file",
        "original_audio", "transcript", "tags", "transcript_source", "duration", "loudness_dbfs", "audio_sha256",
        "warnings", "ingest_report", "created_at", "updated_at", "version", "studio_manifest_version", "accent"]


def test_500_fuzzed_manifests_are_refused_cleanly_or_make_sound_voices(service, tmp_path):
    from webapp.api_voices import library_error
    from webapp.voices import voice_detail

    files = voice_files(service)
    base = {**json.loads(files["manifest.json"]), "id": "fuzzed", "name": "Fuzzed", "original_audio": None}
    rng = random.Random(10)
    outcomes = {"refused": 0, "imported": 0}
    for i in range(500):
        manifest = dict(base)
        for key in rng.sample(KEYS, rng.randint(1, 3)):
            manifest[key] = rng.choice(HOSTILE)
        archive = tmp_path / f"fuzz-{i}.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("fuzzed/manifest.json", json.dumps(manifest))
            zf.writestr("fuzzed/reference.wav", files["reference.wav"])
            zf.writestr("fuzzed/transcript.txt", files["transcript.txt"])
        before = sorted(os.listdir(service.store.layout.voices_dir))
        try:
            [voice_id] = service.import_zip(archive, replace=True)
        except LibraryError as e:
            assert library_error(e).status < 500, (manifest, e)
            assert_nothing_written(service, before)
            outcomes["refused"] += 1
        else:  # what was accepted must read, edit and export like any voice
            json.dumps(voice_detail(service.get(voice_id)))
            service.update(voice_id, description="edited")
            service.export_voice_zip(voice_id)
            service.export_library_zip()
            if voice_id != service.voice.id:
                service.delete(voice_id)
            outcomes["imported"] += 1
        archive.unlink()
    assert outcomes["refused"] > 100 and outcomes["imported"] > 20, outcomes
    assert service.get(service.voice.id).name == "Ada"


def test_the_poisoned_manifest_of_the_report_is_refused(service, tmp_path):
    files = voice_files(service)
    archive = tmp_path / "poison.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("p/manifest.json", json.dumps({**json.loads(files["manifest.json"]), "id": "p", "warnings": "abc"}))
        zf.writestr("p/reference.wav", files["reference.wav"])
        zf.writestr("p/transcript.txt", files["transcript.txt"])
    with pytest.raises(LibraryError, match="warnings"):
        service.import_zip(archive)
    assert service.find("p") is None


def test_library_import_is_all_or_nothing(service, tmp_path):
    files = voice_files(service)
    index = {"format": "qwen3-voice-studio-library", "version": 1, "default_voice": None, "voices": ["good", "bad"]}
    good = {**json.loads(files["manifest.json"]), "id": "good", "name": "Good", "original_audio": None}
    bad = {**good, "id": "bad", "name": "Bad", "reference_audio": "reference.wav"}
    archive = tmp_path / "half.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("library.json", json.dumps(index))
        for voice, wav in (("good", files["reference.wav"]), ("bad", b"RIFF-not-audio" * 100)):
            zf.writestr(f"voices/{voice}/manifest.json", json.dumps(good if voice == "good" else bad))
            zf.writestr(f"voices/{voice}/reference.wav", wav)
            zf.writestr(f"voices/{voice}/transcript.txt", files["transcript.txt"])
    before = sorted(os.listdir(service.store.layout.voices_dir))
    with pytest.raises(LibraryError):
        service.import_zip(archive)
    assert service.find("good") is None
    assert_nothing_written(service, before)
