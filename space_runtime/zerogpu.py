"""ZeroGPU: synthesis and voice-prompt computation inside `spaces.GPU` functions.

On a ZeroGPU Space the GPU exists only inside functions decorated with `spaces.GPU`. Such a
function runs in a process forked for it, whose arguments and results (every yield of a
generator) are pickled. So the app works like this:

- the model is loaded on the CPU of the main process (`worker_options()`). This copy is the
  one that forks inherit. ZeroGPU's CUDA emulation cannot load it: that emulation only
  works on the main thread, and the app loads the model on its worker thread;
- `_gpu_stream` / `_gpu_call` are the two decorated functions, made once at import (before
  `Blocks.launch()`, whose ZeroGPU hook reports them). They run `task(model, ...)`, where
  `model` is the inherited copy moved to CUDA once per forked process. The task must be
  a module-level function and its arguments must be picklable;
- what crosses back is CPU data only (`_to_host`: tensors -> CPU, dataclasses field by
  field), never CUDA tensors; errors cross as picklable exceptions;
- the decorated functions are generators or plain functions, never `async`, which
  ZeroGPU refuses. Durations are estimated from the text length or the clip length.

Everywhere else (a GPU or CPU Space, a local run) none of this is involved: `speak` is
`session.speak`, `wrap_model` returns the model itself and `worker_options` is empty.

Hooks for the app:
    ModelHost(..., **zerogpu.worker_options())          # device/dtype/max_active on ZeroGPU
    model = zerogpu.wrap_model(model)                    # for prompts: create_voice_prompt on the GPU
    session = zerogpu.wrap_session(worker.session(...))  # speak() on the GPU
    (or handle = zerogpu.speak(session, text, ...) at each call site)
"""
from __future__ import annotations

import contextvars
import dataclasses
import os
import pickle
import threading
from typing import Any, Callable, Iterator

from space_runtime import zero_gpu_enabled

# Seconds asked of ZeroGPU. Shorter requests are scheduled sooner, and a task that outlives
# its duration may be cut, so the estimate is generous but bounded.
STARTUP_S = 10.0  # moving the weights to the GPU in a fresh worker process, first CUDA calls
SECONDS_PER_CHAR = float(os.environ.get("ZEROGPU_SECONDS_PER_CHAR", "0.1"))
PROMPT_SECONDS_PER_AUDIO_S = 0.5
MIN_S = 15
MAX_S = int(os.environ.get("ZEROGPU_MAX_SECONDS", "120"))


def enabled() -> bool:
    """True on a ZeroGPU Space (SPACES_ZERO_GPU set)."""
    return zero_gpu_enabled()


def seconds_for_text(text: str) -> int:
    """The GPU duration to ask for when synthesizing `text`."""
    return _clamp(STARTUP_S + SECONDS_PER_CHAR * len(text))


def seconds_for_audio(audio_s: float) -> int:
    """The GPU duration to ask for when computing a voice prompt from `audio_s` seconds."""
    return _clamp(STARTUP_S + PROMPT_SECONDS_PER_AUDIO_S * audio_s)


def _clamp(seconds: float) -> int:
    return int(min(MAX_S, max(MIN_S, round(seconds))))


def gpu(fn: Callable | None = None, *, duration=None):
    """`spaces.GPU(fn, duration=...)` on ZeroGPU, the identity elsewhere.

    `duration` may be a callable that takes the function's arguments, as in `spaces.GPU`.
    """
    if fn is None:
        return lambda f: gpu(f, duration=duration)
    if not enabled():
        return fn
    import spaces

    return spaces.GPU(fn, duration=duration)


# ---------------------------------------------------------------------------------------
# the model, as seen from inside a GPU function


_model: Any = None  # the main process's CPU copy, registered by wrap_model()
_on_device: dict[int, Any] = {}  # id(model) -> the same model on CUDA, in this process


