"""engine.host.ModelHost, the one owner of the model's lifecycle: loading on the caller's
thread with phases, ready or failed with the reason, and the worker reading its state from
the host instead of keeping a copy."""
import contextlib
import threading

import pytest
import torch

from engine.errors import InvalidParameterError
from engine.host import FAILED, LOADING, NOT_LOADED, READY, ModelHost
from engine.model import TTSModel
from engine.worker import EngineWorker, WorkerStoppedError


def test_default_load_fetches_then_loads_with_phases_and_download_watch(fixtures_dir):
    phases, ready_with = [], []

    @contextlib.contextmanager
    def watch(model_id, report):  # what webapp's download watcher is given
        phases.append(("watch", model_id, host.phase))
        report(1_500_000_000, 3_000_000_000)
        phases.append(("reported", host.phase))
        yield

    host = ModelHost(model_id=str(fixtures_dir / "tiny_a"), device="cpu", dtype="float32",
                     on_ready=lambda model: ready_with.append((model, host.state)), watch_download=watch)
    assert host.state == NOT_LOADED and host.model is None and "phase" in host.status()
    assert host.load()
    assert host.state == READY and host.ready and isinstance(host.model, TTSModel)
    assert host.model.device == torch.device("cpu") and host.model.dtype == torch.float32
    assert phases[0] == ("watch", str(fixtures_dir / "tiny_a"), "fetching the checkpoint files (downloading if not cached)")
    assert phases[1] == ("reported", "downloading the checkpoint files: 1.50 GB of 3.00 GB")
    assert ready_with == [(host.model, LOADING)]  # on_ready runs before anyone sees `ready`
    status = host.status()
    assert status["state"] == READY and status["reason"] is None and status["loaded_in_s"] >= 0
    assert status["dtype"] == "float32" and "phase" not in status
    assert host.load() is True  # once only: a second call does not load again
    assert ready_with == [(host.model, LOADING)]


def test_failed_load_is_recorded_not_raised():
    host = ModelHost(model_id="/no/such/checkpoint", device="cpu")
    assert host.load() is False
    assert host.state == FAILED and host.model is None
    assert "/no/such/checkpoint" in host.reason and host.status()["reason"] == host.reason
    assert host.wait(0) is False


def test_bad_device_or_dtype_raises_at_construction():
    with pytest.raises(InvalidParameterError, match="bad dtype"):
        ModelHost(model_id="x", device="cpu", dtype="int3")


def test_worker_reads_the_hosts_state_and_loads_on_its_thread():
    seen = {}
    gate = threading.Event()

    def loader(model_id, device, dtype):
        seen["thread"] = threading.current_thread().name
        gate.wait(10)
        return "the model"

    host = ModelHost(model_id="some/model", device="cpu", dtype="bf16", loader=loader)
    worker = EngineWorker(host=host, name="scheduler")
    assert worker.host is host and worker.state == NOT_LOADED
    with worker:
        for _ in range(200):
            if host.state == LOADING:
                break
            threading.Event().wait(0.01)
        assert worker.state == LOADING and host.phase == "loading weights onto cpu (bfloat16)"
        gate.set()
        assert worker.wait_ready(10)
        assert worker.model == "the model" == host.model and worker.dtype is torch.bfloat16
    assert seen["thread"] == "scheduler"
    assert worker.state == "stopped" and host.state == READY  # stopping the worker does not unload


def test_worker_on_a_failed_host_refuses_requests():
    host = ModelHost(model_id="/no/such/checkpoint", device="cpu")
    assert not host.load()
    worker = EngineWorker(host=host).start()
    try:
        assert not worker.wait_ready(5)
        with pytest.raises(WorkerStoppedError, match="failed"):
            worker.session().submit(lambda cancel, metrics: iter([1]))
        assert worker.status()["reason"] == host.reason
    finally:
        worker.stop()
