"""The running app under attack through every route, Gradio's own included: with API_TOKEN
set, no Gradio event gives away voice data without the token; a server path is refused
as a file input; the FLAC that hides an hour of audio is refused with bounded memory
through REST and through the page; Gradio's upload and queue routes have limits."""
import httpx
import pytest

from hostile_inputs import peak_rss_growth_mb, zeroed_flac
from test_app_support import CLIP_TEXT, TOKEN, AppServer, GradioPage, add_voice, file_data, make_clip

AUTH = {"Authorization": f"Bearer {TOKEN}"}
NAME = "Quintessa Marvelwood"
SECRETS = (NAME, CLIP_TEXT[:20], "/gradio_api/file=", "reference.wav", ".zip")
MAX_GROWTH_MB = 300


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hardening_app")
    srv = AppServer(tmp / "data", env={"API_TOKEN": TOKEN})
    srv.tmp = tmp
    try:
        srv.wait("ready")
        srv.clip = make_clip(tmp / "clip.wav")
        srv.voice = add_voice(srv, srv.clip, NAME, headers=AUTH)
        srv.page = GradioPage(srv.url)
        yield srv
    finally:
        srv.stop()


def hostile_inputs(page: GradioPage, event: dict, voice_id: str, token: str = "") -> list:
    """Plausible values for every input of `event`: the voice's id where an id fits, a search
    term where text fits, and `token` in the token box."""
    token_box = page.component_id("api-token")
    values = {"textbox": "quintessa", "dropdown": voice_id, "radio": "auto", "checkbox": False, "number": 1,
              "dataframe": {"headers": ["x"], "data": [["x"]], "metadata": None}}
    return [token if i == token_box else values.get(page.components[i]["type"]) for i in event["inputs"]]


def test_the_page_config_names_no_voice(server):
    assert NAME not in httpx.get(server.url + "/config").text
    assert NAME not in httpx.get(server.url + "/gradio_api/info").text


def test_no_gradio_event_gives_voice_data_without_the_token(server):
    page, voice_id = server.page, server.voice["id"]
    events = page.events()
    assert len(events) >= 25  # every event of the page, not a chosen few
    loads = [e for e in events if e["targets"] and e["targets"][0][1] == "load"]
    leaks = []
    for event in loads + events:  # the page-load events first, as a browser runs them
        status, stream = page.call(event, hostile_inputs(page, event, voice_id))
        leaks += [(event.get("api_name"), s) for s in SECRETS if s in stream]
    assert not leaks
    assert server.proc.poll() is None
    # the same events with the token do find the voice: the sweep looks in the right places
    page = GradioPage(server.url)
    status, stream = page.call(page.event("first_render"), [TOKEN])
    assert NAME in stream
    status, stream = page.call(page.event("load_editor"), [TOKEN, voice_id])
    assert CLIP_TEXT[:20] in stream and "/gradio_api/file=" in stream
    # a program may send the token as a header instead of filling the box
    headed = GradioPage(server.url, headers=AUTH)
    assert NAME in headed.call(headed.event("first_render"), [""])[1]


def test_a_server_path_is_not_a_file_input(server):
    page = server.page
    process = page.event("do_process")
    reference = server.data_dir / "voices" / server.voice["id"] / "reference.wav"
    assert reference.is_file()
    answers = []
    for path in ("/etc/passwd", str(reference), "/no/such/file.wav", "http://127.0.0.1:1/x.wav"):
        status, text = page.call(process, [TOKEN, file_data(path, "clip.wav"), "Stolen", "", CLIP_TEXT])
        answers.append((status, text))
        assert "Listen to the kept clip" not in text
    assert {status for status, _ in answers} == {403}
    assert len({text for _, text in answers}) == 1  # nothing says which paths exist
    # an uploaded clip still works
    uploaded = page.upload(server.clip)
    status, text = page.call(process, [TOKEN, uploaded, "Mine", "", CLIP_TEXT])
    assert status == 200 and "Listen to the kept clip" in text, text


def test_the_hidden_hour_is_refused_with_bounded_memory_through_rest_and_the_page(server):
    pid = server.proc.pid
    flac = zeroed_flac()

    def rest():
        with open(flac, "rb") as f:
            return httpx.post(server.url + "/api/v1/voices", files={"audio": (flac.name, f, "audio/flac")},
                              data={"name": "Hour", "transcript": "x"}, headers=AUTH, timeout=300)

    growth, r = peak_rss_growth_mb(pid, rest)
    assert r.status_code == 422 and r.json()["error"]["code"] == "too_long", r.text
    assert growth < MAX_GROWTH_MB, growth

    page = server.page
    uploaded = page.upload(flac)
    growth, (status, text) = peak_rss_growth_mb(pid, lambda: page.call(page.event("do_process"),
                                                                      [TOKEN, uploaded, "Hour", "", "x"], 300))
    assert "lasts more than 10.0 min" in text, text
    assert growth < MAX_GROWTH_MB, growth
    assert httpx.get(server.url + "/api/v1/voices", headers=AUTH).json()["voices"][0]["name"] == NAME


def test_gradio_queue_bodies_and_uploads_are_limited(server, tmp_path):
    page = server.page
    event = page.event("do_search")
    huge = {"data": ["", "x" * (2 * 2**20), None, None], "fn_index": event["id"], "session_hash": "big"}
    r = httpx.post(server.url + "/gradio_api/queue/join", json=huge, timeout=30)
    assert r.status_code == 413 and r.json()["error"]["code"] == "BODY_TOO_LARGE"
    small = tmp_path / "small.wav"
    small.write_bytes(server.clip.read_bytes()[:50_000])
    statuses = []
    for _ in range(25):
        with open(small, "rb") as f:
            statuses.append(httpx.post(server.url + "/gradio_api/upload", files={"files": ("s.wav", f)},
                                       timeout=30).status_code)
    assert statuses[0] == 200 and 429 in statuses, statuses
    assert server.proc.poll() is None
