"""The voices REST API, the OpenAI speech endpoint (every format, decoded with ffmpeg),
/healthz, the API token, rate limits and the upload size limit, against the running app."""
import io
import subprocess
import time
import wave

import httpx
import numpy as np
import pytest

from test_app_support import CLIP_TEXT, ROOT, TOKEN, AppServer, add_voice, make_clip

AUTH = {"Authorization": f"Bearer {TOKEN}"}
SPEECH = {"model": "qwen3-tts", "input": "Hi there.", "seed": 5}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("app_rest")
    srv = AppServer(tmp / "data", "--max-upload-mb", "1", "--rate-limit", "120", env={"API_TOKEN": TOKEN})
    srv.tmp = tmp
    try:
        srv.wait("ready")
        srv.clip = make_clip(tmp / "clip.wav")
        add_voice(srv, srv.clip, "Ada", headers=AUTH)
        yield srv
    finally:
        srv.stop()


def api(server, method, path, **kwargs):
    headers = {**AUTH, **kwargs.pop("headers", {})}
    return httpx.request(method, server.url + path, headers=headers, timeout=120, **kwargs)


def decode(data: bytes, fmt: str) -> np.ndarray:
    """Any container -> int16 mono samples at 24 kHz, by ffmpeg."""
    args = ["-f", "s16le", "-ar", "24000", "-ac", "1", "-i", "pipe:0"] if fmt == "pcm" else ["-i", "pipe:0"]
    out = subprocess.run(["ffmpeg", "-v", "error", *args, "-f", "s16le", "-ar", "24000", "-ac", "1", "pipe:1"],
                         input=data, capture_output=True, check=True)
    return np.frombuffer(out.stdout, "<i2")


def test_health_is_public_and_reports_the_model(server):
    health = httpx.get(server.url + "/healthz").json()
    assert health["state"] == "ready" and health["ok"] is True
    assert health["device"] == "cpu" and health["dtype"] == "float32"
    assert set(health["queue"]) == {"running", "waiting"} and health["voices"] >= 1


def test_token_is_required_for_every_api(server):
    for method, path in [("GET", "/api/v1/voices"), ("GET", "/api/v1/voices/ada"), ("DELETE", "/api/v1/voices/ada"),
                         ("POST", "/v1/audio/speech")]:
        r = httpx.request(method, server.url + path, json=SPEECH)
        assert r.status_code == 401, (path, r.text)
        wrong = httpx.request(method, server.url + path, json=SPEECH, headers={"X-API-Token": "nope"})
        assert wrong.status_code == 401
    assert "token" in r.json()["error"]["message"]
    assert api(server, "GET", "/api/v1/voices", headers={"X-API-Token": TOKEN}).status_code == 200


def test_voices_round_trip(server):
    listing = api(server, "GET", "/api/v1/voices").json()
    ada = next(v for v in listing["voices"] if v["id"] == "ada")
    assert {"id", "name", "language", "description", "isDefault"} <= set(ada) and ada["isDefault"] is True

    with open(server.clip, "rb") as f:
        r = api(server, "POST", "/api/v1/voices", files={"audio": ("mine.wav", f, "audio/wav")},
                data={"name": "Bea Test", "transcript": CLIP_TEXT, "language": "en"})
    assert r.status_code == 201, r.text
    bea = r.json()
    assert bea["id"] == "bea-test" and bea["transcript"] == CLIP_TEXT and bea["language"] == "en"
    assert r.headers["location"] == "/api/v1/voices/bea-test" and bea["isDefault"] is False

    assert api(server, "GET", "/api/v1/voices/bea-test").json()["name"] == "Bea Test"
    audio = api(server, "GET", "/api/v1/voices/bea-test/audio")
    assert audio.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(audio.content)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 24000)
        assert 7.0 < w.getnframes() / 24000 < 10.0

    edited = api(server, "PATCH", "/api/v1/voices/bea-test", json={"transcript": "New words.", "description": "d"})
    assert edited.status_code == 200 and edited.json()["transcript"] == "New words."
    assert edited.json()["transcriptSource"] == "user"
    assert api(server, "POST", "/api/v1/voices/bea-test/default").json()["isDefault"] is True
    found = api(server, "GET", "/api/v1/voices", params={"q": "new words"}).json()["voices"]
    assert [v["id"] for v in found] == ["bea-test"]

    assert api(server, "DELETE", "/api/v1/voices/bea-test").status_code == 204
    missing = api(server, "GET", "/api/v1/voices/bea-test")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "VOICE_NOT_FOUND"
    assert api(server, "GET", "/api/v1/voices").json()["voices"][0]["isDefault"] is True  # ada again


def test_paging(server):
    first = api(server, "GET", "/api/v1/voices", params={"limit": 1}).json()
    assert len(first["voices"]) == 1


