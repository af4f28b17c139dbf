"""WS /api/v1/speak against the running app (tiny checkpoint): the seed protocol's whole
flow, every error code it names, and a fuzz of 200 malformed or hostile messages."""
import asyncio
import json
import random
import time

import httpx
import numpy as np
import pytest
import soxr

from test_app_support import TOKEN, AppServer, WsClient, add_voice, make_clip

SAMPLING = {"seed": 7, "maxFrames": 16}
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("app_ws")
    srv = AppServer(tmp / "data", "--rate-limit", "0", env={"API_TOKEN": TOKEN})
    try:
        srv.wait("ready")
        srv.voice = add_voice(srv, make_clip(tmp / "clip.wav"), "Ada", headers=AUTH)
        yield srv
    finally:
        srv.stop()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 240))


async def started(server, **start):
    client, ready = await WsClient.connect(server.ws_url)
    await client.send({"type": "start", "authToken": TOKEN, **start})
    msg, _, others = await client.until("started")
    return client, ready, msg, others


def test_whole_flow_ready_start_speak_again_cancel_stop(server):
    async def flow():
        client, ready, start, _ = await started(server, sampleRate=24000, encoding="pcm16", voice="ada",
                                                language="English", sampling=SAMPLING)
        assert ready["type"] == "ready" and len(ready["sessionId"]) == 36
        assert ready["voiceLoaded"] == "ada"
        caps = ready["capabilities"]
        assert caps["streaming"] is True and "English" in caps["languages"] and len(caps["languages"]) == 11
        assert start == {"type": "started", "sampleRate": 24000, "encoding": "pcm16", "voice": "ada",
                         "voiceName": "Ada", "language": "english", "mode": "icl", "promptReady": True}

        text = "Hello there, how are you?"
        await client.send({"type": "speak", "text": text})
        done, audio, others = await client.until("complete", "error")
        assert done["type"] == "complete", done
        assert [m["type"] for m in others if m["type"] != "queued"] == ["audioStart"]
        assert done["charactersProcessed"] == len(text) and done["frames"] >= 1
        assert len(audio) % 2 == 0 and len(audio) > 0
        assert done["audioLengthMs"] == round(1000 * len(audio) / 2 / 24000)
        assert done["durationMs"] >= done["timeToFirstAudioMs"] > 0
        first = np.frombuffer(audio, "<i2")
        assert np.abs(first).max() > 0

        # speak again: same seed and settings -> the same audio
        await client.send({"type": "speak", "text": text})
        again, audio2, _ = await client.until("complete", "error")
        assert again["type"] == "complete" and audio2 == audio

        # cancel mid-way: a long request stops within a frame or so of the cancel
        await client.send({"type": "speak", "text": "A much longer sentence to speak. " * 6,
                           "sampling": {"maxFrames": 400}})
        while not isinstance(await client.recv(), bytes):
            pass
        sent_at = time.monotonic()
        await client.send({"type": "cancel"})
        end, partial, _ = await client.until("complete", "error")
        assert end["type"] == "error" and end["code"] == "CANCELLED" and end["recoverable"] is True, end
        assert time.monotonic() - sent_at < 5
        assert end["frames"] < 100  # far from the 400 it was allowed
        health = httpx.get(server.url + "/healthz").json()
        assert health["queue"] == {"running": 0, "waiting": 0}

        # the session is still usable, then stop ends it
        await client.send({"type": "speak", "text": "Still here."})
        after, _, _ = await client.until("complete", "error")
        assert after["type"] == "complete"
        await client.send({"type": "stop", "reason": "user_requested"})
        stopped, _, _ = await client.until("stopped")
        assert stopped == {"type": "stopped", "reason": "user_requested"}
        with pytest.raises(Exception):
            await client.recv(timeout=5)  # the server closed the socket

    run(flow())


def test_pcm32f_resampled_matches_native_audio(server):
    async def flow():
        native, _, _, _ = await started(server, sampling=SAMPLING)
        await native.send({"type": "speak", "text": "Resample me please."})
        _, pcm16, _ = await native.until("complete")
        resampled, _, start, _ = await started(server, sampleRate=16000, encoding="pcm32f", sampling=SAMPLING)
        assert start["sampleRate"] == 16000 and start["encoding"] == "pcm32f"
        await resampled.send({"type": "speak", "text": "Resample me please."})
        done, f32, _ = await resampled.until("complete")
        return np.frombuffer(pcm16, "<i2") / 32767.0, np.frombuffer(f32, "<f4"), done

    ref24, got16, done = run(flow())
    expected = soxr.resample(ref24.astype(np.float32), 24000, 16000, quality="HQ")
    assert abs(len(got16) - len(expected)) <= 2
    n = min(len(got16), len(expected))
    assert np.max(np.abs(got16[:n] - expected[:n])) < 2e-3  # int16 rounding of the reference only
    assert done["audioLengthMs"] == round(1000 * len(got16) / 16000)


