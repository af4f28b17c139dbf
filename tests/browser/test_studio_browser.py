"""The studio in a real browser (Debian chromium + Playwright) against the running app on the
tiny checkpoint: speak with the default voice and check the samples the page played, stop
mid-way, a long utterance queued without a gap, and a voice's whole life (upload, edit the
transcript, save, speak with it, delete). Screenshots of each tab go to tests/artifacts/."""
import asyncio
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from studio_page import (choose, fill, open_accordion, open_studio, player_text, set_speech_options, shot,
                         speak_and_wait, tab, wait_text)

from test_app_support import AppServer, WsClient, add_voice, make_clip

UI_SAMPLING = {"temperature": 0.9, "topK": 50, "topP": 1.0, "repetitionPenalty": 1.05}  # the sliders' defaults


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("app_browser")
    srv = AppServer(tmp / "data", "--rate-limit", "0")
    srv.tmp = tmp
    try:
        srv.wait("ready")
        add_voice(srv, make_clip(tmp / "ada.wav"), "Ada")
        yield srv
    finally:
        srv.stop()


def reference_audio(server, text: str, seed: int, max_frames: int, voice: str = "ada") -> np.ndarray:
    """The same request over the WebSocket from Python: the samples the page should have played."""
    async def flow():
        client, _ = await WsClient.connect(server.ws_url)
        await client.send({"type": "start", "encoding": "pcm32f", "voice": voice, "language": "auto", "mode": "auto",
                           "sampling": {**UI_SAMPLING, "seed": seed, "maxFrames": max_frames}})
        await client.until("started")
        await client.send({"type": "speak", "text": text})
        done, audio, _ = await client.until("complete")
        await client.close()
        return np.frombuffer(audio, "<f4")

    # Playwright's sync API runs an event loop in this thread: use another one
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, asyncio.wait_for(flow(), 120)).result()


def test_speak_with_the_default_voice_plays_the_streamed_samples(server, page):
    open_studio(page, server.url)
    wait_text(page, "model-status", "Model ready")
    assert "Ready" in player_text(page, "status")
    shot(page, "speak-tab")
    text = "Hello from the browser. How does this sound?"
    fill(page, "speak-text", text)
    set_speech_options(page, seed=11, max_seconds=2)  # 25 frames per sentence
    played = speak_and_wait(page)
    assert played["error"] is None and played["complete"] is not None, played["errors"]
    assert played["started"]["voice"] == "ada" and played["started"]["mode"] == "icl"
    received, queued = np.array(played["received"], np.float32), np.array(played["queued"], np.float32)
    assert len(played["chunks"]) >= 2 and len(received) == sum(played["chunks"]) > 0
    np.testing.assert_array_equal(received, queued)  # every received sample was queued, once
    assert played["complete"]["audioLengthMs"] == round(1000 * len(received) / 24000)
    np.testing.assert_array_equal(received, reference_audio(server, text, 11, 25))
    assert player_text(page, "ttfa").endswith(("ms", " s")) and "s" in player_text(page, "audio")
    assert "Done" in player_text(page, "status")
    href = page.get_attribute('#player [data-role="download"]', "href")
    assert href.startswith("blob:") and page.is_visible('#player [data-role="download"]')
    size = page.evaluate("async (u) => (await (await fetch(u)).arrayBuffer()).byteLength", href)
    assert size == 44 + 2 * len(received)  # the WAV download holds the whole utterance
    shot(page, "speak-tab-after-speaking")
    assert not page.errors


def test_stop_ends_generation_mid_way(server, page):
    open_studio(page, server.url)
    fill(page, "speak-text", "This is a long text that would take a while to speak. " * 4)
    set_speech_options(page, seed=3, max_seconds=60)
    before = page.evaluate("() => window.QwenStudio.debug.utterances.length")
    page.click("#speak-btn")
    page.wait_for_function(f"() => {{ const u = window.QwenStudio.debug.utterances[{before}]; "
                           "return u && u.received.length >= 2; }", timeout=60_000)
    page.click("#stop-btn")
    page.wait_for_function(f"() => window.QwenStudio.debug.utterances[{before}].done", timeout=10_000)
    played = page.evaluate(f"() => window.QwenStudio.debugSamples({before})")
    assert played["cancelled"] and played["error"]["code"] == "CANCELLED", played["errors"]
    assert played["cancelToDoneMs"] < 3000
    assert played["error"]["frames"] < 4 * 750  # far from the four sentences' allowance
    assert player_text(page, "status") == "Stopped."
    health = httpx.get(server.url + "/healthz").json()
    assert health["queue"]["running"] == 0  # nothing keeps generating on the server


