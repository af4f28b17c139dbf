"""The device worker with a real but tiny workload (small torch computations, one per step):
fair round-robin, queue positions, the busy limit, failure and OOM isolation, cancellation,
asyncio consumers, model loading and device/dtype resolution."""
import asyncio
import threading

import numpy as np
import pytest
import torch

from engine.metrics import StopReason
from engine.device import resolve_device, resolve_dtype, resolve_model_id
from engine.worker import BusyError, EngineWorker, SynthesisError, WorkerStoppedError


class Workload:
    """A job: `steps` steps, each a small seeded matmul chain yielding a float32 chunk.

    Every step is logged (on the worker thread) so tests can see the interleaving.
    fail_at: raise this exception at that step (every attempt, or only the first).
    """

    def __init__(self, name, steps=6, seed=0, log=None, fail_at=None, error=None, fail_once=False):
        self.name, self.steps, self.seed = name, steps, seed
        self.log = log if log is not None else []
        self.fail_at, self.error, self.fail_once = fail_at, error, fail_once
        self.attempts = 0
        self.done_steps = 0

    def expected(self):
        return [c for c in self._chunks()]

    def _chunks(self):
        g = torch.Generator().manual_seed(self.seed)
        x = torch.randn(1, 16, generator=g)
        w = torch.randn(16, 16, generator=g) / 4
        for _ in range(self.steps):
            x = torch.tanh(x @ w)
            yield x[0].numpy().astype(np.float32).copy()

    def __call__(self, cancel, metrics):
        self.attempts += 1
        for i, chunk in enumerate(self._chunks()):
            if i == self.fail_at and not (self.fail_once and self.attempts > 1):
                raise self.error
            self.log.append((self.name, i))
            self.done_steps += 1
            metrics.mark_audio(1, 0.08)
            yield chunk


def assert_same(chunks, expected):
    assert len(chunks) == len(expected)
    for a, b in zip(chunks, expected):
        np.testing.assert_array_equal(a, b)


def test_eight_sessions_progress_round_robin():
    log = []
    worker = EngineWorker(model=object(), device="cpu", max_active=8)
    jobs = [Workload(f"s{i}", steps=10, seed=i, log=log) for i in range(8)]
    handles = [worker.session(job.name).submit(job) for job in jobs]
    with worker:
        results = [h.result(timeout=30) for h in handles]
    for job, chunks, h in zip(jobs, results, handles):
        assert_same(chunks, job.expected())
        assert h.state == "done"
    # at every point in the worker's history no session is more than one step ahead
    counts = dict.fromkeys((j.name for j in jobs), 0)
    for name, _ in log:
        counts[name] += 1
        assert max(counts.values()) - min(counts.values()) <= 1, counts


def test_admission_is_round_robin_between_sessions_and_positions_match():
    log = []
    worker = EngineWorker(model=object(), device="cpu", max_active=1)
    a, b = worker.session("a"), worker.session("b")
    a_jobs = [Workload(f"a{i}", steps=2, log=log) for i in range(3)]
    a_handles = [a.submit(j) for j in a_jobs]
    b_handle = b.submit(Workload("b0", steps=2, log=log))
    assert [h.position for h in a_handles] == [1, 3, 4]
    assert b_handle.position == 2
    with worker:
        for h in a_handles + [b_handle]:
            h.result(timeout=30)
    starts = [name for name, step in log if step == 0]
    assert starts == ["a0", "b0", "a1", "a2"]
    assert all(h.position is None for h in a_handles)


def test_busy_limit_refuses_with_clear_error_and_recovers():
    worker = EngineWorker(model=object(), device="cpu", max_active=1, max_waiting=2,
                          max_waiting_per_session=5)
    s1, s2 = worker.session(), worker.session()
    held = [s1.submit(Workload("x", steps=1)), s2.submit(Workload("y", steps=1))]
    with pytest.raises(BusyError, match="busy") as info:
        s2.submit(Workload("z", steps=1))
    assert info.value.code == "RATE_LIMITED"
    with worker:
        for h in held:
            h.result(timeout=30)
        assert s2.submit(Workload("z", steps=1)).result(timeout=30)


