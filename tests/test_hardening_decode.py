"""Decoding is bounded for every way a clip comes in: a FLAC that hides its length (an hour
of audio that ffprobe cannot date) is refused after at most the duration limit's worth of
samples, with bounded memory, through decode_file, the CLI and a voice folder import.
(The REST and Gradio routes are checked against the running app in test_hardening_app.)"""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from hostile_inputs import child_peak_rss_mb, zeroed_flac
from ingest import decode
from ingest.decode import decode_file
from ingest.errors import NotAudioError, TooLongError
from test_app_support import ROOT

MAX_GROWTH_MB = 300


def test_unknown_duration_is_unknown_not_zero():
    assert decode.probe(zeroed_flac()).duration is None


def test_a_hidden_hour_is_refused_while_decoding():
    with pytest.raises(TooLongError, match="lasts more than 10.0 min"):
        decode_file(zeroed_flac())


def test_a_hidden_length_within_the_limit_decodes(tmp_path):
    short = tmp_path / "short.flac"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=f=300:r=44100", "-t", "3", "-ac", "2",
                    str(short)], check=True)
    data = bytearray(short.read_bytes())
    data[21] &= 0xF0
    data[22:26] = b"\0\0\0\0"
    short.write_bytes(bytes(data))
    decoded = decode_file(short)
    assert decoded.source_sample_rate == 44100 and decoded.source_channels == 2
    assert abs(decoded.duration - 3.0) < 0.01 and np.abs(decoded.wav).max() > 0.05


def test_a_playlist_cannot_make_ffmpeg_read_other_files(tmp_path):
    secret = tmp_path / "secret.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=f=300:r=24000", "-t", "5", str(secret)],
                   check=True)
    playlist = tmp_path / "clip.m3u8"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:5\n#EXTINF:5,\n{secret}\n#EXT-X-ENDLIST\n")
    with pytest.raises(NotAudioError):
        decode_file(playlist)


def _run(args, data_dir):
    cmd = [sys.executable, "-m", "ingest", "--data-dir", str(data_dir), *args]
    return child_peak_rss_mb(cmd, cwd=ROOT)


def test_cli_add_refuses_it_with_bounded_memory(tmp_path):
    empty = tmp_path / "empty.flac"
    empty.write_bytes(b"")
    baseline, code, out = _run(["add", str(empty), "--name", "Empty", "--transcript", "x"], tmp_path / "d0")
    assert code != 0 and "is empty" in out
    peak, code, out = _run(["add", str(zeroed_flac()), "--name", "Hour", "--transcript", "x"], tmp_path / "d1")
    assert code != 0 and "lasts more than 10.0 min" in out, out
    assert peak - baseline < MAX_GROWTH_MB, (peak, baseline)


def test_folder_import_refuses_it_with_bounded_memory(tmp_path):
    folder = tmp_path / "hour"
    folder.mkdir()
    shutil.copyfile(zeroed_flac(), folder / "reference.flac")
    (folder / "manifest.json").write_text(json.dumps({"name": "Hour", "reference_audio": "reference.flac"}))
    (folder / "transcript.txt").write_text("nothing at all\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "manifest.json").write_text(json.dumps({"name": "Empty", "reference_audio": "reference.flac"}))
    (empty / "reference.flac").write_bytes(b"")
    baseline, code, out = _run(["import", str(empty)], tmp_path / "d0")
    assert code != 0 and "is empty" in out, out
    peak, code, out = _run(["import", str(folder)], tmp_path / "d1")
    assert code != 0 and "lasts more than 10.0 min" in out, out
    assert peak - baseline < MAX_GROWTH_MB, (peak, baseline)
