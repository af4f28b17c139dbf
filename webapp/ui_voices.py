"""The Voices tab: add a voice (upload or record -> ingest preview -> save), browse and
search the library a page at a time, play, edit, set default, delete with confirmation,
and export/import a voice or the whole library.

Every handler turns failures into a message (⚠ ...) a person can act on; none raises.
With an API token set, every handler that reads or changes the library checks it first
(webapp.ui_access): the page's token box is the first input of each of those events.
"""
from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from engine.languages import LANGUAGES
from voices_db import LibraryError
from webapp.ui_access import LOCKED_LIBRARY, TOO_MANY_UPLOADS, PageAccess
from webapp.voices import VoiceService

PAGE_SIZE = 10
LANGUAGE_CODES = [("Detect / unknown", "")] + [(name.title(), code) for name, code in LANGUAGES.items()]
HEADERS = ["★", "Name", "Id", "Lang.", "Length", "Transcript"]


def _rows(items) -> list[list[str]]:
    def excerpt(text: str) -> str:
        return text if len(text) <= 60 else text[:57] + "…"

    return [["★" if v.is_default else "", v.name, v.id, v.language or "", f"{v.duration:.1f} s", excerpt(v.transcript)]
            for v in items]


def _language_value(language: str | None) -> str:
    """A stored language (code or name) as one of LANGUAGE_CODES' values."""
    if not language:
        return ""
    language = language.lower()
    return LANGUAGES.get(language, language if language in LANGUAGES.values() else "")


def _preview_info(clip) -> str:
    lines = [f"**Kept clip:** {clip.duration:.1f} s at {clip.sample_rate} Hz, level {clip.loudness_dbfs:.1f} dBFS",
             f"**Detected language:** {clip.language or 'unknown'}",
             f"**Transcript from:** {'you' if clip.transcript_source == 'user' else clip.transcript_source}"]
    for w in clip.warnings:
        lines.append(f"<span class='voice-warning'>⚠ {w.get('message', w)}</span>")
    if not clip.warnings:
        lines.append("No warnings: the clip looks good.")
    return "  \n".join(lines)