def test_upload_refusals_are_explained(server, tmp_path):
    no_file = api(server, "POST", "/api/v1/voices", data={"name": "x"})
    assert no_file.status_code == 400 and "audio" in no_file.json()["error"]["message"]
    text = tmp_path / "notes.txt"
    text.write_text("this is not audio at all " * 20)
    with open(text, "rb") as f:
        r = api(server, "POST", "/api/v1/voices", files={"audio": ("notes.txt", f)}, data={"name": "x"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "not_audio", r.text
    short = ROOT / "tests" / "fixtures" / "audio" / "speech_en.wav"  # 2.8 s of speech: too little
    with open(short, "rb") as f:
        r = api(server, "POST", "/api/v1/voices", files={"audio": ("s.wav", f)}, data={"name": "s", "transcript": "x"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "too_short", r.text
    assert "at least 3 s" in r.json()["error"]["message"]
    big = np.random.default_rng(0).integers(-3000, 3000, 24000 * 30, dtype=np.int16)  # 1.4 MB > 1 MB limit
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(24000), w.writeframes(big.tobytes())
    r = api(server, "POST", "/api/v1/voices", files={"audio": ("big.wav", buf.getvalue())}, data={"name": "big"})
    assert r.status_code == 413 and "MB" in r.json()["error"]["message"]
    names = [v["id"] for v in api(server, "GET", "/api/v1/voices").json()["voices"]]
    assert names == ["ada"]  # nothing refused was stored


def test_openai_speech_in_every_format(server):
    raw = api(server, "POST", "/v1/audio/speech", json={**SPEECH, "response_format": "pcm"})
    assert raw.status_code == 200 and raw.headers["content-type"].startswith("audio/L16")
    assert raw.headers["x-voice"] == "ada"
    pcm = np.frombuffer(raw.content, "<i2")
    assert len(pcm) > 0
    for fmt, media in [("wav", "audio/wav"), ("mp3", "audio/mpeg"), ("flac", "audio/flac"), ("opus", "audio/ogg"),
                       ("aac", "audio/aac")]:
        r = api(server, "POST", "/v1/audio/speech", json={**SPEECH, "response_format": fmt})
        assert r.status_code == 200 and r.headers["content-type"] == media, (fmt, r.text[:200])
        decoded = decode(r.content, fmt)
        if fmt in ("wav", "flac"):  # lossless: the very same samples
            np.testing.assert_array_equal(decoded, pcm)
        else:  # lossy codecs add priming/padding; the length is close
            assert abs(len(decoded) - len(pcm)) <= 2400 + len(pcm) // 10, (fmt, len(decoded), len(pcm))
    default = api(server, "POST", "/v1/audio/speech", json=SPEECH)  # OpenAI's default format is mp3
    assert default.headers["content-type"] == "audio/mpeg"


def test_openai_speech_is_streamed(server):
    arrivals, total = [], 0
    body = {**SPEECH, "input": "One sentence to stream. And a second sentence after it.", "response_format": "pcm"}
    with httpx.stream("POST", server.url + "/v1/audio/speech", json=body, headers=AUTH, timeout=120) as r:
        assert r.status_code == 200
        for chunk in r.iter_raw():
            arrivals.append(time.monotonic())
            total += len(chunk)
    assert len(arrivals) >= 3 and total > 0
    assert arrivals[-1] - arrivals[0] > 0.05  # pieces arrived over time, not as one body


def test_openai_errors_and_voice_fallback(server):
    def post(**body):
        return api(server, "POST", "/v1/audio/speech", json={**SPEECH, "response_format": "pcm", **body})

    for body, param in [({"speed": 1.5}, "speed"), ({"input": ""}, "input"), ({"input": None}, "input"),
                        ({"response_format": "ogg"}, "response_format"), ({"instructions": "whisper"}, "instructions"),
                        ({"seed": -3}, "seed")]:
        r = post(**body)
        assert r.status_code == 400, (body, r.text)
        err = r.json()["error"]
        assert err["param"] == param and err["type"] == "invalid_request_error" and err["message"]
    fallback = post(voice="alloy")
    assert fallback.status_code == 200 and fallback.headers["x-voice"] == "ada"
    assert "alloy" in fallback.headers["x-voice-fallback"]
    assert post(speed=1.0).status_code == 200


def test_rate_limit_answers_429(server):
    # 120 per minute per client, bursts of 20: a flood is cut off (the limit is checked first,
    # so even these invalid requests count)
    with httpx.Client(base_url=server.url, headers=AUTH) as client:
        responses = [client.post("/v1/audio/speech", json={"input": "x", "speed": 2}) for _ in range(60)]
    codes = [r.status_code for r in responses]
    assert codes[0] == 400 and 429 in codes and set(codes) == {400, 429}
    limited = next(r for r in responses if r.status_code == 429)
    assert int(limited.headers["retry-after"]) >= 1 and limited.json()["error"]["code"] == "rate_limit_exceeded"
