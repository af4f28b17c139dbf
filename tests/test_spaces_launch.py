"""Serving on a Space goes through `Blocks.launch()` (where ZeroGPU hooks its startup) and
still serves the API routes, middleware, state and WebSocket of the FastAPI app."""
from __future__ import annotations

import socket

import gradio as gr
import httpx
import pytest
from fastapi import FastAPI, Request, WebSocket
from starlette.middleware.base import BaseHTTPMiddleware
from websockets.sync.client import connect

from space_runtime.launch import serve, server_address


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_api() -> FastAPI:
    api = FastAPI(docs_url="/api/docs", openapi_url="/api/openapi.json")

    class Stamp(BaseHTTPMiddleware):
        async def dispatch(self, request, call_next):
            response = await call_next(request)
            response.headers["x-stamp"] = "api"
            return response

    api.add_middleware(Stamp)
    api.state.greeting = "hello"

    @api.get("/healthz")
    async def healthz(request: Request):
        return {"ok": True, "greeting": request.app.state.greeting}

    @api.get("/config")  # Gradio has a /config route too: the API's comes first
    async def config():
        return {"from": "api"}

    @api.websocket("/api/v1/echo")
    async def echo(ws: WebSocket):
        await ws.accept()
        await ws.send_text(await ws.receive_text())
        await ws.close()

    return api


def make_blocks() -> gr.Blocks:
    with gr.Blocks(title="studio") as blocks:
        box = gr.Textbox()
        gr.Button("go").click(lambda s: s.upper(), box, box, api_name="shout")
    return blocks


def test_serve_through_launch_keeps_the_api_and_serves_the_ui():
    api, blocks, port = make_api(), make_blocks(), free_port()
    launches = []
    original = gr.Blocks.launch

    def spy(self, *args, **kwargs):  # ZeroGPU wraps launch the same way to run its startup
        launches.append(kwargs)
        return original(self, *args, **kwargs)

    gr.Blocks.launch = spy
    try:
        serve(api, blocks, host="127.0.0.1", port=port, queue_max_size=7, prevent_thread_lock=True, quiet=True)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=30) as client:
            health = client.get("/healthz")
            assert health.json() == {"ok": True, "greeting": "hello"} and health.headers["x-stamp"] == "api"
            assert client.get("/config").json() == {"from": "api"}
            assert "/healthz" in client.get("/api/openapi.json").json()["paths"]
            page = client.get("/")
            assert page.status_code == 200 and "<html" in page.text.lower()
            assert client.get("/gradio_api/info").status_code == 200  # Gradio's own API is there
        with connect(f"ws://127.0.0.1:{port}/api/v1/echo") as ws:
            ws.send("ping")
            assert ws.recv() == "ping"
        assert len(launches) == 1 and launches[0]["server_name"] == "127.0.0.1"
        assert blocks._queue.max_size == 7
    finally:
        gr.Blocks.launch = original
        blocks.close()


def test_serve_refuses_an_app_with_the_ui_already_mounted():
    api, blocks = make_api(), make_blocks()
    gr.mount_gradio_app(api, blocks, path="/")
    with pytest.raises(ValueError, match="without the Gradio UI mounted"):
        serve(api, blocks, port=free_port(), prevent_thread_lock=True)


def test_address_comes_from_the_space_environment():
    assert server_address({}) == ("0.0.0.0", 7860)
    assert server_address({"GRADIO_SERVER_PORT": "7861", "GRADIO_SERVER_NAME": "127.0.0.1"}) == ("127.0.0.1", 7861)
