"""One worker thread that schedules the requests of many sessions on one model.

Sessions (a WebSocket connection, an HTTP request, the UI) submit requests from any thread
or asyncio task and consume the results as they are produced. The worker runs *jobs*:
a job is a function `job(cancel, metrics) -> iterator` whose every `next()` does one
small unit of work (one codec frame for synthesis) and returns an item for the consumer
(an audio chunk) or None (nothing to hand over yet).

Scheduling:
- Each session runs at most one request at a time (its requests are spoken in order);
  up to `max_active` sessions run at once. Synthesis requests (`Session.speak`) are the
  rows of one batched step (engine.batch.engine.BatchEngine, its pool allocated once per
  worker): each worker iteration advances every one of them by one frame in one forward
  pass; a new request joins the running batch at a frame boundary. Other jobs
  (`Session.submit`) advance one step each per iteration, in turn.
- A free slot goes to the waiting session served least recently (round-robin), so a
  session that queues many requests cannot starve the others.
- `RequestHandle.position` is the estimated number of requests that start before this
  one plus 1 (0 once running), following that round-robin order.
- At most `max_waiting` requests wait in all (`max_waiting_per_session` per session);
  beyond that `submit` raises `BusyError` at once.
- A job that raises fails its own request only. On CUDA out-of-memory the worker empties
  the CUDA cache and restarts the request once if it has not delivered anything yet;
  otherwise (or on a second OOM) that request fails with code GPU_OUT_OF_MEMORY. An OOM in
  the batched step also halves `max_active` (the batch), so the retried requests fit.
- Cancelling stops a running request before its next step (within one frame) and closes
  its iterator, which frees its state; the consumer sees a clean end of stream.

The model, its device, dtype, loading and state belong to an `engine.host.ModelHost`; the
worker only schedules. It loads the host's model on its own thread when it starts (requests
submitted meanwhile wait) and fails them if the load fails. The decode context per request (`capacity`: prompt + frames) comes from TTS_MAX_CONTEXT,
else 1024 positions on CPU and 2048 on CUDA; `max_active` is cut to what the device's free
memory holds (engine.batch.pool.DecodePool.bytes_per_slot).
"""
from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from typing import Callable

import torch

from engine.errors import EngineError, InvalidParameterError
from engine.host import FAILED, READY, ModelHost, default_capacity
from engine.metrics import RequestMetrics, StopReason
from engine.requests import (BusyError, Job, RequestHandle, Session, SynthesisError,  # noqa: F401 - re-exported
                             WorkerStoppedError)

log = logging.getLogger(__name__)

_OOM_ERRORS = tuple({getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError),
                     torch.cuda.OutOfMemoryError})


