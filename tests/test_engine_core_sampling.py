"""Sampling: the filters equal the official logits processors, options are validated in one
place, and a seed makes a sampled run reproducible."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from engine import InvalidParameterError, SamplingParams, load_model
from engine.sampling import TalkerSampler, subtalker_pick, temperature_top_k_top_p


def goldens(golden_dir):
    return (json.loads((golden_dir / "talker.json").read_text(encoding="utf-8"))["filters"],
            load_file(str(golden_dir / "talker.safetensors")))


def same_filtered(ours: torch.Tensor, ref: torch.Tensor) -> bool:
    """Equal where kept (to float tolerance), -inf exactly where the official chain removed."""
    removed = torch.isinf(ref)
    return torch.equal(torch.isinf(ours), removed) and torch.allclose(ours[~removed], ref[~removed], rtol=1e-6, atol=1e-6)


def test_talker_filters_match_official_processors(tiny_ckpt, golden_dir):
    meta, tensors = goldens(golden_dir)
    cfg = json.loads((tiny_ckpt / "config.json").read_text())["talker_config"]
    vocab, eos = cfg["vocab_size"], cfg["codec_eos_token_id"]
    assert {"RepetitionPenaltyLogitsProcessor", "MinNewTokensLengthLogitsProcessor", "SuppressTokensLogitsProcessor",
            "TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper"} <= \
        {p for case in meta["talker"] for p in case["processors"]}
    for i, case in enumerate(meta["talker"]):
        params = SamplingParams(temperature=case["temperature"], top_k=case["top_k"], top_p=case["top_p"],
                                repetition_penalty=case["repetition_penalty"])
        sampler = TalkerSampler(params, vocab, vocab - 1024, eos, "cpu", None)
        history = tensors[f"filter.talker.{i}.history"]
        sampler.seen[0, history] = True
        sampler.step = case["step"]
        ours = sampler.filter(tensors[f"filter.talker.{i}.logits"][None])[0]
        assert same_filtered(ours, tensors[f"filter.talker.{i}.out"]), case


def test_subtalker_filters_match_official_processors(golden_dir):
    meta, tensors = goldens(golden_dir)
    for i, case in enumerate(meta["subtalker"]):
        ours = temperature_top_k_top_p(tensors[f"filter.subtalker.{i}.logits"][None], case["temperature"],
                                       case["top_k"], case["top_p"])[0]
        assert same_filtered(ours, tensors[f"filter.subtalker.{i}.out"]), case


def test_min_new_tokens_bans_eos_and_control_block_is_suppressed():
    vocab, eos = 1088, 166
    sampler = TalkerSampler(SamplingParams.greedy(min_new_tokens=2), vocab, vocab - 1024, eos, "cpu", None)
    logits = torch.zeros(1, vocab)
    logits[0, eos] = 10.0
    logits[0, 200] = 20.0  # a control id: never picked
    assert int(sampler(logits)[0]) != eos and int(sampler(logits)[0]) != eos
    assert int(sampler(logits)[0]) == eos  # the third step may end
    assert not sampler.seen[0, 200]


@pytest.mark.parametrize("bad", [
    dict(temperature=0), dict(temperature=-1.0), dict(temperature=float("nan")), dict(top_k=-1), dict(top_k=2.5),
    dict(top_p=0.0), dict(top_p=1.5), dict(repetition_penalty=0), dict(max_new_tokens=0),
    dict(min_new_tokens=-1), dict(seed=-3), dict(seed="x"), dict(subtalker_temperature=0),
    dict(subtalker_top_p=2), dict(subtalker_top_k=-5), dict(do_sample="yes"),
])
def test_sampling_params_are_validated(bad):
    with pytest.raises(InvalidParameterError):
        SamplingParams(**bad)


def test_sampling_params_defaults_come_from_generation_config(tiny_ckpt):
    model = load_model(tiny_ckpt, device="cpu")
    gen = json.loads((tiny_ckpt / "generation_config.json").read_text())
    params = model.default_sampling(seed=5)
    assert (params.temperature, params.top_k, params.top_p, params.repetition_penalty, params.max_new_tokens) == \
        (gen["temperature"], gen["top_k"], gen["top_p"], gen["repetition_penalty"], gen["max_new_tokens"])
    assert params.seed == 5 and params.subtalker_do_sample is gen["subtalker_dosample"]


def test_same_seed_same_codes(tiny_ckpt):
    model = load_model(tiny_ckpt, device="cpu")
    params = SamplingParams(max_new_tokens=24, min_new_tokens=24, temperature=1.3, top_k=0, seed=1234,
                            subtalker_temperature=1.3)
    first = model.generate_codes("Sampling is reproducible with a seed.", sampling=params)
    second = model.generate_codes("Sampling is reproducible with a seed.", sampling=params)
    other = model.generate_codes("Sampling is reproducible with a seed.", sampling=params.replace(seed=99))
    assert first.shape == (24, 16) and torch.equal(first, second)
    assert not torch.equal(first, other)
    greedy = model.generate_codes("Sampling is reproducible with a seed.",
                                  sampling=SamplingParams.greedy(max_new_tokens=24, min_new_tokens=24))
    assert not torch.equal(first, greedy)


def test_subtalker_greedy_is_argmax():
    logits = torch.randn(3, 64)
    assert torch.equal(subtalker_pick(logits, SamplingParams.greedy(), None), logits.argmax(-1))
