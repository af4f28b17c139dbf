"""The Speak tab: text, voice, language, voice mode, sampling, Speak/Stop, live figures.

The Speak and Stop buttons run no Python: their `js` hands the current settings to the
page's player (static/player.js), which streams raw PCM from WS /api/v1/speak and plays
it gaplessly with Web Audio. Python handlers here only manage choices and on-the-fly clips.
"""
from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from engine.languages import LANGUAGES
from voices_db import LibraryError
from webapp.model_host import ModelHost
from webapp.ui_access import TOO_MANY_UPLOADS, PageAccess
from webapp.voices import VoiceService

LANGUAGE_CHOICES = [("Auto (detect from the text)", "auto")] + [(name.title(), name) for name in LANGUAGES]
MODE_CHOICES = [("Auto", "auto"), ("Clone with transcript (ICL)", "icl"), ("Speaker embedding only (x-vector)", "xvector")]
FRAMES_PER_SECOND = 12.5

PLAYER_HTML = """
<div class="studio-player" data-state="idle">
  <div class="sp-status" data-role="status">Loading the player…</div>
  <div class="sp-figures">
    <span>First audio: <b data-role="ttfa">–</b></span>
    <span>Real-time factor: <b data-role="rtf">–</b></span>
    <span>Audio: <b data-role="audio">–</b></span>
    <span>Queue: <b data-role="queue">–</b></span>
  </div>
  <a class="sp-download" data-role="download" download="speech.wav" hidden>⬇ Download WAV</a>
</div>
"""

SPEAK_JS = """
(text, voice, mode, language, temperature, topK, topP, repetitionPenalty, seed, maxSeconds, token) => {
  window.QwenStudio.speak({text: text, voice: voice, mode: mode, language: language, temperature: temperature,
    topK: topK, topP: topP, repetitionPenalty: repetitionPenalty, seed: seed,
    maxFrames: Math.max(1, Math.round(maxSeconds * %s)), token: token});
  return [];
}
""" % FRAMES_PER_SECOND