def worker_options() -> dict:
    """Arguments for ModelHost/EngineWorker on ZeroGPU ({} elsewhere).

    device "cpu": the main process keeps the model on the CPU. `spaces` makes
    torch.cuda.is_available() say True there, so the default device would be "cuda".
    dtype: the GPU's (bfloat16), since the model runs on the GPU.
    max_active 1: every request holds its own GPU call, and the worker thread blocks in
    each step while ZeroGPU schedules a GPU, so one request's wait must not stall the
    streams of others.
    """
    if not enabled():
        return {}
    return {"device": "cpu", "dtype": os.environ.get("TTS_DTYPE") or "bfloat16", "max_active": 1}


def set_model(model) -> None:
    """Register the loaded model that GPU tasks use (`wrap_model` does this)."""
    global _model
    _model = model
    _on_device.clear()


def _gpu_model():
    """The registered model, moved to CUDA once per process when CUDA is there (inside a
    ZeroGPU fork). Elsewhere it is the model as it is."""
    import torch

    if _model is None:
        raise RuntimeError("no TTS model is registered for GPU tasks yet (space_runtime.zerogpu.wrap_model)")
    if not (enabled() and torch.cuda.is_available()):
        return _model
    key = id(_model)
    if key not in _on_device:
        _on_device[key] = move_model(_model, torch.device("cuda"))
    return _on_device[key]


def move_model(model, device):
    """Move an engine model to `device`: its `to()` if it has one, else every nn.Module
    attribute (talker, code predictor, encoders, codec decoder) in place."""
    import torch

    if callable(getattr(model, "to", None)):
        moved = model.to(device)
        return model if moved is None else moved
    for value in vars(model).values():
        if isinstance(value, torch.nn.Module):
            value.to(device)
    return model


def _to_host(value):
    """`value` with every tensor on the CPU, safe to pickle out of a GPU process."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: _to_host(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
        return dataclasses.replace(value, **changes)
    if isinstance(value, (list, tuple)):
        return type(value)(_to_host(v) for v in value)
    if isinstance(value, dict):
        return {k: _to_host(v) for k, v in value.items()}
    return value


def _portable(error: BaseException) -> BaseException:
    """The error itself if it survives pickling, else a RuntimeError with its text."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # noqa: BLE001 - any unpicklable error is replaced, not raised
        return RuntimeError(f"{type(error).__name__}: {error}")


# ---------------------------------------------------------------------------------------
# the two decorated functions (made at import, before Blocks.launch)


def _stream_duration(task, args, kwargs, state, seconds):
    return seconds


def _call_duration(task, args, kwargs, seconds):
    return seconds


@gpu(duration=_stream_duration)
def _gpu_stream(task, args, kwargs, state, seconds):
    """Run the generator `task(model, *args, cancel=, metrics=, **kwargs)` on the GPU.

    Yields ("item", item, metrics state) per item, or ("error", exception, state) once.
    `state` is the caller's metrics object (a pickled copy here), updated as it runs and
    sent back with each item. Closing this generator (ZeroGPU does it when the caller
    closes its side) closes the task, which frees its state. That is how cancelling works.
    """
    metrics = state
    steps = None
    try:
        steps = task(_gpu_model(), *args, cancel=threading.Event(), metrics=metrics, **kwargs)
        for item in steps:
            yield "item", _to_host(item), _state(metrics)
    except Exception as e:  # noqa: BLE001 - sent to the caller, who raises it
        yield "error", _portable(e), _state(metrics)
    finally:
        if steps is not None:
            steps.close()


@gpu(duration=_call_duration)
def _gpu_call(task, args, kwargs, seconds):
    """`task(model, *args, **kwargs)` on the GPU: ("ok", result) or ("error", exception)."""
    try:
        return "ok", _to_host(task(_gpu_model(), *args, **kwargs))
    except Exception as e:  # noqa: BLE001 - sent to the caller, who raises it
        return "error", _portable(e)


def _state(metrics):
    return dict(vars(metrics)) if metrics is not None and hasattr(metrics, "__dict__") else None


