"""ZeroGPU, with Hugging Face's real `spaces` package, in the built Space folder.

A subprocess runs as a ZeroGPU Space does: SPACES_ZERO_GPU set, Gradio auto-wrap on, and
SPACES_ZERO_DEVICE_API_URL pointing at a local stub of ZeroGPU's device API. The stub's
answers schedule work onto "GPU 0". The subprocess checks that:
- the real `spaces` is imported before torch, and importing the app initialises no CUDA;
- synthesis (through EngineWorker + zerogpu.speak) and voice-prompt computation run in
  spaces.GPU functions: the device API sees schedule/allow/release with our durations, the
  work runs in a forked process, and the audio equals a direct in-process run;
- an error inside the GPU function reaches the caller with its own type;
- serving through Blocks.launch() fires ZeroGPU's startup report;
- the model runs in the Space's default dtype (bfloat16, so the main process holds the
  CPU-packed model a real ZeroGPU Space holds), and inside a forked GPU process the very
  object it inherited moves off the CPU with `zerogpu.move_model` (to `meta` here; to
  CUDA on a Space). tests/test_zerogpu_move.py shows it computes the same after a move.
This machine has no GPU and a CPU build of torch, so two things are stood in for: the
CUDA-build details that `spaces` reads at import (see CudaBuildShim), and the one step that
attaches a GPU to the forked worker (`spaces.zero.torch.init/move`: CUDA_VISIBLE_DEVICES, a
first CUDA tensor, then copying the tensors the main process sent to "cuda" under ZeroGPU's
emulation: the app sends none), which needs a GPU. In the fork torch.cuda.is_available()
is then the CPU build's False, so `_gpu_model` does not move the model there by itself;
the probe's last GPU task does. Everything else is the `spaces` package's own code.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from spaces.build import BuildOptions, build  # noqa: E402

PROBE = r'''
import importlib.util, json, os, sys, time
T0 = time.perf_counter()
TIMES = {}
torch_first = "torch" in sys.modules


def not_in_bad_fork():
    return False


class CudaBuildShim:
    """This machine's torch is the CPU build; a ZeroGPU Space's is the CUDA build. `spaces`
    reads three things of that build at import: its CUDA version string, the
    torch._C._cuda_init binding (which it replaces) and torch.cuda._is_in_bad_fork (which it
    calls in a forked process, so it must pickle; the CPU build's is a lambda). Fill in
    those that are missing as torch loads, and count every lazy CUDA initialisation attempt
    from then on."""

    def find_spec(self, name, path, target=None):
        if name != "torch":
            return None
        TORCH_IMPORTED_BY.extend(m for m in ("spaces", "space_runtime", "gradio") if m in sys.modules)
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            module.version.cuda = module.version.cuda or "12.8"
            if not hasattr(module._C, "_cuda_init"):
                def _cuda_init():
                    raise RuntimeError("Torch not compiled with CUDA enabled")
                module._C._cuda_init = _cuda_init
            if not hasattr(module._C, "_cuda_isInBadFork"):
                module.cuda._is_in_bad_fork = not_in_bad_fork
            lazy_init = module.cuda._lazy_init

            def counting_lazy_init():
                CUDA_INIT_CALLS.append(1)
                return lazy_init()

            module.cuda._lazy_init = counting_lazy_init

        spec.loader.exec_module = exec_module
        return spec


CUDA_INIT_CALLS = []
TORCH_IMPORTED_BY = []  # modules already (being) imported when torch started to load
sys.meta_path.insert(0, CudaBuildShim())
import space_runtime                                   # the entry point's first import
import spaces
import torch
report = {"torch_first": torch_first, "spaces_file": spaces.__file__, "before_torch": TORCH_IMPORTED_BY}

import app                                             # the app and everything it imports
import webapp.server, webapp.ui, webapp.model_host, webapp.voices
from space_runtime import zerogpu
from engine import streaming
from engine.sampling import SamplingParams
from engine.worker import EngineWorker
TIMES["imports"] = time.perf_counter() - T0
report["cuda_initialized_after_import"] = torch.cuda.is_initialized()
report["cuda_init_calls_at_import"] = len(CUDA_INIT_CALLS)
report["cuda_emulated"] = torch.cuda.is_available()    # ZeroGPU's emulation in the main process
report["worker_options"] = zerogpu.worker_options()
from spaces.zero import decorator
report["decorated"] = [f is decorator.decorated_cache.get(f) for f in (zerogpu._gpu_stream, zerogpu._gpu_call)]

import spaces.zero.torch as zero_torch                 # no GPU on this machine: see the docstring
zero_torch.init = lambda uuid: None
zero_torch.move = lambda callback=None: None

def load(model_id, device, dtype):
    from engine import load_model
    return load_model(model_id, device=device, dtype=dtype)

def failing_task(model):
    from engine.errors import InvalidParameterError
    raise InvalidParameterError("refused inside the GPU function")

def move_off_the_cpu(model):
    """In the forked GPU process: move the inherited model as _gpu_model moves it to CUDA."""
    modules = [m for m in vars(model).values() if isinstance(m, torch.nn.Module)]
    packed = sum(getattr(m, "packed_weight", None) is not None for part in modules for m in part.modules())
    zerogpu.move_model(model, torch.device("meta"))
    left = [n for part in modules for n, t in [*part.named_parameters(), *part.named_buffers()] if t.device.type != "meta"]
    return {"packed_before": packed, "left_on_cpu": left, "pid": os.getpid()}

import numpy as np
worker = EngineWorker(model_id=os.environ["TTS_MODEL_ID"], loader=load, **zerogpu.worker_options()).start()
assert worker.wait_ready(60), worker.load_error
TIMES["model loaded"] = time.perf_counter() - T0
report["model_device"] = str(worker.model.device)
report["model_dtype"] = str(worker.model.dtype)
report["max_active"] = worker.max_active

t = np.arange(36000) / 24000
wav = (0.3 * np.sin(2 * np.pi * 150 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
model = zerogpu.wrap_model(worker.model)                # what the app gives the prompt store
prompt = model.create_voice_prompt(wav, 24000, "A reference clip.")
direct_prompt = worker.model.create_voice_prompt(wav, 24000, "A reference clip.")
report["prompt_equal"] = bool(torch.equal(prompt.xvector, direct_prompt.xvector)
                              and torch.equal(prompt.ref_codes, direct_prompt.ref_codes))
report["prompt_model_id"] = model.model_id
TIMES["prompts"] = time.perf_counter() - T0

text = "Hello there. How are you today?"
options = dict(voice=prompt, language="english", chunk_frames=2,
               sampling=SamplingParams(seed=7, min_new_tokens=6, max_new_tokens=6))
handle = zerogpu.wrap_session(worker.session("zero")).speak(text, **options)
chunks = list(handle)
direct_stream = streaming.stream(worker.model, text, **options)
direct = list(direct_stream)
report["chunks"] = len(chunks)
report["metrics"] = [handle.metrics.frames, handle.metrics.segments, handle.metrics.stop_reason.value]
report["direct_metrics"] = [direct_stream.metrics.frames, direct_stream.metrics.segments,
                            direct_stream.metrics.stop_reason.value]
report["stream_equal"] = len(chunks) == len(direct) and all(
    np.array_equal(a.pcm, b.pcm) and a.frame_index == b.frame_index for a, b in zip(chunks, direct))
report["pcm_type"] = type(chunks[0].pcm).__name__
TIMES["speech"] = time.perf_counter() - T0

long = zerogpu.speak(worker.session("cancel"), "This sentence goes on for a while.", split=False, chunk_frames=1,
                     sampling=SamplingParams(seed=3, min_new_tokens=400, max_new_tokens=400))
received = 0
for chunk in long:
    received += 1
    if received == 2:
        long.cancel()
report["cancel"] = [long.state, received, long.metrics.frames]
TIMES["cancel"] = time.perf_counter() - T0
report["speak_seconds"] = zerogpu.seconds_for_text(text)
try:
    zerogpu.call(failing_task, seconds=15)
except Exception as e:
    report["error"] = [type(e).__name__, str(e)]
try:  # last: the GPU process may be reused, and its model is on `meta` afterwards
    report["fork_move"] = zerogpu.call(move_off_the_cpu, seconds=15)
except Exception as e:
    report["fork_move"] = [type(e).__name__, str(e)[:300]]
report["main_model_device"] = str(worker.model.device)

import gradio as gr
from fastapi import FastAPI
api = FastAPI()
@api.get("/healthz")
def healthz():
    return {"ok": True}
with gr.Blocks() as blocks:
    box = gr.Textbox()
    box.submit(lambda s: s, box, box)
report["ui_wrapped"] = [hasattr(f.fn, "zerogpu") for f in blocks.fns.values()]
from space_runtime.launch import serve
TIMES["ui built"] = time.perf_counter() - T0
serve(api, blocks, host="127.0.0.1", port=int(os.environ["PROBE_PORT"]), prevent_thread_lock=True, quiet=True,
      ssr_mode=False)
TIMES["launched"] = time.perf_counter() - T0
import httpx
report["healthz"] = httpx.get(f"http://127.0.0.1:{os.environ['PROBE_PORT']}/healthz").json()
report["queue_max_size"] = blocks._queue.max_size
blocks.close()
worker.stop()
TIMES["served"] = time.perf_counter() - T0
report["times"] = {k: round(v, 1) for k, v in TIMES.items()}
report["main_pid"] = os.getpid()
report["model_id"] = os.environ["TTS_MODEL_ID"]
print("REPORT " + json.dumps(report), flush=True)
'''


class DeviceApiStub(BaseHTTPRequestHandler):
    """ZeroGPU's device API as `spaces.zero.api.APIClient` calls it: every schedule is
    granted GPU 0 at once."""

    calls: list = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.calls.append((url.path, query))
        body = b""
        if url.path == "/schedule":
            body = json.dumps({"idle": True, "nvidiaIndex": 0, "nvidiaUUID": "GPU-stub",
                               "allowToken": f"token-{len(self.calls)}"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def device_api():
    DeviceApiStub.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), DeviceApiStub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def report(device_api, tmp_path_factory, fixtures_dir):
    tmp = tmp_path_factory.mktemp("zerogpu")
    space = build(tmp / "space", BuildOptions(hardware="zero-a10g"))
    (tmp / "probe.py").write_text(PROBE)
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPACES_", "ZEROGPU", "HF_", "GRADIO_"))}
    env.update(SPACES_ZERO_GPU="true", SPACES_ZERO_DEVICE_API_URL=f"http://127.0.0.1:{device_api.server_port}",
               SPACES_GRADIO_AUTO_WRAP="true", SYSTEM="spaces", SPACE_ID="alice/studio", HOME=str(tmp / "home"),
               PYTHONPATH=str(space), TTS_MODEL_ID=str(fixtures_dir / "tiny_a"),
               HF_HUB_OFFLINE="1", PROBE_PORT=str(port), OMP_NUM_THREADS="1", GRADIO_ANALYTICS_ENABLED="False")
    result = subprocess.run([sys.executable, str(tmp / "probe.py")], cwd=space, env=env, capture_output=True,
                            text=True, timeout=300)
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("REPORT ")]
    assert result.returncode == 0 and lines, result.stdout[-4000:] + result.stderr[-6000:]
    report = json.loads(lines[0][len("REPORT "):])
    print("\nZeroGPU probe, seconds since start:", report["times"], "cancel:", report["cancel"])
    return report


@pytest.mark.slow
def test_the_real_spaces_package_comes_before_torch_and_nothing_touches_cuda(report):
    assert not report["torch_first"]
    assert {"spaces", "space_runtime"} <= set(report["before_torch"])  # torch loaded while `spaces` imported
    assert "site-packages" in report["spaces_file"]  # Hugging Face's package, not ours
    assert report["cuda_initialized_after_import"] is False
    assert report["cuda_init_calls_at_import"] == 0
    assert report["cuda_emulated"] is True  # ZeroGPU mode was really on
    assert report["worker_options"] == {"device": "cpu", "dtype": "bfloat16", "max_active": 1}
    assert report["model_device"] == "cpu" and report["max_active"] == 1
    assert report["model_dtype"] == "torch.bfloat16"  # the Space's default: packed linears on the CPU
    assert report["decorated"] == [True, True]  # both made by spaces.GPU at import
    assert report["ui_wrapped"] == [False]  # auto-wrap is off: UI handlers stay in-process


@pytest.mark.slow
def test_synthesis_and_prompts_run_in_gpu_functions_and_match_a_direct_run(report, device_api):
    paths = [path for path, _ in DeviceApiStub.calls]
    schedules = [q for path, q in DeviceApiStub.calls if path == "/schedule"]
    allows = [q for path, q in DeviceApiStub.calls if path == "/allow"]
    releases = [q for path, q in DeviceApiStub.calls if path == "/release"]
    assert len(schedules) == 5  # prompt, speech, cancelled speech, the failing call, the move
    assert [int(q["durationSeconds"]) for q in schedules[:2]] == [15, report["speak_seconds"]]  # 1.5 s clip
    assert allows and all(int(q["pid"]) != report["main_pid"] for q in allows)  # ran in a forked worker
    assert len(releases) == 5
    assert [q["fail"] for q in releases] == ["false"] * 5  # failing_task's error was returned, not raised
    assert report["prompt_equal"] and report["stream_equal"]
    assert report["prompt_model_id"] == report["model_id"]
    assert report["chunks"] >= 3  # streamed in pieces, as they were made
    assert report["metrics"] == report["direct_metrics"] and report["metrics"][0] == 12  # 2 segments x 6
    assert report["pcm_type"] == "ndarray"
    state, received, frames = report["cancel"]
    # The forked process runs ahead of the consumer (ZeroGPU queues its yields), so some
    # frames made before the cancel reached it still arrive; then the stream ends early.
    assert state == "cancelled" and received == frames < 400
    assert report["error"] == ["InvalidParameterError", "refused inside the GPU function"]
    assert paths.index("/startup-report") > paths.index("/release")  # sent by serve() -> Blocks.launch()
    assert report["healthz"] == {"ok": True} and report["queue_max_size"] == 32


@pytest.mark.slow
def test_the_model_a_gpu_process_inherits_moves_off_the_cpu(report):
    """The object ZeroGPU's fork moves to CUDA: packed for the CPU in the main process, it
    leaves the CPU entirely in the fork, and the main process's copy stays where it was."""
    from engine.layers import cpu_bf16_packing_available

    move = report["fork_move"]
    assert isinstance(move, dict), move  # a list is the error the move raised
    assert move["left_on_cpu"] == [] and move["pid"] != report["main_pid"]
    if cpu_bf16_packing_available():
        assert move["packed_before"] > 0
    assert report["main_model_device"] == "cpu"
