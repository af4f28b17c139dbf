"""The model that ZeroGPU moves to the GPU can be moved, and computes the same after a move.

On ZeroGPU the main process loads the model on the CPU in the GPU's dtype (bfloat16,
`zerogpu.worker_options()`), where the engine packs bf16 linears for oneDNN; a forked GPU
process then calls `zerogpu.move_model(model, "cuda")` on that very object. This machine
has no GPU, so the same call moves it elsewhere: to the `meta` device (every tensor must
leave the CPU: an opaque oneDNN tensor cannot), and to float32, next to a twin loaded the
same way but never packed and moved the same way: every tensor and so the codes and the
audio must be the twin's. (A round trip back to bf16 would not do: it also rounds the
float32 RoPE buffers, which a move to CUDA keeps.)
"""
from __future__ import annotations

import pytest
import torch

import engine.layers
from engine import SamplingParams, load_model
from engine.layers import cpu_bf16_packing_available
from engine.voice_prompt import VoicePrompt
from engine.worker import EngineWorker
from space_runtime import zerogpu

TEXT = "Moving the model must not change a thing."


@pytest.fixture
def zerogpu_model(monkeypatch, fixtures_dir):
    """The object ZeroGPU moves: loaded as the app loads it on ZeroGPU (EngineWorker with
    `worker_options()`, the default loader) and registered by `wrap_model`."""
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.delenv("TTS_DTYPE", raising=False)
    options = zerogpu.worker_options()
    assert options["device"] == "cpu" and options["dtype"] == "bfloat16"
    worker = EngineWorker(model_id=str(fixtures_dir / "tiny_a"), **options).start()
    try:
        assert worker.wait_ready(60), worker.load_error
        zerogpu.wrap_model(worker.model)
    finally:
        worker.stop()
    yield zerogpu._model
    zerogpu.set_model(None)


def modules_of(model) -> dict[str, torch.nn.Module]:
    return {name: value for name, value in vars(model).items() if isinstance(value, torch.nn.Module)}


def codes_and_audio(model):
    voice = VoicePrompt(xvector=torch.linspace(-1, 1, model.config.talker.decoder.hidden_size), ref_codes=None,
                        ref_text=None, mode="xvector", model_id=model.model_id)
    codes = model.generate_codes(TEXT, voice=voice, language="english",
                                 sampling=SamplingParams.greedy(max_new_tokens=12, min_new_tokens=12))
    return codes, model.decode(codes)


@pytest.mark.skipif(not cpu_bf16_packing_available(), reason="no oneDNN bf16 on this CPU: nothing is packed")
def test_the_zerogpu_model_leaves_the_cpu_entirely(zerogpu_model):
    assert zerogpu_model.dtype == torch.bfloat16 and zerogpu_model.device.type == "cpu"
    moved = zerogpu.move_model(zerogpu_model, torch.device("meta"))
    assert moved is zerogpu_model
    left_behind = [f"{part}.{name}" for part, module in modules_of(moved).items()
                   for name, tensor in [*module.named_parameters(), *module.named_buffers()]
                   if tensor.device.type != "meta"]
    assert left_behind == []
    assert moved.device.type == "meta"


@pytest.mark.skipif(not cpu_bf16_packing_available(), reason="no oneDNN bf16 on this CPU: nothing is packed")
def test_the_zerogpu_model_gives_the_same_codes_after_a_move(zerogpu_model, fixtures_dir, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(engine.layers, "cpu_bf16_packing_available", lambda: False)
        twin = load_model(fixtures_dir / "tiny_a", device="cpu", dtype=torch.bfloat16)
    assert packed_count(zerogpu_model) > 0 and packed_count(twin) == 0
    codes, audio = codes_and_audio(zerogpu_model)
    assert codes.shape == (12, 16) and codes.unique().numel() > 16
    assert torch.equal(codes, codes_and_audio(twin)[0])  # packed and plain bf16 agree on the CPU

    for model in (zerogpu_model, twin):
        assert zerogpu.move_model(model, torch.float32) is model
    assert zerogpu_model.dtype == torch.float32 and packed_count(zerogpu_model) == 0
    for part, module in modules_of(twin).items():
        moved = dict(modules_of(zerogpu_model)[part].state_dict(keep_vars=True))
        for name, tensor in module.state_dict(keep_vars=True).items():
            assert moved[name].dtype == tensor.dtype and torch.equal(moved[name], tensor), f"{part}.{name}"
    moved_codes, moved_audio = codes_and_audio(zerogpu_model)
    twin_codes, twin_audio = codes_and_audio(twin)
    assert torch.equal(moved_codes, twin_codes) and (moved_audio == twin_audio).all()


def packed_count(model) -> int:
    return sum(1 for module in modules_of(model).values() for m in module.modules()
               if getattr(m, "packed_weight", None) is not None)
