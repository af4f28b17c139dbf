"""The app without a usable model: while it loads, and when it cannot be loaded. The voice
library keeps working; synthesis says why it is unavailable and what to do."""
import asyncio
import threading
import time

import httpx
import pytest

from test_app_support import TINY, AppServer, WsClient, add_voice, free_port, make_clip


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("app_broken")
    srv = AppServer(tmp / "data", model="/nonexistent/checkpoint")
    srv.tmp = tmp
    try:
        srv.wait("failed", timeout=60)
        yield srv
    finally:
        srv.stop()


def test_health_reports_the_failure_and_what_to_do(broken):
    health = httpx.get(broken.url + "/healthz").json()
    assert health["state"] == "failed" and health["ok"] is False
    assert "/nonexistent/checkpoint" in health["reason"] and "neither an existing directory" in health["reason"]
    assert "--model" in health["hint"]


def test_websocket_speak_says_why(broken):
    async def flow():
        client, ready = await WsClient.connect(broken.ws_url)
        assert ready["capabilities"]["modelState"] == "failed"
        await client.send({"type": "start"})
        assert (await client.json())["type"] == "started"  # the session itself works
        await client.send({"type": "speak", "text": "Hello?"})
        err = await client.json()
        assert err["code"] == "MODEL_LOADING" and err["recoverable"] is False
        assert "could not be loaded" in err["message"] and "--model" in err["message"]
        await client.send({"type": "stop"})
        assert (await client.json())["type"] == "stopped"

    asyncio.run(asyncio.wait_for(flow(), 60))


def test_openai_endpoint_answers_503_with_the_reason(broken):
    r = httpx.post(broken.url + "/v1/audio/speech", json={"input": "Hello", "response_format": "wav"})
    assert r.status_code == 503
    assert "could not be loaded" in r.json()["error"]["message"]


def test_the_voice_library_still_works(broken):
    voice = add_voice(broken, make_clip(broken.tmp / "clip.wav"), "Offline Voice")
    listing = httpx.get(broken.url + "/api/v1/voices").json()["voices"]
    assert [v["id"] for v in listing] == [voice["id"]] and listing[0]["isDefault"]
    audio = httpx.get(f"{broken.url}/api/v1/voices/{voice['id']}/audio")
    assert audio.status_code == 200 and audio.content[:4] == b"RIFF"
    assert httpx.delete(f"{broken.url}/api/v1/voices/{voice['id']}").status_code == 204


def test_loading_then_ready_in_process(tmp_path):
    """While the (real) model is held back the app answers MODEL_LOADING (recoverable) with
    the loading phase; once loaded the same session speaks."""
    import uvicorn

    import app as studio
    from engine import model as engine_model

    gate = threading.Event()

    def gated_loader(model_id, device=None, dtype=None):
        gate.wait(60)
        return engine_model.load_model(model_id, device=device, dtype=dtype)

    port = free_port()
    args = studio.build_parser().parse_args(["--model", str(TINY), "--data-dir", str(tmp_path / "data"),
                                             "--device", "cpu", "--dtype", "float32"])
    fastapi_app, ctx = studio.build_app(args, loader=gated_loader)
    server = uvicorn.Server(uvicorn.Config(fastapi_app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.05)
        health = httpx.get(url + "/healthz").json()
        assert health["state"] == "loading" and "loading weights" in health["phase"] and health["ok"] is True
        r = httpx.post(url + "/v1/audio/speech", json={"input": "Hello"})
        assert r.status_code == 503 and r.headers["retry-after"] == "5" and "still loading" in r.text

        async def flow():
            client, ready = await WsClient.connect(f"ws://127.0.0.1:{port}/api/v1/speak")
            assert ready["capabilities"]["modelState"] == "loading"
            await client.send({"type": "speak", "text": "Hello there.", "sampling": {"maxFrames": 8, "seed": 1}})
            await client.until("started")
            err = await client.json()
            assert err["code"] == "MODEL_LOADING" and err["recoverable"] is True and "still loading" in err["message"]
            gate.set()
            assert await asyncio.get_running_loop().run_in_executor(None, ctx.host.wait_ready, 60)
            await client.send({"type": "speak", "text": "Hello there.", "sampling": {"maxFrames": 8, "seed": 1}})
            done, audio, _ = await client.until("complete", "error")
            assert done["type"] == "complete" and len(audio) > 0
            await client.close()

        asyncio.run(asyncio.wait_for(flow(), 120))
        assert httpx.get(url + "/healthz").json()["state"] == "ready"
    finally:
        gate.set()
        server.should_exit = True
        thread.join(10)
        ctx.host.stop()
