"""Parity of the engine core (text tokenizer, talker, code predictor, prompt building, greedy
generation) with the official Qwen3-TTS implementation, on the tiny checkpoints of
tests/fixtures (goldens recorded by tools/parity/golden_talker.py in the reference env)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import torch
from safetensors.torch import load_file

from engine import SamplingParams, load_model
from engine.generation import private_generator
from engine.layers import apply_rope, rope_cos_sin, rope_inv_freq

_MODELS: dict = {}


def model_for(ckpt):
    if ckpt not in _MODELS:
        _MODELS[ckpt] = load_model(ckpt, device="cpu", dtype=torch.float32)
    return _MODELS[ckpt]


def prefill_logits(model, prompt) -> torch.Tensor:
    """Codebook-0 logits [V] after the prompt, through the engine's own (chunked) prefill."""
    params = SamplingParams.greedy(max_new_tokens=1)
    gen = private_generator(model.talker, model.predictor, prompt, params, model.config.talker.codec_eos_id)
    return gen.prefill(gen.add(prompt, params, 1)).clone()


def golden(golden_dir):
    meta = json.loads((golden_dir / "talker.json").read_text(encoding="utf-8"))
    return meta, load_file(str(golden_dir / "talker.safetensors"))


def case_inputs(meta, tensors, case):
    name = case["name"]
    voice = SimpleNamespace(mode=case["mode"], xvector=tensors[f"{name}.xvector"],
                            ref_codes=tensors.get(f"{name}.ref_codes"),
                            ref_text=meta["texts"][case["ref_text"]] if case["ref_text"] else None)
    return meta["texts"][case["text"]], voice


def test_tokenizer_ids_match_official(tiny_ckpt, golden_dir):
    meta, _ = golden(golden_dir)
    tok = model_for(tiny_ckpt).tokenizer
    tk = meta["tokenizer"]
    assert len(tk["texts"]) >= 15
    for text, assistant, reference in zip(tk["texts"], tk["assistant"], tk["reference"]):
        assert tok.assistant_ids(text) == assistant, text
        assert tok.reference_ids(text) == reference, text


def test_prefill_logits_match_official(tiny_ckpt, golden_dir):
    meta, tensors = golden(golden_dir)
    model = model_for(tiny_ckpt)
    assert len(meta["cases"]) >= 6
    for case in meta["cases"]:
        text, voice = case_inputs(meta, tensors, case)
        prompt = model.build_prompt(text, voice, case["language"], case["non_streaming_mode"])
        logits = prefill_logits(model, prompt)
        ref = tensors[f"{case['name']}.prefill_logits"]
        rel = ((logits - ref).abs().max() / ref.abs().max()).item()
        assert rel <= 1e-4, (case["name"], rel)


def test_greedy_codes_match_official_in_every_prompt_mode(tiny_ckpt, golden_dir):
    meta, tensors = golden(golden_dir)
    model = model_for(tiny_ckpt)
    modes = {(c["mode"], c["non_streaming_mode"], c["language"] == "auto") for c in meta["cases"]}
    assert modes >= {("xvector", False, True), ("xvector", True, False), ("icl", False, True),
                     ("icl", False, False), ("icl", True, False), ("icl", True, True)}
    n = meta["max_new_tokens"]
    for case in meta["cases"]:
        text, voice = case_inputs(meta, tensors, case)
        ref = tensors[f"{case['name']}.codes"]
        assert ref.shape == (n - 1, 16) and n - 1 >= 30  # the official generate drops its last frame
        # EOS suppressed as in the recording: banned until min_new_tokens >= max_new_tokens
        sampling = SamplingParams.greedy(max_new_tokens=n, min_new_tokens=0 if case["eos_allowed"] else n)
        codes = model.generate_codes(text, voice=voice, language=case["language"], sampling=sampling,
                                     non_streaming_mode=case["non_streaming_mode"])
        assert codes.dtype == torch.long and codes.shape == (n, 16), case["name"]
        assert torch.equal(codes[: n - 1], ref), case["name"]