def test_error_codes(server, tmp_path):
    async def flow():
        client, _ = await WsClient.connect(server.ws_url)
        # UNAUTHORIZED: no token, wrong token; speak before authenticating
        await client.send({"type": "start"})
        assert (await client.json())["code"] == "UNAUTHORIZED"
        await client.send({"type": "start", "authToken": "wrong"})
        err = await client.json()
        assert err["code"] == "UNAUTHORIZED" and err["recoverable"] is False
        await client.send({"type": "speak", "text": "hi"})
        assert (await client.json())["code"] == "UNAUTHORIZED"
        # VOICE_NOT_FOUND falls back to the default voice and says so
        await client.send({"type": "start", "authToken": TOKEN, "voice": "nobody", "sampling": SAMPLING})
        err = await client.json()
        assert err["code"] == "VOICE_NOT_FOUND" and "ada" in err["message"] and err["recoverable"] is False
        start = await client.json()
        assert start["type"] == "started" and start["voice"] == "ada"
        # INVALID_MESSAGE: bad JSON, unknown type, not an object, binary from the client, bad fields
        for bad in ["{not json", json.dumps({"type": "dance"}), "[1, 2]", b"\x00\x01binary",
                    json.dumps({"type": "start", "authToken": TOKEN, "encoding": "mp3"}),
                    json.dumps({"type": "start", "authToken": TOKEN, "sampleRate": 5}),
                    json.dumps({"type": "start", "authToken": TOKEN, "language": "klingon"})]:
            await client.send(bad)
            err = await client.json()
            assert err["type"] == "error" and err["code"] == "INVALID_MESSAGE", (bad, err)
        # INVALID_TEXT: empty, blank, not a string, too long
        for text in ["", "   ", 42, None, "x" * 5001]:
            await client.send({"type": "speak", "text": text})
            err = await client.json()
            assert err["code"] == "INVALID_TEXT" and err["recoverable"] is False, (text, err)
        # TIMEOUT: a request over its time limit is stopped and reported
        await client.send({"type": "speak", "text": "This takes longer than a millisecond.", "timeoutMs": 1})
        err, _, _ = await client.until("error", "complete")
        assert err["code"] == "TIMEOUT" and err["recoverable"] is True
        # RATE_LIMITED: more requests than a session may queue (1 running + 8 waiting)
        for i in range(12):
            await client.send({"type": "speak", "text": f"Queued request number {i}.", "sampling": {"maxFrames": 40}})
        await asyncio.sleep(0.5)
        await client.send({"type": "cancel"})
        codes = []
        while len(codes) < 12:
            message = await client.json()
            if message["type"] in ("error", "complete"):
                codes.append(message.get("code", "complete"))
        assert codes.count("RATE_LIMITED") >= 3
        assert set(codes) <= {"RATE_LIMITED", "CANCELLED", "complete"}
        await client.close()

    run(flow())


def test_repeated_bad_tokens_close_the_socket(server):
    import websockets

    async def flow():
        client, _ = await WsClient.connect(server.ws_url)
        for _ in range(5):
            await client.send({"type": "start", "authToken": "guess"})
            assert (await client.json())["code"] == "UNAUTHORIZED"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await client.recv(timeout=10)
        assert closed.value.rcvd.code == 1008

    run(flow())


