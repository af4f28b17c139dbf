"""The engine on CUDA (skipped without a GPU): generation, streaming decode and the voice
prompt against the official goldens; the dtype rules of a CUDA run (bf16 weights and KV
caches, float32 logits into the samplers); and no CPU-only fast path (oneDNN-packed
linears) on CUDA, whether the model was loaded there or moved there (ZeroGPU).

Float32 on CUDA is not bitwise the CPU: TF32 is off by default for matmuls, but reductions
differ, so equal greedy codes rely on the goldens' clear margins, as on the CPU."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import engine.batch.step
import engine.layers
from engine.batch.pool import DecodePool
from engine import SamplingParams, load_model
from engine.codec_decoder import StreamingDecoder
from engine.gpucheck.correctness import DECODE_TOL, STREAM_TOL, golden_cases, greedy_run, stream_vs_one_shot

pytestmark = pytest.mark.cuda
CUDA = torch.device("cuda")


def packed_linears(model) -> int:
    return sum(1 for part in vars(model).values() if isinstance(part, torch.nn.Module)
               for m in part.modules() if getattr(m, "packed_weight", None) is not None)


def devices_of(model) -> set[str]:
    return {t.device.type for part in vars(model).values() if isinstance(part, torch.nn.Module)
            for t in [*part.parameters(), *part.buffers()] if t is not None}


def test_greedy_codes_on_cuda_match_official(tiny_ckpt, golden_dir):
    model = load_model(tiny_ckpt, device=CUDA, dtype=torch.float32)
    meta, tensors, cases = golden_cases(golden_dir)
    n = meta["max_new_tokens"]
    for case, text, voice in cases:
        codes, logits = greedy_run(model, case, text, voice, n)
        assert torch.equal(codes[: n - 1], tensors[f"{case['name']}.codes"]), case["name"]
        ref = tensors[f"{case['name']}.prefill_logits"]
        assert ((logits - ref).abs().max() / ref.abs().max()).item() <= 1e-4, case["name"]


def test_decode_and_streaming_decode_on_cuda_match_official(tiny_ckpt, golden_dir):
    model = load_model(tiny_ckpt, device=CUDA, dtype=torch.float32)
    golden = load_file(str(golden_dir / "codec_decode.safetensors"))
    codes = golden["codes_130"].to(CUDA)
    offline = model.codec_decoder.decode(codes, max_chunk=None)
    assert offline.is_cuda and (offline.cpu() - golden["wav_130"]).abs().max().item() <= DECODE_TOL
    for chunk in (1, 4, 25):
        decoder = StreamingDecoder(model.codec_decoder)
        streamed = torch.cat([decoder.push(codes[i:i + chunk]) for i in range(0, codes.shape[0], chunk)])
        assert (streamed - offline).abs().max().item() <= 1e-5, chunk


def test_streamed_speech_on_cuda_equals_one_shot(tiny_ckpt, golden_dir):
    model = load_model(tiny_ckpt, device=CUDA, dtype=torch.float32)
    _, _, cases = golden_cases(golden_dir)
    for case, text, voice in [c for c in cases if c[0]["name"] in ("xvec_auto", "icl_auto_trailing")]:
        assert stream_vs_one_shot(model, case, text, voice, 24) <= STREAM_TOL, case["name"]


def test_voice_prompt_on_cuda(tiny_ckpt):
    from runtime_helpers import reference_clip, tiny_model

    model = load_model(tiny_ckpt, device=CUDA, dtype=torch.float32)
    prompt = model.create_voice_prompt(reference_clip(), 24000, "This is the reference clip.")
    on_cpu = tiny_model(tiny_ckpt.name.removeprefix("tiny_")).create_voice_prompt(
        reference_clip(), 24000, "This is the reference clip.")
    assert torch.nn.functional.cosine_similarity(prompt.xvector.cpu().float(), on_cpu.xvector, dim=0) >= 0.999
    assert (prompt.ref_codes.cpu() == on_cpu.ref_codes).float().mean().item() >= 0.95  # near ties may flip


def test_bf16_on_cuda_keeps_bf16_caches_and_samples_in_float32(tiny_ckpt, monkeypatch):
    model = load_model(tiny_ckpt, device=CUDA, dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16 and devices_of(model) == {"cuda"}
    seen = {"cache": set(), "talker logits": set(), "predictor logits": set()}
    init, codebook0, choose = DecodePool.__init__, engine.batch.step.codebook0_logits, engine.batch.step.choose

    def spy_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        seen["cache"].update({k.dtype for k in self.k + self.v + self.pk + self.pv})

    def spy_codebook0(logits, *args, **kwargs):
        seen["talker logits"].add(logits.dtype)
        return codebook0(logits, *args, **kwargs)

    def spy_choose(logits, *args, **kwargs):  # codebook 0 (processed) and codebooks 1..15
        seen["predictor logits"].add(logits.dtype)
        return choose(logits, *args, **kwargs)

    monkeypatch.setattr(DecodePool, "__init__", spy_init)
    monkeypatch.setattr(engine.batch.step, "codebook0_logits", spy_codebook0)
    monkeypatch.setattr(engine.batch.step, "choose", spy_choose)
    codes = model.generate_codes("Dtype rules on the GPU.", sampling=SamplingParams(seed=3, max_new_tokens=8,
                                                                                       min_new_tokens=8))
    assert codes.shape == (8, 16) and codes.is_cuda
    assert seen == {"cache": {torch.bfloat16}, "talker logits": {torch.float32},
                    "predictor logits": {torch.float32}}


def test_no_packed_linear_is_reachable_on_cuda(tiny_ckpt):
    """Loaded on CUDA: nothing packed. Loaded on the CPU in bf16 (packed, as the main process
    of a ZeroGPU Space holds it) and moved as ZeroGPU moves it: unpacked, all on CUDA, and
    the same codes as the model loaded on CUDA directly (the same bf16 weights)."""
    from space_runtime import zerogpu

    direct = load_model(tiny_ckpt, device=CUDA, dtype=torch.bfloat16)
    assert packed_linears(direct) == 0
    moved = load_model(tiny_ckpt, device="cpu", dtype=torch.bfloat16)
    if engine.layers.cpu_bf16_packing_available():
        assert packed_linears(moved) > 0
    zerogpu.move_model(moved, CUDA)
    assert packed_linears(moved) == 0 and devices_of(moved) == {"cuda"} and moved.device.type == "cuda"
    sampling = SamplingParams.greedy(max_new_tokens=16, min_new_tokens=16)
    assert torch.equal(moved.generate_codes("Moved to the GPU.", sampling=sampling),
                       direct.generate_codes("Moved to the GPU.", sampling=sampling))