def build_speak_tab(host: ModelHost, voices: VoiceService, token: gr.Textbox, access: PageAccess) -> SimpleNamespace:
    """Build the tab's components inside the current Blocks context; returns the ones other
    tabs need (`voice`, `mode`, `clips`: this visitor's clip ids) and
    `refresh(token, voice, clips, request) -> (voice update, mode update)`. With a token
    required, the voice list stays empty until the visitor gives it."""
    def choices_and_value(current=None, clips=()):
        try:
            choices = voices.choices(clips)
        except LibraryError:
            choices = []
        ids = [c[1] for c in choices]
        return choices, (current if current in ids else (ids[0] if ids else None))

    def mode_update(voice_id, current_mode="auto"):
        voice = voices.resolve(voice_id) if voice_id else None
        if voice is None or voice.kind == "none":
            return gr.Radio(value="auto", interactive=False, info="No voice: the model speaks in its own voice.")
        if not voice.has_transcript:
            return gr.Radio(value="xvector", interactive=False,
                            info="This voice has no transcript, so only its speaker embedding is used.")
        return gr.Radio(value=current_mode or "auto", interactive=True,
                        info="ICL clones best; x-vector follows the text more loosely but never repeats the clip.")

    def refresh(tok, current, clips, request: gr.Request):
        if not access.allowed(tok, request):
            return gr.Dropdown(choices=[], value=None), mode_update(None)
        choices, value = choices_and_value(current, clips or ())
        return gr.Dropdown(choices=choices, value=value), mode_update(value)

    # the page's config is public: it lists the voices only where anyone may see them
    choices, value = ([], None) if access.required else choices_and_value()
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            text = gr.Textbox(label="Text", lines=6, max_length=5000, elem_id="speak-text",
                              placeholder="Type what the voice should say… (Ctrl/Cmd+Enter speaks)")
            with gr.Row():
                speak_btn = gr.Button("▶ Speak", variant="primary", elem_id="speak-btn")
                stop_btn = gr.Button("■ Stop", variant="stop", elem_id="stop-btn")
            script = f'<script src="studio-static/player.js?v={_asset_version()}"></script>'
            gr.HTML(html_template=PLAYER_HTML, elem_id="player", head=script,
                    js_on_load="window.QwenStudio.attach(element);")
        with gr.Column(scale=2):
            voice = gr.Dropdown(label="Voice", choices=choices, value=value, elem_id="speak-voice",
                                info="Library voices, the default first. Add voices in the Voices tab.")
            mode = gr.Radio(label="Voice mode", choices=MODE_CHOICES, value="auto", elem_id="speak-mode")
            language = gr.Dropdown(label="Language", choices=LANGUAGE_CHOICES, value="auto", elem_id="speak-language")
            with gr.Accordion("Use a clip without saving it", open=False, elem_id="speak-clip"):
                clip = gr.Audio(label="Clip", sources=["upload", "microphone"], type="filepath", format=None,
                                elem_id="speak-clip-audio")
                clip_text = gr.Textbox(label="Transcript (optional)", lines=2, elem_id="speak-clip-text",
                                       info="Leave empty to transcribe it with Whisper.")
                use_clip = gr.Button("Use this clip", elem_id="speak-clip-use")
                clip_msg = gr.Markdown(elem_id="speak-clip-msg")
            with gr.Accordion("Advanced sampling", open=False, elem_id="speak-advanced"):
                temperature = gr.Slider(0.1, 2.0, value=0.9, step=0.05, label="Temperature")
                top_k = gr.Slider(0, 200, value=50, step=1, label="Top-k (0 = off)")
                top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.01, label="Top-p (1 = off)")
                repetition = gr.Slider(1.0, 2.0, value=1.05, step=0.01, label="Repetition penalty")
                seed = gr.Number(value=-1, precision=0, label="Seed (-1 = random)", elem_id="speak-seed")
                max_seconds = gr.Slider(2, 160, value=60, step=1, label="Max length per sentence (s)",
                                        elem_id="speak-max-seconds")

    my_clips = gr.State([])  # ids of the clips this visitor uploaded (never shown to others)
    inputs = [text, voice, mode, language, temperature, top_k, top_p, repetition, seed, max_seconds, token]
    speak_btn.click(None, inputs=inputs, js=SPEAK_JS)
    stop_btn.click(None, js="() => { window.QwenStudio.stop(); return []; }")
    def voice_changed(tok, voice_id, current_mode, request: gr.Request):
        return mode_update(voice_id if access.allowed(tok, request) else None, current_mode)

    voice.change(voice_changed, inputs=[token, voice, mode], outputs=mode, show_progress="hidden")

    def use_clip_fn(tok, path, transcript, lang, clips, request: gr.Request):
        if not access.allowed(tok, request):
            return gr.Dropdown(), gr.Radio(), access.refusal(request), clips
        if not access.may_upload(request):
            return gr.Dropdown(), gr.Radio(), TOO_MANY_UPLOADS, clips
        try:
            processed = voices.process(path, transcript, None if lang == "auto" else lang)
        except LibraryError as e:
            return gr.Dropdown(), gr.Radio(), f"⚠ {e}", clips
        temp = voices.add_temp(processed, name=_clip_name(path))
        clips = [*(clips or []), temp.id]
        choices, _ = choices_and_value(temp.id, clips)
        info = f"Using **{temp.name}** ({processed.duration:.1f} s). Transcript: _{processed.transcript or '(none)'}_"
        return gr.Dropdown(choices=choices, value=temp.id), mode_update(temp.id), info, clips

    use_clip.click(use_clip_fn, inputs=[token, clip, clip_text, language, my_clips],
                   outputs=[voice, mode, clip_msg, my_clips])
    return SimpleNamespace(voice=voice, mode=mode, clips=my_clips, refresh=refresh)


def _asset_version() -> str:
    """A hash of player.js, so browsers never run a stale copy after an update."""
    import hashlib
    from pathlib import Path

    return hashlib.sha256((Path(__file__).parent / "static" / "player.js").read_bytes()).hexdigest()[:10]


def _clip_name(path) -> str:
    from pathlib import Path

    stem = Path(str(path or "clip")).stem
    return stem if len(stem) <= 40 else stem[:40] + "…"