class EngineWorker:
    """Runs the requests of all sessions on the model of one `ModelHost` (module docstring).

    host: the model's owner; or, without one, a host is made from `model` (already loaded)
        or `model_id`/`device`/`dtype`/`loader` (see engine.host.ModelHost).
    Use `start()` (or a `with` block), then `session()` per client.
    """

    def __init__(self, model=None, *, host: ModelHost | None = None, model_id: str | None = None, device=None,
                 dtype=None, max_active: int = 4, max_waiting: int = 32, max_waiting_per_session: int = 8,
                 loader: Callable | None = None, name: str = "tts-worker", capacity: int | None = None):
        if max_active < 1 or max_waiting < 0 or max_waiting_per_session < 0:
            raise InvalidParameterError("max_active must be >= 1 and the waiting limits >= 0")
        self.host = host or ModelHost(model, model_id=model_id, device=device, dtype=dtype, loader=loader)
        self.max_active, self.max_waiting = max_active, max_waiting
        self.capacity = capacity or default_capacity(self.host.device)
        self.engine = None  # the BatchEngine, made on the worker thread at the first synthesis
        self.max_waiting_per_session = max_waiting_per_session
        self._lock = threading.RLock()
        self._work = threading.Condition(self._lock)
        self._rr: deque[Session] = deque()  # sessions, least recently started first
        self._active: list[RequestHandle] = []
        self._ids = itertools.count(1)
        self._sessions = itertools.count(1)
        self._stopping = False
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    # ---- lifecycle ------------------------------------------------------------------
    def start(self) -> "EngineWorker":
        if not self._thread.is_alive():
            self._thread.start()
        return self

    def stop(self, timeout: float | None = 10.0) -> None:
        """Cancel every request and end the thread."""
        with self._lock:
            self._stopping = True
            for handle in self._all_requests():
                handle._cancel.set()
            self._work.notify_all()
        if not self._thread.is_alive():
            self._finish_all()
        elif threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def __enter__(self) -> "EngineWorker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- the host's model and state, read through ---------------------------------------
    @property
    def model(self):
        return self.host.model

    @property
    def device(self) -> torch.device:
        return self.host.device

    @property
    def dtype(self) -> torch.dtype:
        return self.host.dtype

    @property
    def model_id(self) -> str | None:
        return self.host.model_id

    @property
    def load_error(self) -> BaseException | None:
        return self.host.error

    @property
    def state(self) -> str:
        """The host's state (not_loaded | loading | ready | failed), or stopped once this
        worker has stopped (a failed load stays failed)."""
        state = self.host.state
        return "stopped" if self._stopped and state != FAILED else state

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the model is loaded (True) or failed, or this worker stopped (False)."""
        with self._lock:
            self._work.wait_for(lambda: self.state in (READY, FAILED, "stopped"), timeout)
            return self.state == READY

    def session(self, name: str | None = None) -> Session:
        return Session(self, name or f"session-{next(self._sessions)}")

    @property
    def waiting(self) -> int:
        with self._lock:
            return sum(len(s.pending) for s in self._rr)

    @property
    def running(self) -> int:
        with self._lock:
            return len(self._active)

    def status(self) -> dict:
        """For health checks: state (not_loaded | loading | ready | failed | stopped), the
        failure reason, device, dtype, running and waiting requests."""
        with self._lock:
            return dict(state=self.state, reason=self.host.reason, model_id=self.model_id,
                        device=str(self.device), dtype=self.host.dtype_name, running=len(self._active),
                        waiting=self.waiting)

    # ---- submission and queue positions ------------------------------------------------
    def _submit(self, session: Session, job: Job | None, plan=None) -> RequestHandle:
        with self._lock:
            if self._stopping or self.state in (FAILED, "stopped"):
                reason = f": {self.load_error}" if self.load_error else ""
                raise WorkerStoppedError(f"the synthesis worker is {self.state}{reason}")
            if session.closed:
                raise InvalidParameterError(f"{session.name} is closed")
            if self.waiting >= self.max_waiting:
                raise BusyError(f"the server is busy: {self.max_waiting} requests are already "
                                "waiting; try again in a few seconds")
            if len(session.pending) >= self.max_waiting_per_session:
                raise BusyError(f"{session.name} already has {len(session.pending)} requests "
                                "waiting; wait for them to finish or cancel them")
            handle = RequestHandle(self, session, job, next(self._ids), plan)
            session.pending.append(handle)
            if session not in self._rr:
                self._rr.append(session)
            self._work.notify_all()
            return handle

    def _position(self, handle: RequestHandle) -> int | None:
        with self._lock:
            if handle._finished:
                return None
            if handle.state == "running":
                return 0
            session = handle.session
            index = session.pending.index(handle)
            order = list(self._rr)
            me = order.index(session)
            ahead = index  # this session's own earlier requests
            for i, other in enumerate(order):
                if other is not session:  # one start per round each, in round-robin order
                    ahead += min(len(other.pending), index + (1 if i < me else 0))
            return ahead + 1

    def _wake(self, handle: RequestHandle) -> None:
        with self._lock:
            if handle.state == "waiting" and handle in handle.session.pending:
                handle.session.pending.remove(handle)
                handle.metrics.finish(StopReason.CANCELLED)
                handle._finish("cancelled")
            self._work.notify_all()

    def _all_requests(self) -> list[RequestHandle]:
        return self._active + [h for s in self._rr for h in s.pending]

    # ---- the thread -----------------------------------------------------------------
    def _run(self) -> None:
        if not self._load():
            return
        with torch.inference_mode():
            while True:
                with self._lock:
                    self._admit()
                    if not self._active:
                        if self._stopping:
                            break
                        self._work.wait()
                        continue
                    batch = list(self._active)
                synthesis = [h for h in batch if h._plan is not None]
                if synthesis:
                    self._tick(synthesis)  # one frame for every synthesis request, in one pass
                for handle in batch:  # other jobs: one step each, round-robin progress
                    if handle._plan is None:
                        self._step(handle)
        self._finish_all()

    def _finish_all(self) -> None:
        with self._lock:
            self._stopped = True
            for handle in self._all_requests():
                handle.metrics.finish(StopReason.CANCELLED)
                handle._finish("cancelled")
            for session in self._rr:
                session.pending.clear()
            self._active.clear()
            self._work.notify_all()

    def _load(self) -> bool:
        """Load the host's model on this thread (if not loaded yet); on failure fail every
        waiting request and refuse new ones."""
        if self.host.load():
            with self._lock:
                self._work.notify_all()
            return True
        with self._lock:
            error = WorkerStoppedError(f"the model {self.model_id} failed to load: {self.host.error}")
            for handle in self._all_requests():
                handle._finish("failed", error)
            for session in self._rr:
                session.pending.clear()
            self._work.notify_all()
        return False

    def _admit(self) -> None:
        """Fill free slots from waiting sessions, least recently served first (lock held)."""
        for session in list(self._rr):
            if len(self._active) >= self.max_active:
                return
            if session.active is not None or not session.pending:
                continue
            handle = session.pending.popleft()
            session.active = handle
            handle.state = "running"
            handle.metrics.mark_started()
            self._active.append(handle)
            self._rr.remove(session)
            self._rr.append(session)
        for session in [s for s in self._rr if not s.pending and s.active is None]:
            self._rr.remove(session)

    # ---- synthesis: rows of the batched engine -------------------------------------------
    def _batch_engine(self):
        if self.engine is None:
            from engine.batch.engine import BatchEngine

            slots = self.host.fit_slots(self.max_active, self.capacity)
            if slots < self.max_active:
                log.warning("max_active %d cut to %d: that is what free memory holds at %d positions each",
                            self.max_active, slots, self.capacity)
                self.max_active = slots
            self.engine = BatchEngine(self.model, slots=slots, capacity=self.capacity)
        return self.engine

    def _tick(self, handles: list[RequestHandle]) -> None:
        """Start newly admitted synthesis requests, then advance all of them by one frame."""
        try:
            engine = self._batch_engine()
        except Exception as e:  # noqa: BLE001 - e.g. a model without its codec decoder
            for handle in handles:
                self._fail(handle, e)
            return
        for handle in handles:
            if handle._utterance is None and not handle._cancel.is_set():
                if engine.free_slots == 0:
                    continue  # max_active was cut after an OOM: it waits for a slot
                handle._utterance = engine.start(handle._plan, handle._cancel, handle.metrics)
        try:
            touched = engine.tick()
        except _OOM_ERRORS as e:
            self._batch_out_of_memory(handles, e)
            return
        except Exception as e:  # noqa: BLE001 - the step itself failed: its rows cannot go on
            log.exception("the batched step failed")
            for handle in handles:
                if handle._utterance is not None:
                    engine.release(handle._utterance)
                    self._fail(handle, e)
            return
        by_slot = {h._utterance.slot: h for h in handles if h._utterance is not None}
        for utt in touched:
            handle = by_slot.get(utt.slot)
            if handle is None or handle._utterance is not utt:
                continue
            with self._lock:
                while utt.chunks:
                    handle._push(utt.chunks.popleft())
            if utt.done:
                handle._utterance = None
                if utt.error is not None:
                    self._fail(handle, utt.error)
                elif handle._cancel.is_set():
                    self._end(handle, "cancelled", reason=StopReason.CANCELLED)
                else:
                    self._end(handle, "done")
        for handle in handles:  # cancelled before they started
            if handle._utterance is None and handle._cancel.is_set() and not handle._finished:
                self._end(handle, "cancelled", reason=StopReason.CANCELLED)

    def _batch_out_of_memory(self, handles: list[RequestHandle], error: BaseException) -> None:
        """The batched step ran out of GPU memory: free everything, halve the batch, restart
        the requests that have delivered nothing yet (once), fail the others."""
        self.host.empty_cache()
        running = [h for h in handles if h._utterance is not None]
        self.max_active = max(1, len(running) // 2)
        log.warning("the batched step ran out of GPU memory with %d requests; batch cut to %d",
                    len(running), self.max_active)
        for handle in running:
            self.engine.release(handle._utterance)
            handle._utterance = None
            if not handle._retried and handle._delivered == 0:
                handle._retried = True
                handle.metrics = RequestMetrics(submitted_at=handle.metrics.submitted_at)
                handle.metrics.mark_started()
                continue
            failure = SynthesisError(f"out of GPU memory: {error}", code="GPU_OUT_OF_MEMORY")
            failure.__cause__ = error
            self._end(handle, "failed", error=failure, reason=StopReason.ERROR)

    def _fail(self, handle: RequestHandle, e: BaseException) -> None:
        log.warning("request %s of %s failed: %r", handle.id, handle.session.name, e)
        error = e if isinstance(e, EngineError) else SynthesisError(f"synthesis failed: {e}")
        if error is not e:
            error.__cause__ = e
        self._end(handle, "failed", error=error, reason=StopReason.ERROR)

    def _step(self, handle: RequestHandle) -> None:
        """Advance one request by one step; every failure ends that request only."""
        if handle._cancel.is_set():
            self._end(handle, "cancelled", reason=StopReason.CANCELLED)
            return
        try:
            if handle._iterator is None:
                handle._iterator = iter(handle._job(handle._cancel, handle.metrics))
            item = next(handle._iterator)
        except StopIteration:
            if handle._cancel.is_set():
                self._end(handle, "cancelled", reason=StopReason.CANCELLED)
            else:
                self._end(handle, "done")
            return
        except _OOM_ERRORS as e:
            self._out_of_memory(handle, e)
            return
        except Exception as e:  # noqa: BLE001 - isolate the failure to this request
            self._fail(handle, e)
            return
        if item is not None:
            with self._lock:
                handle._push(item)

    def _out_of_memory(self, handle: RequestHandle, error: BaseException) -> None:
        _close(handle)
        self.host.empty_cache()
        if not handle._retried and handle._delivered == 0:
            log.warning("request %s ran out of GPU memory; retrying once", handle.id)
            handle._retried = True
            submitted = handle.metrics.submitted_at
            handle.metrics = RequestMetrics(submitted_at=submitted)
            handle.metrics.mark_started()
            return
        failure = SynthesisError(f"out of GPU memory: {error}", code="GPU_OUT_OF_MEMORY")
        failure.__cause__ = error
        self._end(handle, "failed", error=failure, reason=StopReason.ERROR)

    def _end(self, handle: RequestHandle, state: str, error: BaseException | None = None,
             reason: StopReason | None = None) -> None:
        _close(handle)
        if handle._utterance is not None:
            self.engine.release(handle._utterance)
            handle._utterance = None
        with self._lock:
            handle.metrics.finish(reason)
            if handle in self._active:
                self._active.remove(handle)
            if handle.session.active is handle:
                handle.session.active = None
            handle._finish(state, error)
            self._work.notify_all()


def _close(handle: RequestHandle) -> None:
    """Close the request's iterator so its generator frees its state now."""
    iterator, handle._iterator = handle._iterator, None
    close = getattr(iterator, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # noqa: BLE001 - a failing cleanup must not take the worker down
            log.exception("closing request %s failed", handle.id)