def test_goldens_depend_on_text_voice_and_language(golden_dir):
    """The perturbed tiny model is sensitive to its inputs, so equal codes above mean something."""
    meta, tensors = golden(golden_dir)
    codes = [tensors[f"{c['name']}.codes"] for c in meta["cases"]]
    assert len({tuple(c[:, 0].tolist()) for c in codes}) == len(codes)
    for c in codes:
        assert c[:, 0].unique().numel() >= 5 and c.unique().numel() >= 32


def test_multimodal_rope_with_equal_positions_is_1d_rope():
    """The official interleaved mRoPE picks, per frequency, the section (temporal/height/width)
    the frequency belongs to; with equal position ids in all sections that is 1-D RoPE."""
    head_dim, section = 16, [4, 2, 2]
    positions = torch.arange(37)
    inv_freq = rope_inv_freq(head_dim, 1e6)
    cos, sin = rope_cos_sin(inv_freq, positions, torch.float32)  # [T, D]
    per_section = cos[None].expand(3, -1, -1)  # [3, T, D]: one table per section, equal positions
    half = per_section[..., : head_dim // 2].clone()
    merged = half[0].clone()
    for i, n in enumerate(section[1:], 1):  # interleaved: frequency j takes section j % 3 within its span
        merged[..., i:n * 3:3] = half[i, ..., i:n * 3:3]
    mrope_cos = torch.cat([merged, merged], dim=-1)
    assert torch.equal(mrope_cos, cos)
    x = torch.randn(1, 2, 37, head_dim)
    assert torch.allclose(apply_rope(x, mrope_cos, sin), apply_rope(x, cos, sin))


def test_eos_stops_generation_after_min_new_tokens(tiny_ckpt):
    model = model_for(tiny_ckpt)
    eos = model.config.talker.codec_eos_id

    def favour_eos(module, inputs, logits):  # EOS becomes the argmax whenever it is allowed
        logits = logits.clone()
        logits[..., eos] += 1e4
        return logits

    hook = model.talker.codec_head.register_forward_hook(favour_eos)
    try:
        three = model.generate_codes("Hello there.", sampling=SamplingParams.greedy(max_new_tokens=20, min_new_tokens=3))
        none = model.generate_codes("Hello there.", sampling=SamplingParams.greedy(max_new_tokens=20, min_new_tokens=0))
    finally:
        hook.remove()
    assert three.shape == (3, 16) and (three < model.config.code_predictor.vocab_size).all()
    assert none.shape == (0, 16)


def test_talker_cache_growth_keeps_codes(tiny_ckpt, monkeypatch):
    """Long runs grow the talker cache by doubling; the codes are those of a roomy cache."""
    import engine.generation as generation

    model = model_for(tiny_ckpt)
    sampling = SamplingParams.greedy(max_new_tokens=40, min_new_tokens=40)
    roomy = model.generate_codes("Growing caches must not change a thing.", sampling=sampling)
    monkeypatch.setattr(generation, "_INITIAL_FRAMES", 3)
    grown = model.generate_codes("Growing caches must not change a thing.", sampling=sampling)
    assert torch.equal(roomy, grown)


def test_bfloat16_prefill_follows_float32(tiny_ckpt, golden_dir):
    """bf16 (on CPU: oneDNN-packed linears, float32 attention) stays close to the official
    float32 logits: bf16 rounding only."""
    meta, tensors = golden(golden_dir)
    model = load_model(tiny_ckpt, device="cpu", dtype=torch.bfloat16)
    for case in meta["cases"][:3]:
        text, voice = case_inputs(meta, tensors, case)
        prompt = model.build_prompt(text, voice, case["language"], case["non_streaming_mode"])
        logits = prefill_logits(model, prompt)
        ref = tensors[f"{case['name']}.prefill_logits"]
        assert torch.nn.functional.cosine_similarity(logits, ref, dim=0) > 0.999, case["name"]
        assert ((logits - ref).abs().max() / ref.abs().max()) < 0.05, case["name"]