def test_per_session_waiting_limit():
    worker = EngineWorker(model=object(), device="cpu", max_waiting=10, max_waiting_per_session=2)
    greedy = worker.session("greedy")
    greedy.submit(Workload("1")), greedy.submit(Workload("2"))
    with pytest.raises(BusyError, match="greedy already has 2"):
        greedy.submit(Workload("3"))
    worker.session("other").submit(Workload("4"))  # another session still gets in
    worker.stop()


def test_a_failing_request_fails_alone_and_worker_goes_on():
    log = []
    worker = EngineWorker(model=object(), device="cpu", max_active=4)
    bad = Workload("bad", steps=6, log=log, fail_at=3, error=ValueError("boom"))
    good = [Workload(f"g{i}", steps=6, seed=i, log=log) for i in range(3)]
    bad_handle = worker.session().submit(bad)
    good_handles = [worker.session().submit(j) for j in good]
    with worker:
        received = []
        with pytest.raises(SynthesisError, match="boom") as info:
            for chunk in bad_handle:
                received.append(chunk)
        assert isinstance(info.value.__cause__, ValueError)
        assert_same(received, bad.expected()[:3])  # what came before the failure is delivered
        assert bad_handle.state == "failed" and bad_handle.metrics.stop_reason is StopReason.ERROR
        for job, h in zip(good, good_handles):
            assert_same(h.result(timeout=30), job.expected())
        later = Workload("later", seed=9)
        assert_same(worker.session().submit(later).result(timeout=30), later.expected())
        assert worker.state == "ready"


def test_failure_when_the_job_cannot_even_start():
    def broken(cancel, metrics):
        raise RuntimeError("cannot build state")

    with EngineWorker(model=object(), device="cpu") as worker:
        with pytest.raises(SynthesisError, match="cannot build state"):
            worker.session().submit(broken).result(timeout=30)
        job = Workload("ok")
        assert_same(worker.session().submit(job).result(timeout=30), job.expected())


def test_out_of_memory_is_retried_once_then_fails_that_request():
    oom = torch.OutOfMemoryError
    with EngineWorker(model=object(), device="cpu") as worker:
        flaky = Workload("flaky", fail_at=0, error=oom("CUDA out of memory (test)"), fail_once=True)
        assert_same(worker.session().submit(flaky).result(timeout=30), flaky.expected())
        assert flaky.attempts == 2

        hopeless = Workload("hopeless", fail_at=0, error=oom("CUDA out of memory (test)"))
        with pytest.raises(SynthesisError) as info:
            worker.session().submit(hopeless).result(timeout=30)
        assert info.value.code == "GPU_OUT_OF_MEMORY" and hopeless.attempts == 2

        # audio already delivered cannot be taken back: no retry, that request fails
        late = Workload("late", fail_at=2, error=oom("CUDA out of memory (test)"))
        with pytest.raises(SynthesisError):
            worker.session().submit(late).result(timeout=30)
        assert late.attempts == 1
        ok = Workload("ok")
        assert_same(worker.session().submit(ok).result(timeout=30), ok.expected())


def test_cancel_stops_within_one_step_and_ends_cleanly():
    with EngineWorker(model=object(), device="cpu") as worker:
        job = Workload("long", steps=10_000)
        handle = worker.session().submit(job)
        received = 0
        for _ in handle:  # a clean end: no exception
            received += 1
            if received == 5:
                steps_at_cancel = job.done_steps
                handle.cancel()
        assert job.done_steps <= steps_at_cancel + 1
        assert handle.state == "cancelled"
        assert handle.metrics.stop_reason is StopReason.CANCELLED


