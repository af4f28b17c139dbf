"""The Gradio studio: a model-status banner and one tab per job (Speak, Voices, API).

`build_ui(engine, store)` only builds components and wires events; nothing heavy runs at
import. Synthesis never runs in a Gradio handler: the Speak tab's player streams from
WS /api/v1/speak (webapp.ws_speak), which queues on the same engine worker as the APIs.
"""
from __future__ import annotations

import html

import gradio as gr

from webapp.auth import Guard
from webapp.model_host import FAILED, LOADING, ModelHost
from webapp.ui_access import PageAccess
from webapp.voices import VoiceService

THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="slate")
CSS = """
#studio-header h1 { margin: 0; font-size: 1.6rem; }
#studio-header p { margin: 0.2rem 0 0; opacity: 0.75; }
#model-status { border-radius: 8px; padding: 0.2rem 0.8rem; }
#model-status.status-loading { background: #fff7e0; }
#model-status.status-failed { background: #fdecec; }
#model-status.status-ready { background: #eaf7ee; }
.studio-player { border: 1px solid var(--border-color-primary); border-radius: 10px; padding: 0.8rem 1rem; }
.studio-player .sp-status { font-weight: 600; min-height: 1.4em; }
.studio-player[data-state="error"] .sp-status { color: #b42318; }
.studio-player .sp-figures { display: flex; flex-wrap: wrap; gap: 1.2rem; margin-top: 0.5rem; font-size: 0.9rem; }
.studio-player .sp-figures b { font-variant-numeric: tabular-nums; }
.studio-player .sp-download { display: inline-block; margin-top: 0.6rem; }
.studio-player .sp-download[hidden] { display: none; }
.voice-warning { color: #b54708; }
"""


def status_markdown(host: ModelHost) -> str:
    """The banner text for the model's current state."""
    s = host.status()
    model = html.escape(s["model"])
    if s["state"] == LOADING:
        return (f"**Loading the TTS model…** `{model}` on {s['device']}: {s.get('phase', '')} "
                f"({s['elapsedS']:.0f} s). The voice library works meanwhile; speech starts when the model is ready.")
    if s["state"] == FAILED:
        return (f"⚠ **Speech synthesis is unavailable**: the model `{model}` could not be loaded: "
                f"{html.escape(s['reason'])}  \n**What to do:** {html.escape(s['hint'])} "
                "The voice library (Voices tab) still works.")
    took = f", loaded in {s['loadedInS']:.1f} s" if s.get("loadedInS") is not None else ""
    return f"✓ **Model ready**: `{model}` on {s['device']} ({s['dtype']}){took}."


def build_ui(engine: ModelHost, store: VoiceService, guard: Guard | None = None,
             notice: str | None = None) -> gr.Blocks:
    """The studio page (see module docstring). engine: the ModelHost; store: the VoiceService;
    notice: Markdown shown above the tabs (e.g. a Space's "voices will not survive a restart")."""
    from webapp.ui_api import build_api_tab
    from webapp.ui_speak import build_speak_tab
    from webapp.ui_voices import build_voices_tab

    access = PageAccess(guard or Guard())
    # delete_cache: uploads and cached downloads older than an hour are removed every 10 min
    with gr.Blocks(title="Qwen3 Voice Studio", delete_cache=(600, 3600)) as demo:
        gr.HTML("<h1>Qwen3 Voice Studio</h1><p>Type, pick a voice, hear it stream. "
                "Drop in a clip to make a new voice.</p>", elem_id="studio-header")
        if notice:
            gr.Markdown(notice, elem_id="studio-notice")
        with gr.Row():
            status = gr.Markdown(status_markdown(engine), elem_id="model-status",
                                 elem_classes=[f"status-{engine.state}"])
            retry = gr.Button("Retry loading", visible=engine.state == FAILED, size="sm", scale=0,
                              elem_id="retry-btn")
        token = gr.Textbox(label="Access token", type="password", visible=access.required, elem_id="api-token",
                           info="This server requires its API token for the voice library and for speaking "
                                "(press Enter after typing it).")
        with gr.Tabs():
            with gr.Tab("Speak", id="speak", elem_id="tab-speak") as speak_tab:
                speak = build_speak_tab(engine, store, token, access)
            with gr.Tab("Voices", id="voices", elem_id="tab-voices"):
                library = build_voices_tab(store, access, token)
            with gr.Tab("API", id="api", elem_id="tab-api"):
                build_api_tab(engine)
        refresh_inputs, refresh_outputs = [token, speak.voice, speak.clips], [speak.voice, speak.mode]
        speak_tab.select(speak.refresh, inputs=refresh_inputs, outputs=refresh_outputs)
        for entered in (token.submit, token.blur):  # the token unlocks the library
            entered(library.load, inputs=[token], outputs=library.load_outputs, show_progress="hidden")
            entered(speak.refresh, inputs=refresh_inputs, outputs=refresh_outputs, show_progress="hidden")

        timer = gr.Timer(1.0, active=engine.state == LOADING)

        def poll():
            state = engine.state
            return (gr.Markdown(status_markdown(engine), elem_classes=[f"status-{state}"]),
                    gr.Button(visible=state == FAILED), gr.Timer(active=state == LOADING))

        def do_retry(tok, request: gr.Request):
            if access.allowed(tok, request):  # reloading the model is a change of the server
                engine.retry()
            return poll()

        timer.tick(poll, outputs=[status, retry, timer], show_progress="hidden")
        retry.click(do_retry, inputs=[token], outputs=[status, retry, timer])
        demo.load(poll, outputs=[status, retry, timer], show_progress="hidden")
        demo.load(library.load, inputs=[token], outputs=library.load_outputs, show_progress="hidden")
        demo.load(speak.refresh, inputs=refresh_inputs, outputs=refresh_outputs, show_progress="hidden")
    return demo
