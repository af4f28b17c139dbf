"""The studio in a browser when the model cannot be loaded (and API_TOKEN is set): the page
says why and what to do, Speak reports it instead of failing silently, the voice library
still works, and the library (reading it, processing a clip, changes) and speech need the token."""
import httpx
import pytest
from studio_page import fill, open_studio, player_text, shot, speak_and_wait, tab, wait_text

from test_app_support import CLIP_TEXT, TOKEN, AppServer, make_clip


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("app_browser_broken")
    srv = AppServer(tmp / "data", model="/nonexistent/checkpoint", env={"API_TOKEN": TOKEN})
    srv.tmp = tmp
    try:
        srv.wait("failed", timeout=60)
        yield srv
    finally:
        srv.stop()


def test_page_explains_and_library_works(server, page):
    open_studio(page, server.url)
    wait_text(page, "model-status", "What to do")
    status = page.inner_text("#model-status")
    assert "Speech synthesis is unavailable" in status and "/nonexistent/checkpoint" in status
    assert "What to do" in status and "--model" in status
    assert page.is_visible("#retry-btn") and page.is_visible("#api-token")

    fill(page, "speak-text", "Can you hear me?")
    refused = speak_and_wait(page, timeout_ms=30_000)
    assert refused["error"]["code"] == "UNAUTHORIZED" and "token" in player_text(page, "status")

    tab(page, "Voices")
    page.locator("#add-audio input[type=file]").set_input_files(str(make_clip(server.tmp / "clip.wav")))
    page.wait_for_timeout(1000)
    fill(page, "add-name", "Dora")
    fill(page, "add-transcript", CLIP_TEXT)  # typed: no speech recognition needed
    page.click("#add-process")
    wait_text(page, "add-msg", "access token")  # running the ingest pipeline needs the token
    assert "Dora" not in page.inner_text("#lib-table") and "access token" in page.inner_text("#lib-page")
    fill(page, "api-token", TOKEN)
    page.click("#add-process")
    page.wait_for_selector("#add-preview", state="visible", timeout=60_000)
    assert page.input_value("#add-preview-transcript textarea") == CLIP_TEXT
    page.click("#add-save")
    wait_text(page, "add-msg", "Saved")
    wait_text(page, "lib-table", "Dora")
    shot(page, "voices-tab-model-unavailable")
    voice = httpx.get(server.url + "/api/v1/voices/dora", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert voice["isDefault"] is True and voice["transcript"] == CLIP_TEXT

    tab(page, "Speak")
    played = speak_and_wait(page, timeout_ms=30_000)
    assert played["error"]["code"] == "MODEL_LOADING" and not played["received"]
    assert player_text(page, "status").startswith("Speech synthesis is unavailable")
    assert "could not be loaded" in player_text(page, "status") and "--model" in player_text(page, "status")
    shot(page, "speak-tab-model-unavailable")
    assert not page.errors