def test_cancel_waiting_request_never_starts():
    log = []
    worker = EngineWorker(model=object(), device="cpu", max_active=1)
    session = worker.session()
    first = session.submit(Workload("first", steps=3, log=log))
    second = session.submit(Workload("second", steps=3, log=log))
    second.cancel()
    assert second.done and second.position is None
    with worker:
        first.result(timeout=30)
        assert list(second) == []
    assert {name for name, _ in log} == {"first"}


def test_asyncio_consumers_share_the_worker():
    jobs = [Workload(f"a{i}", steps=8, seed=i) for i in range(4)]

    async def consume(session, job):
        return [chunk async for chunk in session.submit(job)]

    async def main(worker):
        return await asyncio.gather(*(consume(worker.session(), j) for j in jobs))

    with EngineWorker(model=object(), device="cpu", max_active=4) as worker:
        results = asyncio.run(main(worker))
    for job, chunks in zip(jobs, results):
        assert_same(chunks, job.expected())


def test_model_loads_on_the_worker_thread_with_resolved_device_and_dtype(monkeypatch):
    monkeypatch.setenv("TTS_MODEL_ID", "some/model")
    monkeypatch.setenv("TTS_DTYPE", "bf16")
    seen = {}

    def loader(model_id, device, dtype):
        seen.update(model_id=model_id, device=device, dtype=dtype, thread=threading.current_thread().name)
        return "the model"

    worker = EngineWorker(device="cpu", loader=loader, name="owner")
    assert worker.state == "not_loaded"
    with worker:
        assert worker.wait_ready(10)
        assert worker.model == "the model"
    assert seen == dict(model_id="some/model", device=torch.device("cpu"), dtype=torch.bfloat16, thread="owner")
    status = worker.status()
    assert status["state"] == "stopped" and status["dtype"] == "bfloat16" and status["model_id"] == "some/model"


def test_failed_load_fails_waiting_requests_and_refuses_new_ones():
    def loader(model_id, device, dtype):
        raise OSError("no such checkpoint")

    worker = EngineWorker(model_id="missing/model", device="cpu", loader=loader)
    handle = worker.session().submit(Workload("w"))
    with worker:
        assert not worker.wait_ready(10)
        with pytest.raises(WorkerStoppedError, match="no such checkpoint"):
            handle.result(timeout=10)
        with pytest.raises(WorkerStoppedError, match="failed"):
            worker.session().submit(Workload("x"))
    assert worker.state == "failed"
    assert "no such checkpoint" in worker.status()["reason"]


def test_resolve_device_dtype_model(monkeypatch):
    monkeypatch.delenv("TTS_DEVICE", raising=False)
    monkeypatch.delenv("TTS_DTYPE", raising=False)
    monkeypatch.delenv("TTS_MODEL_ID", raising=False)
    default = resolve_device()
    assert default.type == ("cuda" if torch.cuda.is_available() else "cpu")
    from engine.layers import cpu_bf16_packing_available

    cpu_default = torch.bfloat16 if cpu_bf16_packing_available() else torch.float32
    assert resolve_dtype(None, torch.device("cpu")) is cpu_default
    assert resolve_dtype(None, torch.device("cuda")) is torch.bfloat16
    assert resolve_dtype("float16", torch.device("cpu")) is torch.float16
    assert resolve_model_id() == "Qwen/Qwen3-TTS-12Hz-0.6B-Base"
    monkeypatch.setenv("TTS_DEVICE", "cpu")
    monkeypatch.setenv("TTS_DTYPE", "fp32")
    assert resolve_device() == torch.device("cpu")
    assert resolve_dtype(None, torch.device("cpu")) is torch.float32
    assert resolve_device("cpu") == torch.device("cpu")  # an argument beats the environment
    with pytest.raises(Exception, match="bad dtype"):
        resolve_dtype("int3", torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(Exception, match="no CUDA GPU"):
            resolve_device("cuda")