def build_voices_tab(voices: VoiceService, access: PageAccess, token: gr.Textbox) -> SimpleNamespace:
    """Build the tab inside the current Blocks context (the Speak tab re-reads the library
    when it is selected). Returns `load(token)` and `load_outputs` for the page-load event
    and for entering the token (the list is rendered fresh for every visitor)."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            gr.Markdown("### Add a voice\nUpload a clip or record one (8-15 s of clear speech clones best).")
            # format=None: the file goes to our bounded decoder as it is, not through Gradio's
            # whole-file conversion to WAV first
            add_audio = gr.Audio(label="Clip", sources=["upload", "microphone"], type="filepath", format=None,
                                 elem_id="add-audio")
            add_name = gr.Textbox(label="Name", elem_id="add-name", max_length=100)
            add_language = gr.Dropdown(label="Language", choices=LANGUAGE_CODES, value="", elem_id="add-language")
            add_transcript = gr.Textbox(label="Transcript (optional)", lines=2, elem_id="add-transcript",
                                        info="Leave empty to transcribe the clip with Whisper.")
            process_btn = gr.Button("Process clip", elem_id="add-process")
            with gr.Group(visible=False, elem_id="add-preview") as preview:
                preview_audio = gr.Audio(label="Kept clip", interactive=False, elem_id="add-preview-audio")
                preview_info = gr.Markdown(elem_id="add-preview-info")
                preview_text = gr.Textbox(label="Transcript (edit it if a word is wrong)", lines=3,
                                          elem_id="add-preview-transcript")
                save_btn = gr.Button("Save voice", variant="primary", elem_id="add-save")
            add_msg = gr.Markdown(elem_id="add-msg")
        with gr.Column(scale=3):
            gr.Markdown("### Library")
            search = gr.Textbox(label="Search", placeholder="name, language, transcript…", elem_id="lib-search")
            table = gr.Dataframe(headers=HEADERS, value=[], interactive=False, elem_id="lib-table", wrap=True,
                                 column_widths=["7%", "20%", "17%", "9%", "11%", "36%"])
            with gr.Row():
                prev_btn = gr.Button("◀ Previous", size="sm", elem_id="lib-prev")
                page_label = gr.Markdown(elem_id="lib-page")
                next_btn = gr.Button("Next ▶", size="sm", elem_id="lib-next")
            selected = gr.Dropdown(label="Selected voice", choices=[], elem_id="lib-selected")
            with gr.Group(visible=False, elem_id="lib-editor") as editor:
                ed_audio = gr.Audio(label="Reference clip", interactive=False, elem_id="ed-audio")
                ed_name = gr.Textbox(label="Name", elem_id="ed-name", max_length=100)
                ed_description = gr.Textbox(label="Description", elem_id="ed-description")
                ed_language = gr.Dropdown(label="Language", choices=LANGUAGE_CODES, value="", elem_id="ed-language")
                ed_transcript = gr.Textbox(label="Transcript", lines=3, elem_id="ed-transcript")
                with gr.Row():
                    ed_save = gr.Button("Save changes", variant="primary", elem_id="ed-save")
                    ed_default = gr.Button("Set as default", elem_id="ed-default")
                    ed_export = gr.Button("Export voice", elem_id="ed-export")
                    ed_delete = gr.Button("Delete…", variant="stop", elem_id="ed-delete")
                with gr.Row(visible=False, elem_id="ed-confirm") as confirm_row:
                    confirm_text = gr.Markdown()
                    confirm_btn = gr.Button("Yes, delete it", variant="stop", elem_id="ed-confirm-delete")
                    cancel_btn = gr.Button("Keep it", elem_id="ed-cancel-delete")
            lib_msg = gr.Markdown(elem_id="lib-msg")
            with gr.Accordion("Export / import", open=False, elem_id="lib-archive"):
                export_lib = gr.Button("Export the whole library (.zip)", elem_id="lib-export")
                download = gr.File(label="Download", interactive=False, elem_id="lib-download")
                import_file = gr.File(label="Import a voice or library (.zip)", file_types=[".zip"], type="filepath",
                                      elem_id="lib-import-file")
                replace = gr.Checkbox(label="Replace voices that have the same id", value=False)
                import_btn = gr.Button("Import", elem_id="lib-import")

    clip_state, original_state = gr.State(None), gr.State(None)
    page_state = gr.State({"q": "", "cursors": [None], "index": 0})
    version_state = gr.State(None)

    # ---- library list --------------------------------------------------------------------
    def render(state, keep=None):
        try:
            items, next_cursor = voices.search(state["q"], PAGE_SIZE, state["cursors"][state["index"]])
            all_choices = voices.choices()  # library voices only (no clips used on the fly)
        except LibraryError as e:
            return [], f"⚠ {e}", gr.Dropdown(), state
        state = dict(state, next=next_cursor)
        label = f"Page {state['index'] + 1}" + ("" if items else " (no voices match)")
        ids = [vid for _, vid in all_choices]
        value = keep if keep in ids else None
        return _rows(items), label, gr.Dropdown(choices=all_choices, value=value), state

    list_outputs = [table, page_label, selected, page_state]
    unchanged = [gr.skip()] * len(list_outputs)
    first_page = {"q": "", "cursors": [None], "index": 0}

    def locked(state):
        return [], LOCKED_LIBRARY, gr.Dropdown(choices=[], value=None), state

    def do_search(tok, q, state, current, request: gr.Request):
        state = {"q": q or "", "cursors": [None], "index": 0}
        return render(state, current) if access.allowed(tok, request) else locked(state)

    def do_next(tok, state, current, request: gr.Request):
        if not access.allowed(tok, request):
            return locked(state)
        if state.get("next"):
            state = dict(state, cursors=state["cursors"][: state["index"] + 1] + [state["next"]], index=state["index"] + 1)
        return render(state, current)

    def do_prev(tok, state, current, request: gr.Request):
        if not access.allowed(tok, request):
            return locked(state)
        return render(dict(state, index=max(0, state["index"] - 1)), current)

    search.submit(do_search, [token, search, page_state, selected], list_outputs)
    search.change(do_search, [token, search, page_state, selected], list_outputs, show_progress="hidden")
    next_btn.click(do_next, [token, page_state, selected], list_outputs)
    prev_btn.click(do_prev, [token, page_state, selected], list_outputs)

    def pick_row(evt: gr.SelectData, rows):
        try:
            return gr.Dropdown(value=rows.iloc[evt.index[0], 2] if hasattr(rows, "iloc") else rows[evt.index[0]][2])
        except (IndexError, KeyError, TypeError):
            return gr.Dropdown()

    table.select(pick_row, [table], selected)

    # ---- editor ----------------------------------------------------------------------------
    def load_editor(tok, voice_id, request: gr.Request):
        hidden = gr.Group(visible=False)
        if not voice_id:
            return hidden, None, "", "", "", "", None, gr.Row(visible=False), ""
        if not access.allowed(tok, request):
            return hidden, None, "", "", "", "", None, gr.Row(visible=False), access.refusal(request)
        try:
            v = voices.get(voice_id)
        except LibraryError as e:
            return hidden, None, "", "", "", "", None, gr.Row(visible=False), f"⚠ {e}"
        return (gr.Group(visible=True), str(voices.store.audio_path(v)), v.name, v.description,
                _language_value(v.language), v.transcript, v.version, gr.Row(visible=False), "")

    editor_outputs = [editor, ed_audio, ed_name, ed_description, ed_language, ed_transcript, version_state,
                      confirm_row, lib_msg]
    selected.change(load_editor, [token, selected], editor_outputs)

    def save_edit(tok, voice_id, name, description, language, transcript, version, state, request: gr.Request):
        if not access.allowed(tok, request):
            return (access.refusal(request), version) + tuple(unchanged)
        try:
            v = voices.update(voice_id, expected_version=version, name=name, description=description,
                              language=language, transcript=transcript)
        except LibraryError as e:
            return (f"⚠ {e}", version) + tuple(unchanged)
        voices.warm_later(v.id)
        return (f"Saved the changes to **{v.name}**.", v.version) + tuple(render(state, v.id))

    ed_save.click(save_edit, [token, selected, ed_name, ed_description, ed_language, ed_transcript, version_state,
                              page_state], [lib_msg, version_state] + list_outputs)

    def make_default(tok, voice_id, state, request: gr.Request):
        if not access.allowed(tok, request):
            return (access.refusal(request),) + tuple(unchanged)
        try:
            v = voices.set_default(voice_id)
        except LibraryError as e:
            return (f"⚠ {e}",) + tuple(unchanged)
        return (f"**{v.name}** is now the default voice.",) + tuple(render(state, v.id))

    ed_default.click(make_default, [token, selected, page_state], [lib_msg] + list_outputs)

    def ask_delete(voice_id):
        if not voice_id:
            return gr.Row(visible=False), ""
        return gr.Row(visible=True), f"Delete **{voice_id}** and its audio? This cannot be undone."

    ed_delete.click(ask_delete, selected, [confirm_row, confirm_text])
    cancel_btn.click(lambda: gr.Row(visible=False), None, confirm_row)

    def do_delete(tok, voice_id, state, request: gr.Request):
        if not access.allowed(tok, request):
            return (access.refusal(request), gr.Row(visible=False)) + tuple(unchanged)
        try:
            voices.delete(voice_id)
        except LibraryError as e:
            return (f"⚠ {e}", gr.Row(visible=False)) + tuple(unchanged)
        return (f"Deleted **{voice_id}**.", gr.Row(visible=False)) + tuple(render(state, None))

    confirm_btn.click(do_delete, [token, selected, page_state], [lib_msg, confirm_row] + list_outputs)

    def export_one(tok, voice_id, request: gr.Request):
        if not access.allowed(tok, request):
            return None, access.refusal(request)
        if not access.may_upload(request):
            return None, TOO_MANY_UPLOADS
        try:
            return str(voices.export_voice_zip(voice_id)), f"Exported **{voice_id}**: download it below."
        except LibraryError as e:
            return None, f"⚠ {e}"

    ed_export.click(export_one, [token, selected], [download, lib_msg])

    # ---- archives ----------------------------------------------------------------------------
    def export_all(tok, request: gr.Request):
        if not access.allowed(tok, request):
            return None, access.refusal(request)
        if not access.may_upload(request):
            return None, TOO_MANY_UPLOADS
        try:
            return str(voices.export_library_zip()), "Exported the library: download it below."
        except LibraryError as e:
            return None, f"⚠ {e}"

    export_lib.click(export_all, [token], [download, lib_msg])

    def do_import(tok, path, replace_existing, state, request: gr.Request):
        if not access.allowed(tok, request):
            return (access.refusal(request),) + tuple(unchanged)
        if not path:
            return ("⚠ Choose a .zip file to import first.",) + tuple(unchanged)
        if not access.may_upload(request):
            return (TOO_MANY_UPLOADS,) + tuple(unchanged)
        try:
            ids = voices.import_zip(path, replace=bool(replace_existing))
        except (LibraryError, OSError, ValueError) as e:
            return (f"⚠ Import failed: {e}",) + tuple(unchanged)
        return (f"Imported {len(ids)} voice(s): {', '.join(ids)}.",) + tuple(render(state, ids[0] if ids else None))

    import_btn.click(do_import, [token, import_file, replace, page_state], [lib_msg] + list_outputs)

    # ---- adding a voice ------------------------------------------------------------------------
    def do_process(tok, path, name, language, transcript, request: gr.Request):
        hide = gr.Group(visible=False)
        if not access.allowed(tok, request):
            return hide, None, "", "", None, None, access.refusal(request)
        if not path:
            return hide, None, "", "", None, None, "⚠ Upload or record a clip first."
        if not access.may_upload(request):
            return hide, None, "", "", None, None, TOO_MANY_UPLOADS
        try:
            clip = voices.process(path, transcript, language or None)
        except (LibraryError, OSError) as e:
            return hide, None, "", "", None, None, f"⚠ {e}"
        return (gr.Group(visible=True), (clip.sample_rate, clip.pcm), _preview_info(clip), clip.transcript, clip, path,
                "Listen to the kept clip, check the transcript, then save.")

    process_btn.click(do_process, [token, add_audio, add_name, add_language, add_transcript],
                      [preview, preview_audio, preview_info, preview_text, clip_state, original_state, add_msg])

    def do_save(tok, clip, original, name, language, transcript, state, request: gr.Request):
        if not access.allowed(tok, request):
            return (access.refusal(request), gr.skip()) + tuple(unchanged)
        if clip is None:
            return ("⚠ Process a clip first.", gr.skip()) + tuple(unchanged)
        try:
            v = voices.save(clip, (name or "").strip() or "New voice", original=original, transcript=transcript,
                            language=language or None)
        except (LibraryError, OSError) as e:
            return (f"⚠ {e}", gr.skip()) + tuple(unchanged)
        return ((f"Saved **{v.name}** (id `{v.id}`)." + (" It is the default voice." if v.is_default else ""),
                 gr.Group(visible=False)) + tuple(render(state, v.id)))

    save_btn.click(do_save, [token, clip_state, original_state, add_name, add_language, preview_text, page_state],
                   [add_msg, preview] + list_outputs)

    def first_render(tok, request: gr.Request):
        return render(first_page) if access.allowed(tok, request) else locked(first_page)

    return SimpleNamespace(load=first_render, load_outputs=list_outputs)
