"""Qwen3 Voice Studio: `python app.py` serves the Gradio studio and the APIs on one port.

    python app.py [--host 127.0.0.1] [--port 7860] [--model ID_OR_DIR] [--device cuda|cpu]
                  [--dtype bfloat16|float32] [--data-dir DIR] [--whisper-model NAME] [--share]

Environment: TTS_MODEL_ID, TTS_DEVICE, TTS_DTYPE, TTS_THREADS, VOICE_DATA_DIR, VOICE_WHISPER_MODEL,
API_TOKEN (protects the APIs and voice changes), TTS_VOICES_DIR / TTS_DEFAULT_VOICE (seed
voices imported at start). The server answers at once; the model loads in the background
(progress in the UI banner and at /healthz) and the voice library works meanwhile.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import threading

log = logging.getLogger("app")


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="python app.py", description="Qwen3 Voice Studio: the studio UI and its APIs.")
    p.add_argument("--host", default=env("GRADIO_SERVER_NAME") or "127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=int(env("PORT") or env("GRADIO_SERVER_PORT") or 7860))
    p.add_argument("--model", default=None, help="Hub id or local checkpoint folder ($TTS_MODEL_ID; "
                   "default Qwen/Qwen3-TTS-12Hz-0.6B-Base)")
    p.add_argument("--device", default=None, help="cuda, cuda:1 or cpu ($TTS_DEVICE; default cuda if available)")
    p.add_argument("--dtype", default=None, help="bfloat16, float16 or float32 ($TTS_DTYPE)")
    p.add_argument("--data-dir", default=None, help="voice library folder ($VOICE_DATA_DIR, else ./data)")
    p.add_argument("--whisper-model", default=None, help="Whisper model for transcripts ($VOICE_WHISPER_MODEL; "
                   "default the bundled tiny.en)")
    p.add_argument("--share", action="store_true", help="also publish a temporary public gradio.live link")
    p.add_argument("--api-token", default=env("API_TOKEN") or None, help=argparse.SUPPRESS)
    p.add_argument("--max-upload-mb", type=float, default=50.0, help="largest accepted upload (default 50)")
    p.add_argument("--rate-limit", type=float, default=120.0,
                   help="synthesis requests per minute per client (0 = unlimited; default 120)")
    p.add_argument("--max-active", type=int, default=4, help="requests generated at once (default 4)")
    p.add_argument("--request-timeout", type=float, default=600.0, help="longest request in seconds")
    p.add_argument("--threads", type=int, default=int(env("TTS_THREADS") or 0),
                   help="CPU threads for the engine ($TTS_THREADS; default torch's choice). On a busy "
                   "machine with few cores, fewer threads can be much faster")
    p.add_argument("--log-level", default=env("LOG_LEVEL") or "info")
    return p


def build_app(args: argparse.Namespace | None = None, *, start: bool = True, loader=None, mount: bool = True):
    """(FastAPI app with the studio mounted at /, AppContext). `start` begins loading the model.

    loader: optional `loader(model_id, device=, dtype=)` replacing `engine.load_model`.
    mount: False leaves the UI (app.state.blocks) unmounted, for a Space that serves both
    through `Blocks.launch()`.
    Raises voices_db.LibraryError when the library cannot be opened.
    """
    import space_runtime
    from space_runtime import zerogpu
    from ingest import Transcriber, sync_from_environment
    from voices_db import VoiceStore, resolve_data_dir
    from webapp.auth import Guard
    from webapp.context import AppContext
    from webapp.model_host import ModelHost
    from webapp.server import create_api, mount_ui
    from webapp.ui import build_ui
    from webapp.voices import VoiceService

    args = args or build_parser().parse_args([])
    space = space_runtime.active()  # None unless started by the Space entry point
    store = VoiceStore(resolve_data_dir(args.data_dir))
    if space is not None:  # snapshot the library to the Space's storage after each change
        store = space.attach_library(store)
    transcriber = Transcriber(args.whisper_model)
    holder: dict = {}

    def on_ready(model):
        voices = holder["voices"]
        voices.attach_model(model)
        default = voices.default()
        if default is not None:  # the default voice is ready before the first request
            try:
                voices.prompts.warm(default.id)
            except Exception as e:  # noqa: BLE001 - it is computed again on first use
                log.warning("prompt of the default voice %s not precomputed: %s", default.id, e)

    options = {"device": args.device, "dtype": args.dtype, "max_active": args.max_active,
               **zerogpu.worker_options()}  # ZeroGPU: the main process keeps the model on the CPU
    host = ModelHost(args.model, loader=loader, on_ready=on_ready, **options)
    voices = holder["voices"] = VoiceService(store, host, transcriber)
    max_bytes = int(args.max_upload_mb * 2**20)
    guard = Guard(token=args.api_token, synth_per_minute=args.rate_limit,
                  synth_burst=max(1.0, args.rate_limit / 6), max_upload_bytes=max_bytes)
    ctx = AppContext(host=host, voices=voices, guard=guard, request_timeout_s=args.request_timeout)
    if start:  # first, so the page built below shows the loading state from the start
        host.start()
    app = create_api(ctx)
    blocks = build_ui(host, voices, guard, notice=space.notice if space is not None else None)
    if mount:
        app = mount_ui(app, blocks, ctx, max_file_size=max_bytes)
    app.state.ctx, app.state.blocks = ctx, blocks
    threading.Thread(target=_sync_seed_voices, args=(store, transcriber, sync_from_environment),
                     name="seed-voices", daemon=True).start()
    return app, ctx


def _sync_seed_voices(store, transcriber, sync) -> None:
    """Import $TTS_VOICES_DIR and apply $TTS_DEFAULT_VOICE (never fatal)."""
    try:
        report = sync(store, transcriber=transcriber)
        for folder, error in report.errors:
            log.warning("seed voice %s: %s", folder, error)
    except Exception as e:  # noqa: BLE001 - the studio works without its seed voices
        log.warning("seed voices not imported: %s", e)


def _share(blocks, port: int, server) -> None:
    """Open a gradio.live tunnel once the server is up; failure only logs."""
    import time

    from gradio import networking

    while not server.started:
        time.sleep(0.1)
    try:
        url = networking.setup_tunnel("127.0.0.1", port, blocks.share_token, None, None)
        print(f"Public link (expires in 1 week): {url}", flush=True)
    except Exception as e:  # noqa: BLE001 - the studio still runs locally
        print(f"Could not create a share link ({e}); the studio is still available locally.", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import uvicorn

    from voices_db import LibraryError

    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)

    import space_runtime

    space = space_runtime.active()
    try:
        app, ctx = build_app(args, mount=space is None)
    except (LibraryError, OSError) as e:
        print(f"error: cannot open the voice library: {e}", file=sys.stderr)
        return 2
    if space is not None:  # a Space serves through Blocks.launch(), where ZeroGPU hooks in
        from webapp.ui import CSS, THEME

        try:
            space.serve(app, app.state.blocks, footer_links=["api"], max_file_size=int(args.max_upload_mb * 2**20),
                        theme=THEME, css=CSS, show_error=True, ssr_mode=False)
        finally:
            ctx.host.stop()
        return 0
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level.lower(),
                            ws="auto", ws_max_size=4 * 2**20, timeout_graceful_shutdown=3)
    server = uvicorn.Server(config)
    if args.share:
        threading.Thread(target=_share, args=(app.state.blocks, args.port, server), daemon=True).start()
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    print(f"Qwen3 Voice Studio on http://{shown}:{args.port} (model {ctx.host.model_id} loading in the background)",
          flush=True)
    try:
        server.run()
    finally:
        ctx.host.stop()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