def test_long_utterance_is_queued_without_gaps(server, page):
    open_studio(page, server.url)
    # The tiny model runs slower than real time on CPU; a long jitter lead lets the page
    # queue the whole utterance before it starts, so every chunk must join its neighbour.
    page.evaluate("() => { window.QwenStudio.player.firstLead = 60; }")
    text = ("The first sentence starts the story. The second sentence carries it on. "
            "And the third sentence brings it to an end.")
    fill(page, "speak-text", text)
    set_speech_options(page, seed=5, max_seconds=4)  # 50 frames per sentence
    played = speak_and_wait(page)
    assert played["complete"] is not None, played["errors"]
    assert played["underruns"] == 0 and len(played["chunks"]) >= 8
    schedule, rate = played["schedule"], played["sampleRate"]
    for a, b in zip(schedule, schedule[1:]):
        assert b["startSample"] == a["startSample"] + a["length"]  # no sample lost or repeated
        assert abs((b["when"] - a["when"]) - a["length"] / rate) < 1e-9  # no gap in time
    received, queued = np.array(played["received"], np.float32), np.array(played["queued"], np.float32)
    np.testing.assert_array_equal(received, queued)
    expected = reference_audio(server, text, 5, 50)
    np.testing.assert_array_equal(received, expected)  # what the page queued is the utterance itself
    # click-free joins: the step across each chunk boundary is no larger than steps inside chunks
    edges = np.cumsum(played["chunks"])[:-1]
    inner = np.abs(np.diff(received))
    boundary_steps = np.abs(received[edges] - received[edges - 1])
    assert boundary_steps.max() <= inner.max() + 1e-6


def test_a_voice_from_upload_to_delete(server, page):
    clip = make_clip(server.tmp / "cleo.wav", (2, 3))
    open_studio(page, server.url)
    tab(page, "Voices")
    wait_text(page, "lib-table", "Ada")
    shot(page, "voices-tab")
    page.locator("#add-audio input[type=file]").set_input_files(str(clip))
    page.wait_for_timeout(1000)
    fill(page, "add-name", "Cleo")
    page.click("#add-process")  # Whisper (the bundled tiny.en) transcribes the clip
    page.wait_for_selector("#add-preview", state="visible", timeout=90_000)
    heard = page.input_value("#add-preview-transcript textarea")
    assert "garden" in heard.lower() and "Detected language" in page.inner_text("#add-preview-info")
    shot(page, "voices-tab-preview")
    corrected = "We planted three small trees in the garden behind the house. The weather turned cold."
    fill(page, "add-preview-transcript", corrected)
    page.click("#add-save")
    wait_text(page, "add-msg", "Saved")
    wait_text(page, "lib-table", "Cleo")
    voice = httpx.get(server.url + "/api/v1/voices/cleo").json()
    assert voice["transcript"] == corrected and voice["transcriptSource"] == "user"

    tab(page, "Speak")
    choose(page, "Voice", "Cleo")
    fill(page, "speak-text", "Now I speak with the new voice.")
    set_speech_options(page, seed=2, max_seconds=2)
    played = speak_and_wait(page)
    assert played["complete"] is not None and played["started"]["voice"] == "cleo", played["errors"]
    assert len(played["received"]) > 0

    tab(page, "Voices")
    choose(page, "Selected voice", "Cleo")
    page.wait_for_selector("#lib-editor", state="visible")
    assert page.input_value("#ed-transcript textarea") == corrected
    shot(page, "voices-tab-editor")
    page.click("#ed-delete")
    page.wait_for_selector("#ed-confirm", state="visible")
    page.click("#ed-confirm-delete")
    wait_text(page, "lib-msg", "Deleted")
    assert httpx.get(server.url + "/api/v1/voices/cleo").status_code == 404
    wait_text(page, "lib-table", "Cleo", present=False)
    assert not page.errors


def test_speak_with_a_clip_used_on_the_fly(server, page):
    clip = make_clip(server.tmp / "onthefly.wav", (4, 5))
    open_studio(page, server.url)
    open_accordion(page, "speak-clip")
    page.locator("#speak-clip-audio input[type=file]").set_input_files(str(clip))
    page.wait_for_timeout(1000)
    fill(page, "speak-clip-text", "He wrote a long letter to his friend who lives in the city.")
    page.click("#speak-clip-use")
    wait_text(page, "speak-clip-msg", "Using")
    assert page.input_value("#speak-voice input").startswith("Clip: ")
    fill(page, "speak-text", "A voice that was never saved.")
    set_speech_options(page, seed=4, max_seconds=2)
    played = speak_and_wait(page, shortcut=True)  # Ctrl+Enter in the text box speaks
    assert played["complete"] is not None, played["errors"]
    assert played["started"]["voice"].startswith("clip-") and played["started"]["mode"] == "icl"
    assert [v["id"] for v in httpx.get(server.url + "/api/v1/voices").json()["voices"]] == ["ada"]  # not stored
    shot(page, "speak-tab-clip-on-the-fly")


def test_api_tab(server, page):
    open_studio(page, server.url)
    tab(page, "API")
    wait_text(page, "api-doc", "/v1/audio/speech")
    shot(page, "api-tab")