def test_synthesis_error_for_a_broken_voice(server, tmp_path):
    broken = add_voice(server, make_clip(tmp_path / "b.wav", (2, 3)), "Broken", headers=AUTH)
    wav = server.data_dir / "voices" / broken["id"] / "reference.wav"
    raw = bytearray(wav.read_bytes())
    raw[1000:1010] = bytes(10)  # the samples no longer match the library's hash
    wav.write_bytes(bytes(raw))
    # a new transcript needs a new ICL prompt (the cached one was made from the intact clip)
    r = httpx.patch(f"{server.url}/api/v1/voices/{broken['id']}", json={"transcript": "Edited words."}, headers=AUTH)
    assert r.status_code == 200, r.text

    async def flow():
        client, _ = await WsClient.connect(server.ws_url)
        await client.send({"type": "start", "authToken": TOKEN, "voice": broken["id"], "mode": "icl"})
        err = await client.json()
        assert err["code"] == "SYNTHESIS_ERROR" and err["recoverable"] is True
        assert "changed outside the library" in err["message"]
        await client.send({"type": "start", "authToken": TOKEN, "voice": "ada", "sampling": SAMPLING})
        assert (await client.until("started"))[0]["voice"] == "ada"
        await client.close()

    try:
        run(flow())
    finally:
        httpx.delete(f"{server.url}/api/v1/voices/{broken['id']}", headers=AUTH)


def _fuzz_messages(rng: random.Random) -> list:
    junk_values = [None, True, -1, 1e308, float("nan"), "", "x" * 300, [], {}, [1, {"a": None}], "\u0000\ud7ff",
                   "💥" * 50, 10**30]
    out: list = []
    for i in range(200):
        kind = i % 10
        if kind == 0:
            out.append(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 512))))
        elif kind == 1:
            out.append("".join(chr(rng.randint(32, 0x2FFF)) for _ in range(rng.randint(1, 80))))
        elif kind == 2:
            out.append("[" * 5000 + "]" * 5000 if rng.random() < 0.5 else '{"type": "speak", "text": "unterminated')
        elif kind == 3:
            out.append({"type": rng.choice(junk_values[1:7] + ["STOP", "speak ", "cancelx", "ready"])})
        elif kind == 4:
            out.append({"type": "speak", "text": rng.choice([None, 5, [], {}, "", " \n\t ", "y" * 6000, "z" * 200_000])})
        elif kind == 5:
            out.append({"type": "start", "authToken": TOKEN, "sampleRate": rng.choice(junk_values),
                        "encoding": rng.choice(junk_values)})
        elif kind == 6:
            out.append({"type": "start", "authToken": TOKEN, "sampling": rng.choice(
                [{"temperature": -1}, {"topK": "many"}, {"topP": 7}, {"seed": "abc"}, {"bogus": 1}, [], "hot"])})
        elif kind == 7:
            out.append({"type": "speak", "text": "ok", "priority": rng.choice(junk_values + ["urgent"])})
        elif kind == 8:
            out.append({"no_type": True, "text": "hello"})
        else:
            out.append({"type": "speak", "text": "fine", "timeoutMs": rng.choice([-5, 0, "soon", [], True])})
    return out


def test_200_hostile_messages_leave_the_session_and_server_healthy(server):
    messages = _fuzz_messages(random.Random(1234))

    async def flow():
        client, _, _, _ = await started(server, sampling=SAMPLING)
        for message in messages:
            await client.send(message if isinstance(message, (bytes, str)) else json.dumps(message))
        # every hostile message is answered with an error; none produces audio or ends the session
        answers = []
        while len(answers) < len(messages):
            message = await client.recv(timeout=30)
            assert not isinstance(message, bytes), "a hostile message produced audio"
            answers.append(json.loads(message))
        assert all(a["type"] == "error" for a in answers), [a for a in answers if a["type"] != "error"][:3]
        codes = {a["code"] for a in answers}
        assert codes <= {"INVALID_MESSAGE", "INVALID_TEXT", "RATE_LIMITED"}, codes
        assert {"INVALID_MESSAGE", "INVALID_TEXT"} <= codes
        # still usable
        await client.send({"type": "speak", "text": "I am still fine."})
        done, audio, _ = await client.until("complete", "error")
        assert done["type"] == "complete" and len(audio) > 0
        await client.close()

    run(flow())
    health = httpx.get(server.url + "/healthz").json()
    assert health["ok"] and health["state"] == "ready"


def test_speak_without_start_uses_the_defaults(server):
    async def flow():
        client, _ = await WsClient.connect(server.ws_url, additional_headers=AUTH)
        await client.send({"type": "speak", "text": "No start needed.", "sampling": SAMPLING})
        start, _, _ = await client.until("started")
        assert start["voice"] == "ada" and start["encoding"] == "pcm16" and start["sampleRate"] == 24000
        done, audio, _ = await client.until("complete", "error")
        assert done["type"] == "complete" and done["audioLengthMs"] == round(1000 * len(audio) / 2 / 24000)
        await client.close()

    run(flow())

