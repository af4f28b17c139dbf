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


class GradioPage:
    """The studio page as Gradio's queue API sees it: its config and every event, callable
    by id with any inputs (what a hostile client can do without a browser). All calls share
    one Gradio session, as a visitor's do (a dropdown accepts the choices its session got)."""

    def __init__(self, url: str, headers: dict | None = None):
        import uuid

        self.url, self.headers = url, headers or {}
        self.session = uuid.uuid4().hex[:10]
        self.config = httpx.get(url + "/config", headers=self.headers, timeout=30).json()
        self.components = {c["id"]: c for c in self.config["components"]}

    def component_id(self, elem_id: str) -> int:
        return next(i for i, c in self.components.items() if c.get("props", {}).get("elem_id") == elem_id)

    def events(self) -> list[dict]:
        """Every dependency that runs Python on the server."""
        return [d for d in self.config["dependencies"] if d.get("backend_fn")]

    def event(self, fn_name: str) -> dict:
        """The first event whose handler is named `fn_name` (from its api_name)."""
        return next(d for d in self.events() if d.get("api_name") == fn_name)

    def upload(self, path: Path) -> dict:
        """POST /gradio_api/upload; the FileData of the uploaded copy."""
        with open(path, "rb") as f:
            r = httpx.post(self.url + "/gradio_api/upload", files={"files": (path.name, f)}, headers=self.headers,
                           timeout=120)
        r.raise_for_status()
        return file_data(r.json()[0], path.name)

    def call(self, event: dict, data: list, timeout: float = 120.0) -> tuple[int, str]:
        """Run `event` through /gradio_api/queue/join: (join status, the whole event stream as text)."""
        session = self.session
        body = {"data": data, "event_data": None, "fn_index": event["id"], "session_hash": session,
                "trigger_id": (event.get("targets") or [[None]])[0][0]}
        joined = httpx.post(self.url + "/gradio_api/queue/join", json=body, headers=self.headers, timeout=30)
        if joined.status_code != 200:
            return joined.status_code, joined.text
        lines = []
        with httpx.stream("GET", self.url + "/gradio_api/queue/data", params={"session_hash": session},
                          headers=self.headers, timeout=timeout) as stream:
            for line in stream.iter_lines():
                lines.append(line)
                if '"process_completed"' in line or '"unexpected_error"' in line:
                    break
        return joined.status_code, "\n".join(lines)


def file_data(path: str, name: str) -> dict:
    """A Gradio FileData payload naming `path` on the server."""
    return {"path": path, "orig_name": name, "meta": {"_type": "gradio.FileData"}}
