"""The FastAPI application: API routes first, then the Gradio studio mounted at `/`.

    GET  /healthz             model state (loading | ready | failed + reason and hint),
                              device, queue length, library size
    WS   /api/v1/speak        webapp.ws_speak
         /api/v1/voices...    webapp.api_voices
    POST /v1/audio/speech     webapp.api_openai
         /studio-static/...   player.js (the in-page Web Audio player)
    /                         the Gradio studio (webapp.ui)
"""
from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from webapp import api_openai, api_voices, ws_speak
from webapp.api_voices import ApiError
from webapp.api_openai import OpenAIError
from webapp.auth import BodyLimitMiddleware
from webapp.context import AppContext
from webapp.gradio_routes import GradioRoutesMiddleware

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"


def create_api(ctx: AppContext) -> FastAPI:
    """The API app without the UI (build_app mounts the UI on it)."""
    app = FastAPI(title="Qwen3 Voice Studio", docs_url="/api/docs", redoc_url=None, openapi_url="/api/openapi.json")
    # Added last, so it runs first: a body is bounded before the Gradio check buffers it.
    app.add_middleware(GradioRoutesMiddleware, guard=ctx.guard)
    app.add_middleware(BodyLimitMiddleware, max_bytes=ctx.guard.max_upload_bytes + 64 * 1024)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        if isinstance(exc, OpenAIError) or request.url.path.startswith("/v1/"):
            kind = "invalid_request_error" if exc.status < 500 else "server_error"
            body = {"error": {"message": exc.message, "type": kind, "param": getattr(exc, "param", None),
                              "code": exc.code}}
        else:
            body = {"error": {"code": exc.code, "message": exc.message}}
        return JSONResponse(body, status_code=exc.status, headers=exc.headers)

    @app.get("/healthz")
    async def healthz():
        status = ctx.host.status()
        status["ok"] = status["state"] != "failed"
        try:
            status["voices"] = ctx.voices.store.count()
        except Exception as e:  # noqa: BLE001 - health must answer even with a broken library
            status["voices"] = None
            status["libraryError"] = str(e)
        return status

    @app.websocket("/api/v1/speak")
    async def speak(websocket: WebSocket):
        await ws_speak.speak_endpoint(websocket, ctx)

    app.include_router(api_voices.build_router(ctx))
    app.include_router(api_openai.build_router(ctx))
    app.mount("/studio-static", StaticFiles(directory=STATIC_DIR), name="studio-static")
    return app


def mount_ui(app: FastAPI, blocks, ctx: AppContext, max_file_size: int):
    """Mount the Gradio studio at `/` (after the API routes, which take precedence)."""
    import gradio as gr

    from webapp.ui import CSS, THEME

    return gr.mount_gradio_app(app, blocks, path="/", footer_links=["api"], max_file_size=max_file_size,
                               theme=THEME, css=CSS, show_error=True, ssr_mode=False)
