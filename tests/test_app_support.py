"""Support for the app tests (no tests here): the real server in a subprocess, clips, and a
small WebSocket client.

Each test module starts `python app.py` once (a free port on 127.0.0.1, a fresh data
directory, the tiny checkpoint) and talks to it over HTTP and WebSocket like any client.
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "tiny_a"
ARTIFACTS = ROOT / "tests" / "artifacts"
CLIP_TEXT = ("The morning train was late again, so we walked to the old bridge. "
             "My sister likes to read books about the history of the sea.")
TOKEN = "test-token-123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """`python app.py ...` in a subprocess; `stop()` ends it (and its engine worker)."""

    def __init__(self, data_dir: Path, *args: str, env: dict | None = None, model: str | None = str(TINY)):
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/api/v1/speak"
        cmd = [sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(self.port), "--data-dir", str(data_dir),
               "--log-level", "warning", *args]
        if model is not None:
            cmd += ["--model", model]
        # one CPU thread: on a busy 2-core machine two threads make the tiny model 20x slower
        full_env = {**os.environ, "TTS_DEVICE": "cpu", "TTS_DTYPE": "float32", "HF_HUB_OFFLINE": "1",
                    "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})}
        if "API_TOKEN" not in (env or {}):
            full_env.pop("API_TOKEN", None)  # a token in the developer's shell must not leak in
        self.log_path = Path(data_dir).with_suffix(".log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait(self, state: str | None = "ready", timeout: float = 90.0) -> dict:
        """Wait until /healthz answers (and the model reaches `state`); returns the health."""
        end = time.monotonic() + timeout
        health = None
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the app exited with {self.proc.returncode}:\n{self.log()}")
            try:
                health = httpx.get(self.url + "/healthz", timeout=5).json()
                if state is None or health["state"] == state:
                    return health
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"app not {state} in {timeout} s (last health {health}):\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


def make_clip(path: Path, sentences=(0, 1)) -> Path:
    """An espeak-ng clip of sentences from ingest.bench.SENTENCES (about 8 s for two)."""
    from ingest.bench import SENTENCES, synth_passage

    chosen = [SENTENCES[i] for i in sentences]
    synth_passage(path, chosen, [0.4] * len(chosen), lead_s=0.3, tail_s=0.3)
    return path


def add_voice(server: AppServer, clip: Path, name: str, transcript: str | None = CLIP_TEXT,
              headers: dict | None = None) -> dict:
    """POST /api/v1/voices; returns the new voice (asserting 201)."""
    data = {"name": name}
    if transcript:
        data["transcript"] = transcript
    with open(clip, "rb") as f:
        r = httpx.post(server.url + "/api/v1/voices", files={"audio": (clip.name, f, "audio/wav")}, data=data,
                       headers=headers or {}, timeout=120)
    assert r.status_code == 201, r.text
    return r.json()


class WsClient:
    """A thin protocol client over `websockets` (asyncio)."""

    def __init__(self, ws):
        self.ws = ws

    @classmethod
    async def connect(cls, url: str, **kwargs) -> tuple["WsClient", dict]:
        import websockets

        ws = await websockets.connect(url, max_size=2**24, **kwargs)
        client = cls(ws)
        ready = await client.json()
        return client, ready

    async def send(self, message) -> None:
        await self.ws.send(message if isinstance(message, (str, bytes)) else json.dumps(message))

    async def recv(self, timeout: float = 60.0):
        return await asyncio.wait_for(self.ws.recv(), timeout)

    async def json(self, timeout: float = 60.0) -> dict:
        while True:
            message = await self.recv(timeout)
            if isinstance(message, str):
                return json.loads(message)

    async def until(self, *types: str, timeout: float = 120.0) -> tuple[dict, bytes, list[dict]]:
        """Collect until a JSON message of one of `types`: (that message, audio bytes, others)."""
        audio, others = bytearray(), []
        end = time.monotonic() + timeout
        while True:
            message = await self.recv(max(0.1, end - time.monotonic()))
            if isinstance(message, bytes):
                audio += message
                continue
            data = json.loads(message)
            if data["type"] in types:
                return data, bytes(audio), others
            others.append(data)

    async def close(self) -> None:
        await self.ws.close()
