"""The built Space runs: a clean virtual environment made from its requirements.txt (plus the
Gradio of its sdk_version, as the Space installs it), the app started from the built
folder through space_app.py on the tiny checkpoint, answering /healthz. Its voice library
is restored from a snapshot on the stand-in storage mount.

Expensive (venv + install), so done once per session: pip reuses its cache, skips
byte-compiling, and installs into a venv made without pip of its own.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from space_runtime.persistence import snapshot  # noqa: E402
from spaces import metadata  # noqa: E402
from spaces.build import BuildOptions, build  # noqa: E402
from voices_db import NewVoice, VoiceStore  # noqa: E402
from voices_db.audio_io import pcm_sha256, write_wav_pcm16  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def space_env(tmp_path_factory) -> tuple[Path, Path]:
    """(built CPU Space folder, python of a clean venv with its requirements installed)."""
    tmp = tmp_path_factory.mktemp("space-venv")
    space = build(tmp / "space", BuildOptions(hardware="cpu-basic"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-compile",
         "--retries", "0", "-r", str(space / "requirements.txt"), f"gradio=={metadata.GRADIO_SDK_VERSION}"],
        capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    print(f"\nSpace venv installed in {time.monotonic() - started:.1f} s")
    return space, python


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed_snapshot(mount: Path, tmp: Path) -> str:
    """A library with one voice, snapshot onto the mount as a previous run would have left it."""
    t = np.arange(24000) / 24000
    pcm = np.round(0.3 * np.sin(2 * np.pi * 200 * t) * 32767).astype(np.int16)
    with VoiceStore(tmp / "previous-run") as store:
        with store.staging_dir() as stage:
            write_wav_pcm16(stage / "reference.wav", pcm, 24000)
            voice = store.create_voice(NewVoice(name="Kept Voice", duration=1.0, sample_rate=24000,
                                                audio_sha256=pcm_sha256(pcm), transcript="Still here."), stage)
        snapshot(store.layout.root, mount)
    return voice.id


def test_the_built_space_starts_in_a_clean_venv_and_answers_healthz(space_env, tmp_path, fixtures_dir):
    space, python = space_env
    mount = tmp_path / "bucket"
    mount.mkdir()
    kept = seed_snapshot(mount, tmp_path)
    port = free_port()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path / "home"), "LANG": "C.UTF-8",
           "GRADIO_SERVER_PORT": str(port), "TTS_MODEL_ID": str(fixtures_dir / "tiny_a"), "TTS_DEVICE": "cpu",
           "VOICE_PERSIST_DIR": str(mount), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "OMP_NUM_THREADS": "1", "SYSTEM": "spaces", "SPACE_ID": "alice/studio"}
    log = tmp_path / "space.log"
    with open(log, "w") as out:
        server = subprocess.Popen([str(python), metadata.APP_FILE], cwd=space, env=env, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        health = wait_ready(f"http://127.0.0.1:{port}", server, log)
        assert health["state"] == "ready" and health["device"] == "cpu"
        assert health["model"] == str(fixtures_dir / "tiny_a")
        assert health["voices"] == 1  # restored from the mount before the library opened
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            voices = client.get("/api/v1/voices").json()["voices"]
            assert [v["id"] for v in voices] == [kept]
            assert client.get("/").status_code == 200  # the studio UI
        assert (space / "data" / "voices.sqlite3").is_file()  # the live library is on local disk
        assert not list(mount.rglob("*.sqlite3-*"))  # no SQLite journal, WAL or lock files on the mount
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(5)


def wait_ready(base: str, server: subprocess.Popen, log: Path, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the Space exited with {server.returncode}:\n{log.read_text()[-5000:]}")
        try:
            last = httpx.get(f"{base}/healthz", timeout=5).json()
            if last.get("state") in ("ready", "failed"):
                return last
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"no ready /healthz within {timeout} s (last: {last}):\n{log.read_text()[-5000:]}")
