"""The one owner of the model's lifecycle: which model, on which device and dtype, its
loading and its state.

A `ModelHost` is `not_loaded` until `load()` runs (on whatever thread calls it: the engine
worker calls it on its own thread, so an app answers at once), then `loading` with a
`phase` a person can read, then `ready` (the model) or `failed` (the error). Nothing else
keeps a copy of that state: the worker and the web app read it from here.

The device's memory facts that decide how many requests fit at once (`default_capacity`,
`free_memory`, `fit_slots`) live here too, next to the device they describe.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from typing import Any, Callable, ContextManager

import torch

from engine.device import resolve_device, resolve_dtype, resolve_model_id
from engine.errors import InvalidParameterError

log = logging.getLogger(__name__)

NOT_LOADED, LOADING, READY, FAILED = "not_loaded", "loading", "ready", "failed"

# watch_download(model_id, report) -> a context manager around the checkpoint fetch, where
# report(bytes_done, bytes_total_or_None) is called as files arrive (e.g. webapp.download_watch)
DownloadWatcher = Callable[[str, Callable[[int, "int | None"], None]], ContextManager]


class ModelHost:
    """A model and its state: loading, ready or failed (module docstring).

    model: an already loaded model (the host is then `ready` at once), or None to load
        `model_id` (None: $TTS_MODEL_ID, then the 0.6B Base model) in `load()`.
    device, dtype: torch values or names; None: the environment, then the defaults
        (engine.device). A bad value raises InvalidParameterError here.
    loader: `loader(model_id, device=, dtype=) -> model`, which then does all of the work;
        by default the checkpoint is fetched first (`phase` says so; `watch_download`
        reports its progress), then `engine.load_model` reads it.
    on_ready: called with the model once loaded, before the state becomes `ready`.
    """

    def __init__(self, model=None, *, model_id: str | None = None, device=None, dtype=None,
                 loader: Callable | None = None, on_ready: Callable[[Any], None] | None = None,
                 watch_download: DownloadWatcher | None = None):
        self.model = model
        self.model_id = getattr(model, "model_id", None) if model is not None else resolve_model_id(model_id)
        self.device = resolve_device(device or getattr(model, "device", None))
        self.dtype = resolve_dtype(dtype or getattr(model, "dtype", None), self.device)
        self.state = READY if model is not None else NOT_LOADED
        self.phase = "ready" if model is not None else "waiting to load"
        self.error: BaseException | None = None
        self.started_at = time.monotonic()
        self.loaded_in_s: float | None = 0.0 if model is not None else None
        self._loader, self._on_ready, self._watch_download = loader, on_ready, watch_download
        self._changed = threading.Condition()

    # ---- loading --------------------------------------------------------------------
    def load(self) -> bool:
        """Load the model on the calling thread (once); True when it is ready. A failure is
        recorded (state `failed`, `error`) and logged, never raised."""
        with self._changed:
            if self.state != NOT_LOADED:
                return self.state == READY
            self.state, self.started_at = LOADING, time.monotonic()
        try:
            model = self._load()
            if self._on_ready is not None:
                self._on_ready(model)
        except Exception as e:  # noqa: BLE001 - any load failure is reported, never raised here
            log.exception("loading %s failed", self.model_id)
            self._set(state=FAILED, error=e, phase="failed")
            return False
        self.loaded_in_s = time.monotonic() - self.started_at
        log.info("model %s ready on %s in %.1f s", self.model_id, self.device, self.loaded_in_s)
        self._set(model=model, state=READY, phase="ready")
        return True

    def _load(self):
        if self._loader is not None:
            self.phase = f"loading weights onto {self.device} ({self.dtype_name})"
            return self._loader(self.model_id, device=self.device, dtype=self.dtype)
        from engine.checkpoint import resolve_checkpoint
        from engine.model import load_model

        self.phase = "fetching the checkpoint files (downloading if not cached)"
        watch = self._watch_download(self.model_id, self._show_download) if self._watch_download \
            else contextlib.nullcontext()
        with watch:
            resolve_checkpoint(self.model_id)
        self.phase = f"loading weights onto {self.device} ({self.dtype_name})"
        return load_model(self.model_id, device=self.device, dtype=self.dtype)

    def _show_download(self, done: int, total: int | None) -> None:
        of = f" of {total / 1e9:.2f} GB" if total else ""
        self.phase = f"downloading the checkpoint files: {done / 1e9:.2f} GB{of}"

    def _set(self, **fields) -> None:
        with self._changed:
            for name, value in fields.items():
                setattr(self, name, value)
            self._changed.notify_all()

    # ---- state ----------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self.state == READY

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    @property
    def reason(self) -> str | None:
        """The load failure, in words; None unless failed."""
        return None if self.error is None else str(self.error)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until loaded (True) or failed (False); False on timeout."""
        with self._changed:
            self._changed.wait_for(lambda: self.state in (READY, FAILED), timeout)
            return self.state == READY

    def status(self) -> dict:
        """state, phase (while loading), reason (when failed), model id, device, dtype, and
        how long the load took or has taken so far."""
        out = dict(state=self.state, model_id=self.model_id, device=str(self.device), dtype=self.dtype_name,
                   reason=self.reason, elapsed_s=round(time.monotonic() - self.started_at, 1),
                   loaded_in_s=None if self.loaded_in_s is None else round(self.loaded_in_s, 2))
        if self.state in (NOT_LOADED, LOADING):
            out["phase"] = self.phase
        return out

    # ---- the device's memory -------------------------------------------------------------
    def empty_cache(self) -> None:
        """Give cached, unused device memory back (after an out-of-memory)."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def fit_slots(self, requested: int, capacity: int) -> int:
        """How many rows of `capacity` positions the loaded model's device holds (fit_slots)."""
        return fit_slots(self.model, requested, capacity)


def default_capacity(device) -> int:
    """Talker positions per request (prompt + frames): TTS_MAX_CONTEXT, else by device. A
    segment is at most 516 frames (engine.text_split) after a prompt of a few hundred rows."""
    value = os.environ.get("TTS_MAX_CONTEXT")
    if value:
        if not value.isdigit() or not 64 <= int(value) <= 32768:
            raise InvalidParameterError(f"TTS_MAX_CONTEXT must be an integer in [64, 32768], got {value!r}")
        return int(value)
    return 2048 if torch.device(device).type == "cuda" else 1024


def free_memory(device) -> int:
    """Bytes free on `device` now (CUDA: the driver's count; CPU: available RAM)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def fit_slots(model, requested: int, capacity: int, headroom: float = 0.5) -> int:
    """The largest batch (<= requested) whose decode state fits in `headroom` of free memory
    (the rest is left for activations, the codec and everything else)."""
    from engine.batch.pool import DecodePool

    per_slot = DecodePool.bytes_per_slot(model.talker, model.predictor, capacity) + (8 << 20)  # + codec state
    return max(1, min(requested, int(free_memory(model.device) * headroom // per_slot)))
