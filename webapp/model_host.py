"""The TTS model behind the app: loaded in the background, its state always known.

The server answers at once; the model loads on the engine worker's own thread, and its
state has one owner, `engine.host.ModelHost`: this module only words it for people. Until it is
ready (or when it failed: offline Hub id, missing folder, out of memory, no GPU) the voice
library keeps working and every synthesis entry point gets `ModelUnavailableError`, whose
message says why and what to do. `status()` is what /healthz and the UI banner show.

All device work goes through the one `EngineWorker` (synthesis and voice-prompt
computation alike), so the UI, the WebSocket and the HTTP APIs share its queue and limits.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any, Callable

from engine import host as engine_host
from engine.device import resolve_model_id
from engine.errors import EngineError
from engine.worker import EngineWorker
from space_runtime import zerogpu

log = logging.getLogger(__name__)

LOADING, READY, FAILED = "loading", "ready", "failed"


class ModelUnavailableError(EngineError):
    """Synthesis was asked for while the model is loading or after it failed to load."""

    code = "MODEL_LOADING"

    def __init__(self, message: str, retryable: bool):
        super().__init__(message)
        self.retryable = retryable


def failure_hint(error: BaseException, model_id: str) -> str:
    """What a person can do about a load failure (shown next to the reason)."""
    text = str(error).lower()
    if "out of memory" in text or type(error).__name__ == "OutOfMemoryError":
        return ("Not enough memory for the model: free the GPU, use --dtype bfloat16, "
                "the 0.6B model, or --device cpu.")
    if "no cuda gpu" in text or "cuda" in text and "device" in text:
        return "Start with --device cpu (or TTS_DEVICE=cpu) on a machine without a GPU."
    if "neither an existing directory" in text:
        return ("Check --model (or TTS_MODEL_ID): give a local checkpoint folder or a Hub id "
                "such as Qwen/Qwen3-TTS-12Hz-0.6B-Base.")
    if "cache" in text or "could not fetch" in text or "download" in text:
        return (f"The files of {model_id} could not be downloaded. Download them once with "
                f"network access (huggingface-cli download {model_id}), or start with "
                "--model /path/to/a/local/checkpoint.")
    if "not supported" in text or "unsupported" in text:
        return "This studio runs the Qwen3-TTS 12 Hz Base models (0.6B or 1.7B)."
    return "See the server log for details, fix the cause and restart (or press Retry)."


class ModelHost:
    """The app's face of the model: an `engine.host.ModelHost` (the model's one owner: its
    loading, state, device and dtype) and the `EngineWorker` that schedules work on it, plus
    what people read about them (the banner, /healthz, why synthesis is unavailable).

    model_id/device/dtype: None for the environment, then the defaults (engine.device).
    loader: `loader(model_id, device=, dtype=)` (default: fetch the checkpoint, then
        `engine.load_model`).
    on_ready: called with the model once it is loaded (e.g. to give it to the prompt store).
    """

    def __init__(self, model_id: str | None = None, *, device=None, dtype=None, loader: Callable | None = None,
                 on_ready: Callable[[Any], None] | None = None, max_active: int = 4, max_waiting: int = 32,
                 max_waiting_per_session: int = 8):
        self.model_id = resolve_model_id(model_id)
        self.requested_device, self.requested_dtype = device, dtype
        self._loader = loader
        self._on_ready = on_ready
        self._limits = dict(max_active=max_active, max_waiting=max_waiting,
                            max_waiting_per_session=max_waiting_per_session)
        self._lock = threading.Lock()
        self.worker: EngineWorker | None = None
        self.start_error: BaseException | None = None  # no host could be made (a bad device or dtype)
        self.started_at = time.monotonic()

    # ---- lifecycle ------------------------------------------------------------------
    def start(self) -> "ModelHost":
        """Begin loading in the background (returns at once)."""
        with self._lock:
            self.started_at, self.start_error = time.monotonic(), None
            try:
                host = engine_host.ModelHost(model_id=self.model_id, device=self.requested_device,
                                             dtype=self.requested_dtype, loader=self._loader, on_ready=self._on_ready)
                self.worker = EngineWorker(host=host, name="tts-worker", **self._limits)
            except Exception as e:  # noqa: BLE001 - a bad device/dtype is a load failure, shown to the user
                self.worker, self.start_error = None, e
                log.error("cannot start the TTS worker: %s", e)
                return self
        self.worker.start()
        return self

    def retry(self) -> bool:
        """Load again after a failure (a fresh host and worker); False if not failed."""
        if self.state != FAILED:
            return False
        if self.worker is not None:
            self.worker.stop(timeout=1)
        self.start()
        return True

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop(timeout=5)

    # ---- state (read from the engine's host) -------------------------------------------
    @property
    def _host(self) -> "engine_host.ModelHost | None":
        return self.worker.host if self.worker is not None else None

    @property
    def state(self) -> str:
        worker = self.worker
        if worker is None:  # not started yet (loading soon), or the worker could not be created
            return FAILED if self.start_error is not None else LOADING
        state = worker.state
        if state == "ready":
            return READY
        return FAILED if state in ("failed", "stopped") else LOADING

    @property
    def phase(self) -> str:
        host = self._host
        return host.phase if host is not None else ("failed" if self.start_error else "starting")

    @property
    def error(self) -> BaseException | None:
        """Why the model is unavailable (None while loading or ready)."""
        host = self._host
        return self.start_error or (host.error if host is not None else None)

    @property
    def model(self):
        """The loaded model, or None."""
        # On a ZeroGPU Space the model's voice-prompt work runs in a GPU function; elsewhere
        # wrap_model returns the model itself.
        return zerogpu.wrap_model(self.worker.model) if self.state == READY else None

    @property
    def reason(self) -> str | None:
        error = self.error
        if error is None and self.worker is not None and self.worker.state == "stopped":
            return "the synthesis worker was stopped"
        return None if error is None else str(error)

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self.worker is not None and self.worker.wait_ready(timeout)

    def status(self) -> dict:
        """JSON-ready state for /healthz and the UI."""
        state, worker, host = self.state, self.worker, self._host
        out = {"state": state, "model": self.model_id,
               "device": str(host.device) if host else str(self.requested_device or "auto"),
               "dtype": host.dtype_name if host else None,
               "elapsedS": round(time.monotonic() - self.started_at, 1),
               "queue": {"running": worker.running if worker else 0, "waiting": worker.waiting if worker else 0}}
        if state == LOADING:
            out["phase"] = self.phase
        elif state == READY:
            out["loadedInS"] = round(host.loaded_in_s, 2) if host.loaded_in_s is not None else None
        else:
            error = self.error
            out["reason"] = self.reason or "unknown"
            out["hint"] = failure_hint(error, self.model_id) if error else "Restart the server."
        return out

    def unavailable_message(self) -> str:
        """Why synthesis cannot run now and what to do; '' when it can."""
        state = self.state
        if state == READY:
            return ""
        if state == LOADING:
            return (f"The TTS model {self.model_id} is still loading ({self.phase}, "
                    f"{time.monotonic() - self.started_at:.0f} s so far). Try again in a moment.")
        status = self.status()
        return (f"Speech synthesis is unavailable: the model {self.model_id} could not be loaded: "
                f"{status['reason']}. {status['hint']}")

    def require_ready(self):
        """The model, or ModelUnavailableError saying why not."""
        model = self.model
        if model is None:
            raise ModelUnavailableError(self.unavailable_message(), retryable=self.state == LOADING)
        return model

    # ---- work on the worker thread ------------------------------------------------------
    def session(self, name: str | None = None):
        """A worker session (one per client); raises ModelUnavailableError without a worker."""
        if self.worker is None:
            raise ModelUnavailableError(self.unavailable_message(), retryable=self.state == LOADING)
        return zerogpu.wrap_session(self.worker.session(name))  # identity off ZeroGPU

    def submit_call(self, fn: Callable[[], Any], session=None):
        """Run `fn()` as one step on the worker thread; returns the request handle."""
        self.require_ready()
        session = session or self.session("call")

        def job(cancel, metrics):
            yield fn()

        return session.submit(job)

    def call(self, fn: Callable[[], Any], session=None, timeout: float | None = 600.0):
        """`fn()` run on the worker thread (sharing the device queue); its result."""
        items = self.submit_call(fn, session).result(timeout)
        if not items:
            raise ModelUnavailableError("the request was cancelled before it ran", retryable=True)
        return items[0]

    async def acall(self, fn: Callable[[], Any], session=None):
        """Async `call`."""
        handle = self.submit_call(fn, session)
        async for item in handle:
            return item
        raise ModelUnavailableError("the request was cancelled before it ran", retryable=True)


def run_in_thread(fn: Callable, *args) -> "asyncio.Future":
    """Run a blocking call off the event loop."""
    return asyncio.get_running_loop().run_in_executor(None, fn, *args)
