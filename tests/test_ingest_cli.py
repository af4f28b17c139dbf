"""``python -m ingest`` end to end, as a user runs it (real subprocesses, files and Whisper)."""

import json
import os
import subprocess
import sys
import wave
from pathlib import Path

from audio_fixtures import SENTENCES, convert, short_passage, wer

REPO = Path(__file__).resolve().parents[1]


def cli(*args, cwd=None, env_extra=None, check=True):
    env = {k: v for k, v in os.environ.items() if k not in ("VOICE_DATA_DIR", "TTS_VOICES_DIR", "TTS_DEFAULT_VOICE")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(env_extra or {})
    proc = subprocess.run([sys.executable, "-m", "ingest", *map(str, args)], cwd=cwd or REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_add_list_show_export_delete_import(tmp_path):
    data = tmp_path / "lib"
    upload = convert(short_passage().path, ".mp3", "-ac", "2", "-ar", "44100")
    added = json.loads(cli("add", upload, "--name", "River", "--tag", "calm", "--json", "--data-dir", data).stdout)
    assert added["id"] == "river" and added["is_default"] and added["tags"] == ["calm"]
    assert added["transcript_source"] == "whisper:tiny.en" and added["language"] == "en"
    assert wer(" ".join(SENTENCES[8:11]), added["transcript"]) <= 0.25
    with wave.open(str(data / added["audio_file"]), "rb") as f:  # 24 kHz mono 16-bit WAV
        assert (f.getframerate(), f.getnchannels(), f.getsampwidth()) == (24000, 1, 2)
    assert (data / added["original_file"]).read_bytes() == upload.read_bytes()  # original kept
    listed = json.loads(cli("--data-dir", data, "list", "--json").stdout)  # option before the command
    assert [v["id"] for v in listed["voices"]] == ["river"] and listed["next_cursor"] is None
    shown = json.loads(cli("show", "river", "--json", "--data-dir", data).stdout)
    assert shown == added
    reference = (data / added["audio_file"]).read_bytes()

    cli("export", "river", tmp_path / "out", "--data-dir", data)
    cli("delete", "river", "--data-dir", data)
    assert not (data / "voices" / "river").exists()
    assert "the library is empty" in cli("list", "--data-dir", data).stdout
    assert "created\triver" in cli("import", tmp_path / "out" / "river", "--data-dir", data).stdout
    assert json.loads(cli("show", "river", "--json", "--data-dir", data).stdout) == added
    assert (data / added["audio_file"]).read_bytes() == reference

    cli("export-all", tmp_path / "all.zip", "--data-dir", data)
    other = tmp_path / "other"
    assert "created\triver" in cli("import", tmp_path / "all.zip", "--data-dir", other).stdout
    assert json.loads(cli("show", "river", "--json", "--data-dir", other).stdout) == added


def test_data_dir_comes_from_the_environment_then_dot_data(tmp_path):
    cli("list", cwd=tmp_path, env_extra={"VOICE_DATA_DIR": str(tmp_path / "env-lib")})
    assert (tmp_path / "env-lib" / "voices.sqlite3").is_file() and not (tmp_path / "data").exists()
    cli("list", cwd=tmp_path)
    assert (tmp_path / "data" / "voices.sqlite3").is_file()


def test_refusals_are_one_clear_line_and_exit_1(tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_text("not audio at all\n" * 20)
    proc = cli("add", junk, "--name", "Junk", "--data-dir", tmp_path / "lib", check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("error: notes.txt could not be read as audio") and "Traceback" not in proc.stderr
    missing = cli("show", "nobody", "--data-dir", tmp_path / "lib", check=False)
    assert missing.returncode == 1 and missing.stderr.strip() == "error: no voice with id 'nobody'"
    bad_name = cli("add", junk, "--name", "two\nlines", "--data-dir", tmp_path / "lib", check=False)
    assert bad_name.returncode == 1 and "control characters" in bad_name.stderr
    assert os.listdir(tmp_path / "lib" / "voices") == [] and os.listdir(tmp_path / "lib" / "tmp") == []


def test_edit_and_default(tmp_path):
    data = tmp_path / "lib"
    for name in ("One", "Two"):
        cli("add", short_passage().path, "--name", name, "--transcript", "Typed words.", "--data-dir", data)
    cli("set-default", "two", "--data-dir", data)
    edited = json.loads(cli("edit", "one", "--transcript", "New words.", "--tags", "a,b", "--json", "--data-dir", data).stdout)
    assert edited["transcript"] == "New words." and edited["tags"] == ["a", "b"] and edited["version"] == 2
    listed = cli("list", "--data-dir", data).stdout.splitlines()
    assert listed[0].startswith("  one") and listed[1].startswith("* two")
