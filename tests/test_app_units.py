"""App parts without a server: the entry point stays light, the CLI reads the environment,
and the voice service's search, fallback rules and archives (real store, real ingest)."""
import subprocess
import sys
import zipfile

import pytest

from test_app_support import CLIP_TEXT, ROOT, make_clip


def test_import_is_light_and_help_works():
    code = ("import sys, app; heavy = [m for m in ('torch', 'gradio', 'engine.model', 'fastapi') if m in sys.modules];"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    helped = subprocess.run([sys.executable, "app.py", "--help"], cwd=ROOT, capture_output=True, text=True, check=True)
    for flag in ("--host", "--port", "--model", "--device", "--dtype", "--data-dir", "--whisper-model", "--share"):
        assert flag in helped.stdout


def test_parser_reads_the_environment(monkeypatch):
    import app

    monkeypatch.setenv("API_TOKEN", "s3cret")
    monkeypatch.setenv("PORT", "9123")
    monkeypatch.setenv("TTS_THREADS", "3")
    args = app.build_parser().parse_args([])
    assert (args.api_token, args.port, args.threads, args.share) == ("s3cret", 9123, 3, False)
    assert app.build_parser().parse_args(["--port", "1", "--share"]).port == 1


@pytest.fixture
def service(tmp_path):
    from voices_db import VoiceStore
    from webapp.model_host import ModelHost
    from webapp.voices import VoiceService

    store = VoiceStore(tmp_path / "data")
    svc = VoiceService(store, ModelHost("unused/not-loaded"))  # never started: no model
    svc.clip = make_clip(tmp_path / "clip.wav")
    yield svc
    store.close()


def test_search_pages_and_fallbacks(service):
    assert service.resolve("anyone").kind == "none"  # empty library: the model's own voice
    ada = service.add(service.clip, "Ada", transcript=CLIP_TEXT)
    bob = service.add(service.clip, "Bob", transcript="Completely different words here.")
    assert ada.is_default and not bob.is_default
    items, cursor = service.search("", limit=1)
    assert [v.id for v in items] == ["ada"] and cursor
    assert [v.id for v in service.search("", limit=1, cursor=cursor)[0]] == ["bob"]
    assert [v.id for v in service.search("SISTER")[0]] == ["ada"]  # matched in the transcript
    assert service.search("nothing like this")[0] == []

    fallback = service.resolve("ghost")
    assert fallback.id == "ada" and "ghost" in fallback.note and "default" in fallback.note
    assert service.resolve(None).note is None and service.resolve("bob").id == "bob"
    assert service.resolve("bob").mode_for("auto") == ("icl", None)
    service.update("bob", transcript="")
    mode, note = service.resolve("bob").mode_for("icl")
    assert mode == "xvector" and "no transcript" in note
    assert [label for label, _ in service.choices()] == ["Ada (default)", "Bob"]


def test_voice_and_library_archives_round_trip(service, tmp_path):
    from voices_db import VoiceStore
    from webapp.voices import VoiceService

    ada = service.add(service.clip, "Ada", transcript=CLIP_TEXT)
    service.add(service.clip, "Bob", transcript="Other words.")
    one = service.export_voice_zip("ada")
    with zipfile.ZipFile(one) as zf:
        assert {"ada/manifest.json", "ada/reference.wav", "ada/transcript.txt"} <= set(zf.namelist())
    service.delete("ada")
    assert service.import_zip(one) == ["ada"]
    back = service.get("ada")
    assert (back.transcript, back.audio_sha256) == (ada.transcript, ada.audio_sha256)

    library = service.export_library_zip()
    other = VoiceService(VoiceStore(tmp_path / "other"), service.host)
    assert sorted(other.import_zip(library)) == ["ada", "bob"]
    assert other.default().id == service.default().id
    other.store.close()


def test_hostile_or_wrong_archives_are_refused(service, tmp_path):
    from webapp.voices import VoiceActionError

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../escape/manifest.json", "{}")
    with pytest.raises(VoiceActionError, match="unsafe entry"):
        service.import_zip(evil)
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("readme.txt", "hi")
    with pytest.raises(VoiceActionError, match="manifest.json"):
        service.import_zip(empty)
    not_zip = tmp_path / "clip.zip"
    not_zip.write_bytes(b"RIFF....WAVE")
    with pytest.raises(VoiceActionError, match="not a zip"):
        service.import_zip(not_zip)
    with pytest.raises(VoiceActionError, match="empty"):
        service.export_library_zip()
    assert not (tmp_path.parent / "escape").exists()
