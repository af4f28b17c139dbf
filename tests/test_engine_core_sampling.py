"""Sampling: the filters equal the official logits processors, options are validated in one
place, every row of a batch samples with its own settings, the counter-based noise draws
from the right distribution, and a seed makes a sampled run reproducible."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from engine import InvalidParameterError, SamplingParams, load_model
from engine.sampling import (SamplingRows, choose, codebook0_logits, control_masks, noise,
                             temperature_top_k_top_p)


def rows_for(*params: SamplingParams, seeds=None) -> SamplingRows:
    rows = SamplingRows.empty(len(params), "cpu")
    for i, p in enumerate(params):
        rows.set_row(i, p, (seeds or [0] * len(params))[i])
    return rows


def per_row(value, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor([value], dtype=dtype)


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
    suppress, eos_mask = control_masks(vocab, vocab - 1024, eos, "cpu")
    for i, case in enumerate(meta["talker"]):
        params = SamplingParams(temperature=case["temperature"], top_k=case["top_k"], top_p=case["top_p"],
                                repetition_penalty=case["repetition_penalty"])
        rows = rows_for(params)
        seen = torch.zeros(1, vocab, dtype=torch.bool)
        seen[0, tensors[f"filter.talker.{i}.history"]] = True
        logits = codebook0_logits(tensors[f"filter.talker.{i}.logits"][None], seen, torch.tensor([case["step"]]),
                                  rows, suppress, eos_mask)
        ours = temperature_top_k_top_p(logits, rows.temperature, rows.top_k, rows.top_p)[0]
        assert same_filtered(ours, tensors[f"filter.talker.{i}.out"]), case


def test_subtalker_filters_match_official_processors(golden_dir):
    meta, tensors = goldens(golden_dir)
    for i, case in enumerate(meta["subtalker"]):
        ours = temperature_top_k_top_p(tensors[f"filter.subtalker.{i}.logits"][None], per_row(case["temperature"]),
                                       per_row(case["top_k"], torch.long), per_row(case["top_p"]))[0]
        assert same_filtered(ours, tensors[f"filter.subtalker.{i}.out"]), case


def test_min_new_tokens_bans_eos_and_control_block_is_suppressed():
    vocab, eos = 1088, 1066
    suppress, eos_mask = control_masks(vocab, vocab - 1024, eos, "cpu")
    rows = rows_for(SamplingParams.greedy(min_new_tokens=2))
    logits = torch.zeros(1, vocab)
    logits[0, eos] = 10.0
    logits[0, 200] = 20.0  # a control id: never picked
    seen = torch.zeros(1, vocab, dtype=torch.bool)
    picks = []
    for step in range(3):
        processed = codebook0_logits(logits, seen, torch.tensor([step]), rows, suppress, eos_mask)
        picks.append(int(processed.argmax(-1)[0]))
    assert picks[0] != eos and picks[1] != eos and picks[2] == eos  # the third step may end
    assert 200 not in picks


def test_rows_of_a_batch_filter_with_their_own_settings():
    """Row i of a batch gives what it gives alone: the warpers read per-row settings."""
    torch.manual_seed(0)
    logits = torch.randn(4, 300)
    settings = [(0.7, 0, 1.0), (1.3, 20, 1.0), (1.0, 0, 0.8), (0.9, 50, 0.9)]
    t, k, p = (torch.tensor([s[j] for s in settings], dtype=d) for j, d in
               enumerate((torch.float32, torch.long, torch.float32)))
    batch = temperature_top_k_top_p(logits, t, k, p)
    for i in range(4):
        alone = temperature_top_k_top_p(logits[i:i + 1], t[i:i + 1], k[i:i + 1], p[i:i + 1])
        assert torch.equal(batch[i:i + 1], alone)
    assert torch.isinf(batch[1]).sum() == 280 and not torch.isinf(batch[0]).any()


def test_gumbel_max_draws_follow_the_softmax():
    """choose() samples by argmax(logits + noise): over many counters, the frequencies of
    each id match softmax(logits / T) (chi-square test, fixed seed: deterministic)."""
    V, n = 8, 20000
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -0.5, -1.0, -2.0, -4.0]])
    temperature = 1.5
    expected = torch.softmax(logits[0] / temperature, dim=0) * n
    counters = torch.arange(n)
    ones = torch.ones(n)
    draws = choose(logits.expand(n, V), torch.ones(n, dtype=torch.bool), ones * temperature,
                   torch.zeros(n, dtype=torch.long), ones,
                   noise(torch.full((n,), 12345), torch.full((n,), 678), counters * 16, V))
    observed = torch.bincount(draws, minlength=V).float()
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert chi2 < 24.3, (observed, expected)  # the 0.999 quantile of chi-square with 7 degrees of freedom
    # and different seeds or counters give different noise, the same ones the same
    a = noise(torch.tensor([1]), torch.tensor([2]), torch.tensor([3]), 64)
    assert torch.equal(a, noise(torch.tensor([1]), torch.tensor([2]), torch.tensor([3]), 64))
    assert not torch.equal(a, noise(torch.tensor([1]), torch.tensor([2]), torch.tensor([4]), 64))
    assert not torch.equal(a, noise(torch.tensor([5]), torch.tensor([2]), torch.tensor([3]), 64))


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


def test_greedy_rows_take_the_argmax():
    logits = torch.randn(3, 64)
    greedy = torch.zeros(3, dtype=torch.bool)
    ones = torch.ones(3)
    picked = choose(logits, greedy, ones, torch.zeros(3, dtype=torch.long), ones, torch.randn(3, 64) * 100)
    assert torch.equal(picked, logits.argmax(-1))
