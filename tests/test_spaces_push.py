"""`python -m spaces push OWNER/NAME`: the upload calls, made against a local stub of the Hub's
HTTP API (HF_ENDPOINT points at it), never the network."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from spaces.build import BuildOptions, build  # noqa: E402

TOKEN = "hf_test_token_for_the_stub"


class HubStub(BaseHTTPRequestHandler):
    """The endpoints HfApi.create_repo + upload_folder use, answering as the Hub does. The
    README's YAML is validated with huggingface_hub's own card parser, as the Hub would."""

    requests: list = []
    remote_files = [".gitattributes", "stale_module.py"]  # what an earlier push left

    def log_message(self, *args):
        pass

    def _reply(self, status: int, body) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.requests.append({"method": self.command, "path": url.path, "query": parse_qs(url.query),
                              "auth": self.headers.get("Authorization"), "body": body})
        base = f"http://127.0.0.1:{self.server.server_port}"
        if url.path == "/api/repos/create":
            request = json.loads(body)
            return self._reply(200, {"url": f"{base}/spaces/{request['organization']}/{request['name']}"})
        if url.path == "/api/validate-yaml":
            return self._validate(json.loads(body))
        if url.path.endswith("/tree/main"):
            return self._reply(200, [{"type": "file", "path": p, "oid": "0" * 40, "size": 1}
                                     for p in self.remote_files])
        if "/preupload/" in url.path:
            files = json.loads(body)["files"]
            return self._reply(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                               for f in files]})
        if "/commit/" in url.path:
            return self._reply(200, {"commitUrl": f"{base}/spaces/alice/studio/commit/{'1' * 40}",
                                     "commitOid": "1" * 40})
        return self._reply(404, {"error": f"{url.path} is not part of this stub"})

    def _validate(self, request: dict) -> None:
        from huggingface_hub import RepoCard

        errors = []
        try:
            data = RepoCard(request["content"]).data.to_dict()
        except Exception as e:  # noqa: BLE001 - reported like the Hub reports bad YAML
            errors.append({"message": str(e)})
        else:
            if request["repoType"] == "space" and data.get("sdk") not in ("gradio", "docker", "static"):
                errors.append({"message": "sdk must be gradio, docker or static"})
        return self._reply(400 if errors else 200, {"errors": errors, "warnings": []})

    do_GET = do_POST = do_HEAD = do_PUT = _handle


@pytest.fixture
def hub():
    HubStub.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), HubStub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def push_cli(hub, tmp_path, *args, token: str | None = TOKEN):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{hub.server_port}", HF_HOME=str(tmp_path / "hf-home"),
               HF_HUB_DISABLE_TELEMETRY="1")
    if token:
        env["HF_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "spaces", "push", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)


def commit_lines(hub) -> list[dict]:
    (commit,) = [r for r in HubStub.requests if "/commit/" in r["path"]]
    return [json.loads(line) for line in commit["body"].decode().splitlines() if line.strip()]


def test_push_creates_the_space_and_uploads_the_build_in_one_commit(hub, tmp_path):
    result = push_cli(hub, tmp_path, "alice/studio", "--private", "--hardware", "cpu-basic")
    assert result.returncode == 0, result.stderr
    assert "commit/" in result.stdout and "https://huggingface.co/spaces/alice/studio" in result.stdout

    requests = HubStub.requests
    assert all(r["auth"] == f"Bearer {TOKEN}" for r in requests)
    (create,) = [json.loads(r["body"]) for r in requests if r["path"] == "/api/repos/create"]
    assert create["type"] == "space" and create["sdk"] == "gradio"
    assert create["organization"] == "alice" and create["name"] == "studio"
    assert create.get("visibility") == "private" or create.get("private") is True
    assert [r["path"] for r in requests if "/commit/" in r["path"]] == ["/api/spaces/alice/studio/commit/main"]

    lines = commit_lines(hub)
    assert lines[0]["key"] == "header" and "cpu-basic" in lines[0]["value"]["summary"]
    uploaded = {ln["value"]["path"]: base64.b64decode(ln["value"]["content"]) for ln in lines if ln["key"] == "file"}
    expected_dir = build(tmp_path / "expected", BuildOptions(hardware="cpu-basic"))
    expected = {p.relative_to(expected_dir).as_posix(): p.read_bytes() for p in expected_dir.rglob("*") if p.is_file()}
    assert uploaded == expected  # the whole build, byte for byte, and nothing else
    deleted = [ln["value"]["path"] for ln in lines if ln["key"] == "deletedFile"]
    assert deleted == ["stale_module.py"]  # left by an earlier push; .gitattributes stays


def test_push_without_a_token_says_how_to_log_in_and_sends_nothing(hub, tmp_path):
    result = push_cli(hub, tmp_path, "alice/studio", token=None)
    assert result.returncode == 2
    assert "no Hugging Face token" in result.stderr and "hf auth login" in result.stderr
    assert HubStub.requests == []


def test_push_refuses_a_bad_space_name(hub, tmp_path):
    result = push_cli(hub, tmp_path, "just-a-name")
    assert result.returncode == 2 and "OWNER/NAME" in result.stderr
    assert HubStub.requests == []
