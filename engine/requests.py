"""What a client of the engine worker holds: its session, and one handle per request.

A `Session` is one client (a WebSocket connection, an HTTP request, the UI); its requests
run in order. A `RequestHandle` is the consumer's side of one request: iterate it, sync or
async, to get its items as the worker produces them; read its position, state and metrics
at any time; cancel it. The worker (engine.worker) fills and finishes handles under its
lock; nothing here schedules.
"""
from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Iterator

from engine.errors import EngineError
from engine.metrics import RequestMetrics

if TYPE_CHECKING:
    from engine.worker import EngineWorker

# A job: `job(cancel, metrics) -> iterator`; each next() does one small unit of work and
# returns an item for the consumer or None (nothing to hand over yet).
Job = Callable[[threading.Event, RequestMetrics], Iterator[Any]]


class BusyError(EngineError):
    """Too many requests are waiting; try again shortly."""

    code = "RATE_LIMITED"


class SynthesisError(EngineError):
    """A request failed inside the worker (the cause is chained); other requests go on."""

    code = "SYNTHESIS_ERROR"

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        if code:
            self.code = code


class WorkerStoppedError(EngineError):
    """The worker is stopped or its model failed to load."""

    code = "MODEL_LOADING"


# ---------------------------------------------------------------------------------------
# requests and sessions


class RequestHandle:
    """The consumer's side of one request: iterate it (sync or async) to get its items.

    Iteration ends cleanly when the request completes or is cancelled, and raises the
    request's error if it failed. `position`, `state` and `metrics` can be read any time.
    """

    def __init__(self, worker: "EngineWorker", session: "Session", job: Job | None, request_id: int, plan=None):
        self.id = request_id
        self.session = session
        self.metrics = RequestMetrics()
        self.error: BaseException | None = None
        self.state = "waiting"  # waiting | running | done | cancelled | failed
        self._worker = worker
        self._job = job
        self._plan = plan  # a synthesis request: a row of the batched engine (else a job)
        self._utterance = None  # its engine.batch.engine.Utterance while running
        self._cancel = threading.Event()
        self._items: deque = deque()
        self._finished = False
        self._cond = threading.Condition(worker._lock)
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []
        self._iterator: Iterator | None = None
        self._delivered = 0
        self._retried = False

    @property
    def position(self) -> int | None:
        """0 running; n >= 1: n-1 requests start before this one; None once finished."""
        return self._worker._position(self)

    @property
    def done(self) -> bool:
        return self._finished

    def cancel(self) -> None:
        """Stop the request: a waiting one never starts, a running one stops within one step."""
        self._cancel.set()
        self._worker._wake(self)

    # ---- consuming ----------------------------------------------------------------
    def get(self, timeout: float | None = None) -> Any:
        """Next item; raises StopIteration at the end, TimeoutError if none in `timeout` s."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._finished, timeout):
                raise TimeoutError(f"no output from request {self.id} within {timeout} s")
            if self._items:
                return self._items.popleft()
        self._raise_if_failed()
        raise StopIteration

    def __iter__(self):
        while True:
            try:
                yield self.get()
            except StopIteration:
                return

    def __aiter__(self):
        return self

    async def __anext__(self) -> Any:
        while True:
            with self._cond:
                if self._items:
                    return self._items.popleft()
                if not self._finished:
                    loop = asyncio.get_running_loop()
                    future = loop.create_future()
                    self._waiters.append((loop, future))
            if self._finished and not self._items:
                self._raise_if_failed()
                raise StopAsyncIteration
            await future

    def result(self, timeout: float | None = None) -> list:
        """Block until the request ends and return all its (not yet consumed) items."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._finished, timeout):
                raise TimeoutError(f"request {self.id} not finished within {timeout} s")
            items = list(self._items)
            self._items.clear()
        self._raise_if_failed()
        return items

    def _raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error

    # ---- producing (worker thread, lock held) ---------------------------------------
    def _push(self, item: Any) -> None:
        self._items.append(item)
        self._delivered += 1
        self._notify()

    def _finish(self, state: str, error: BaseException | None = None) -> None:
        self.state, self.error, self._finished = state, error, True
        self._iterator = None
        self._notify()

    def _notify(self) -> None:
        self._cond.notify_all()
        waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            try:
                loop.call_soon_threadsafe(_resolve, future)
            except RuntimeError:  # the consumer's loop is closed: nobody is listening
                pass


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


class Session:
    """A client of the worker (one connection, one user): its requests run in order."""

    def __init__(self, worker: "EngineWorker", name: str):
        self.worker = worker
        self.name = name
        self.pending: deque[RequestHandle] = deque()
        self.active: RequestHandle | None = None
        self.closed = False

    def submit(self, job: Job) -> RequestHandle:
        """Queue a job (see module docstring); raises BusyError when the queue is full."""
        return self.worker._submit(self, job)

    def speak(self, text: str, **kwargs) -> RequestHandle:
        """Queue a synthesis request; items are `engine.streaming.AudioChunk`s.

        kwargs are those of `engine.streaming.stream` (voice, language, sampling,
        chunk_frames, first_chunk_frames, ...). Text and language are checked here, in
        the caller's thread, so bad input raises at once.
        """
        from engine import streaming

        plan = streaming.plan_request(text, **kwargs)
        return self.worker._submit(self, None, plan)

    def cancel_all(self) -> None:
        """Cancel this session's running and waiting requests."""
        for handle in [self.active, *self.pending]:
            if handle is not None:
                handle.cancel()

    def close(self) -> None:
        """Cancel everything and refuse further requests."""
        self.closed = True
        self.cancel_all()