# ---------------------------------------------------------------------------------------
# what the app calls


def call(task: Callable, *args, seconds: int, **kwargs):
    """`task(model, *args, **kwargs)` on the GPU (in-process when not on ZeroGPU)."""
    kind, value = _gpu_call(task, args, kwargs, seconds)
    if kind == "error":
        raise value
    return value


def job(task: Callable, *args, seconds: int, **kwargs) -> Callable[[threading.Event, Any], Iterator]:
    """An EngineWorker job that runs the generator `task(model, *args, cancel=, metrics=,
    **kwargs)` on the GPU (engine.streaming.stream_steps has that shape).

    The caller's context (Gradio's request, whose visitor ZeroGPU bills for quota) is
    captured now and every step runs in it, although the worker thread runs the steps.
    Items and metrics come back as the task produces them. Cancelling the request closes
    the job, and the task stops at its next step.
    """
    context = contextvars.copy_context()

    def run(cancel: threading.Event, metrics) -> Iterator:
        steps = _gpu_stream(task, args, kwargs, metrics, seconds)
        return _relay(context, steps, metrics)

    return run


def _relay(context: contextvars.Context, steps, metrics) -> Iterator:
    try:
        while True:
            try:
                kind, value, state = context.run(next, steps)
            except StopIteration:
                return
            if state is not None and metrics is not None:
                vars(metrics).update(state)
            if kind == "error":
                raise value
            yield value
    finally:
        context.run(steps.close)


def speak(session, text: str, **kwargs):
    """`session.speak(text, **kwargs)`, with the synthesis on the GPU when on ZeroGPU.

    Same arguments, same RequestHandle, same AudioChunks. Bad input still raises here, in
    the caller's thread, before any GPU is asked for. The GPU task uses the model of the
    session's worker, registered when the request starts (the model is loaded by then).
    """
    if not enabled():
        return session.speak(text, **kwargs)
    from engine import streaming

    plan = streaming.plan_request(text, **kwargs)
    steps = job(streaming.stream_steps, plan, seconds=seconds_for_text(plan.text))
    worker = session.worker

    def run(cancel, metrics):
        if worker.model is not None and worker.model is not _model:
            set_model(worker.model)
        return steps(cancel, metrics)

    return session.submit(run)


class GpuSession:
    """An engine worker Session whose `speak` runs on the GPU (see `speak`); everything else
    is the session's own."""

    def __init__(self, session):
        self.__dict__["_session"] = session

    def __getattr__(self, name):
        return getattr(self.__dict__["_session"], name)

    def speak(self, text: str, **kwargs):
        return speak(self.__dict__["_session"], text, **kwargs)


def wrap_session(session):
    """On ZeroGPU a GpuSession around `session`, elsewhere `session` itself."""
    if not enabled() or session is None:
        return session
    return GpuSession(session)


def _create_voice_prompt(model, wav, sr, transcript, kwargs):
    return model.create_voice_prompt(wav, sr, transcript, **kwargs)


class GpuModel:
    """A loaded model whose `create_voice_prompt` runs on the GPU. Everything else is the
    model's own (id, revision, config, defaults), read from the CPU copy."""

    def __init__(self, model):
        self.__dict__["_model"] = model

    def __getattr__(self, name):
        return getattr(self.__dict__["_model"], name)

    def create_voice_prompt(self, wav, sr, transcript=None, **kwargs):
        import numpy as np

        wav = np.asarray(wav, dtype=np.float32)
        seconds = seconds_for_audio(wav.shape[-1] / float(sr))
        return call(_create_voice_prompt, wav, sr, transcript, kwargs, seconds=seconds)


def wrap_model(model):
    """Register `model` for GPU tasks and return what the app should use for voice prompts:
    on ZeroGPU a GpuModel, elsewhere `model` itself."""
    if not enabled() or model is None:
        return model
    set_model(model)
    return GpuModel(model)
