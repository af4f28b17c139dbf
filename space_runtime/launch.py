"""Serving on a Space: the FastAPI routes and the Gradio studio, started by `Blocks.launch()`.

Locally the app mounts Gradio on its FastAPI app and runs uvicorn. A Space must start
through `Blocks.launch()` instead, because that is where ZeroGPU hooks its startup (the
`spaces` package wraps `launch`: it packs tensors and reports the GPU functions). An app
that only mounts Gradio never calls `launch`, and its GPU functions are never set up.

So `serve` hands the API app's parts (built without the Gradio mount) to the app that
`launch` builds: its routes, middleware, exception handlers, lifespan and state. Gradio adds
its own routes after them, so `/healthz`, `/api/v1/...` and `/v1/...` keep precedence,
as they do when mounted.
"""
from __future__ import annotations

import contextlib
import os

DEFAULT_PORT = 7860
# ZeroGPU makes Gradio's queue hold one event unless max_size is set. Give the UI room for
# a few waiting visitors; the engine worker has its own limits behind it.
DEFAULT_QUEUE_SIZE = int(os.environ.get("GRADIO_QUEUE_MAX_SIZE", "32"))


def server_address(environ=None) -> tuple[str, int]:
    """(host, port) for a Space: GRADIO_SERVER_NAME (else 0.0.0.0) and GRADIO_SERVER_PORT (else 7860)."""
    environ = os.environ if environ is None else environ
    host = environ.get("GRADIO_SERVER_NAME") or "0.0.0.0"
    return host, int(environ.get("GRADIO_SERVER_PORT") or DEFAULT_PORT)


def api_parts(api) -> dict:
    """FastAPI constructor arguments that rebuild `api` (no Gradio mount) in another app.

    The API's own docs routes come along and keep describing the API.
    """
    from starlette.routing import Mount

    for route in api.routes:
        if isinstance(route, Mount) and type(route.app).__module__.startswith("gradio"):
            # mount_gradio_app also wraps the app's lifespan to start the UI's queue, which
            # launch() starts too: pass the API app as it was before the UI was mounted.
            raise ValueError(f"serve() needs the API app without the Gradio UI mounted (found it at "
                             f"{route.path or '/'!r}); launch() serves the UI itself")
    return {"routes": list(api.routes), "middleware": list(api.user_middleware),
            "exception_handlers": dict(api.exception_handlers), "lifespan": _lifespan(api)}


def _lifespan(api):
    """The API's lifespan, run with the launched app, after copying the API's state into it."""
    inner = api.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app):
        app.state._state.update(api.state._state)  # Starlette keeps State's items in _state
        async with inner(api) as value:
            yield value

    return lifespan


def serve(api, blocks, *, host: str | None = None, port: int | None = None,
          queue_max_size: int | None = DEFAULT_QUEUE_SIZE, **launch_kwargs):
    """Serve `api` (FastAPI) with `blocks` (the Gradio UI) at `/`, through `blocks.launch()`.

    host/port: default from the environment (server_address). `launch_kwargs` go to
    `Blocks.launch` (theme, css, footer_links, max_file_size, show_error, ssr_mode, ...).
    Blocks until the server stops, unless prevent_thread_lock=True is passed.
    """
    env_host, env_port = server_address()
    if queue_max_size is not None:
        # Blocks() made a queue already (max_size 1 on ZeroGPU). Remake it with room, and
        # keep the concurrency default that the app may have set.
        current = getattr(getattr(blocks, "_queue", None), "default_concurrency_limit", "not_set")
        blocks.queue(max_size=queue_max_size, default_concurrency_limit=current)
    return blocks.launch(server_name=host or env_host, server_port=port or env_port,
                         app_kwargs=api_parts(api), **launch_kwargs)
