"""Sampling options and the logits filters of Qwen3-TTS generation.

`SamplingParams` is the one place options are validated. The filters reproduce the official
(transformers) processors in the official order, so that with the same logits they produce
the same processed logits:

  codebook 0 (talker):  repetition penalty -> EOS ban before min_new_tokens -> suppression of
                        the control block except EOS -> temperature -> top-k -> top-p
  codebooks 1..15:      temperature -> top-k -> top-p

Temperature / top-k / top-p apply only when sampling; greedy decoding takes the argmax of the
logits after penalty and suppression, as the official greedy search does.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from engine.errors import InvalidParameterError


@dataclass(frozen=True)
class SamplingParams:
    """How to pick codes. Defaults are the released generation_config.json of the Base models.

    do_sample / temperature / top_k / top_p: codebook 0 (top_k 0 = off, top_p 1.0 = off).
    repetition_penalty: on codebook 0, over the codes generated so far (1.0 = off).
    subtalker_*: the same for codebooks 1..15 (the code predictor).
    max_new_tokens: most frames to generate; min_new_tokens: frames before EOS is allowed
        (the official generate fixes 2; min_new_tokens >= max_new_tokens disables EOS).
    seed: makes sampling reproducible (None: a fresh random seed each run).
    """

    do_sample: bool = True
    temperature: float = 0.9
    top_k: int = 50
    top_p: float = 1.0
    repetition_penalty: float = 1.05
    subtalker_do_sample: bool = True
    subtalker_temperature: float = 0.9
    subtalker_top_k: int = 50
    subtalker_top_p: float = 1.0
    max_new_tokens: int = 2048
    min_new_tokens: int = 2
    seed: int | None = None

    def __post_init__(self):
        for prefix in ("", "subtalker_"):
            t, k, p = (getattr(self, prefix + n) for n in ("temperature", "top_k", "top_p"))
            _check(isinstance(t, (int, float)) and math.isfinite(t) and t > 0,
                   f"{prefix}temperature must be > 0, got {t!r}")
            _check(_is_int(k) and k >= 0, f"{prefix}top_k must be an integer >= 0 (0 = off), got {k!r}")
            _check(isinstance(p, (int, float)) and 0 < p <= 1, f"{prefix}top_p must be in (0, 1], got {p!r}")
        r = self.repetition_penalty
        _check(isinstance(r, (int, float)) and math.isfinite(r) and r > 0, f"repetition_penalty must be > 0, got {r!r}")
        _check(_is_int(self.max_new_tokens) and self.max_new_tokens >= 1,
               f"max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}")
        _check(_is_int(self.min_new_tokens) and self.min_new_tokens >= 0,
               f"min_new_tokens must be an integer >= 0, got {self.min_new_tokens!r}")
        _check(self.seed is None or (_is_int(self.seed) and 0 <= self.seed < 2**63),
               f"seed must be None or an integer in [0, 2**63), got {self.seed!r}")
        for name in ("do_sample", "subtalker_do_sample"):
            _check(isinstance(getattr(self, name), bool), f"{name} must be a bool")

    @classmethod
    def greedy(cls, **overrides) -> "SamplingParams":
        """Deterministic decoding (argmax for every codebook); the repetition penalty still applies."""
        return cls(**{"do_sample": False, "subtalker_do_sample": False, **overrides})

    def replace(self, **changes) -> "SamplingParams":
        return dataclasses.replace(self, **changes)

    def generator(self, device) -> torch.Generator:
        """A torch.Generator for this run: seeded by `seed`, or freshly random."""
        gen = torch.Generator(device=device)
        if self.seed is None:
            gen.seed()
        else:
            gen.manual_seed(self.seed)
        return gen


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise InvalidParameterError(message)


# ---------------------------------------------------------------------------------------
# filters (logits [B, V] -> filtered logits [B, V]; removed entries are -inf)


def repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """Divide positive / multiply negative logits of ids already generated (seen: bool [B, V])."""
    if penalty == 1.0:
        return logits
    penalized = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalized, logits)


def temperature_top_k_top_p(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """The sampling warpers, in the official order."""
    if temperature != 1.0:
        logits = logits / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)  # ties with the k-th stay
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1)  # ascending
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= (1 - top_p)
        remove[..., -1] = False  # always keep the most likely id
        logits = logits.masked_fill(remove.scatter(-1, order, remove), -math.inf)
    return logits


def pick(logits: torch.Tensor, do_sample: bool, generator: torch.Generator | None) -> torch.Tensor:
    """Argmax, or one draw from softmax(logits) with `generator`: [B, V] -> ids [B]."""
    if not do_sample:
        return logits.argmax(dim=-1)
    probs = logits.float().softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


class TalkerSampler:
    """Codebook-0 selection with the official processor chain; holds the per-run state
    (ids generated so far for the repetition penalty, the step count for min_new_tokens)."""

    def __init__(self, params: SamplingParams, vocab_size: int, control_start: int, eos_id: int,
                 device, generator: torch.Generator | None, batch: int = 1):
        self.params, self.eos_id, self.generator = params, eos_id, generator
        self.suppress = torch.zeros(vocab_size, dtype=torch.bool, device=device)
        self.suppress[control_start:] = True  # the control block: never a code, except EOS
        self.suppress[eos_id] = False
        self.suppress_with_eos = self.suppress.clone()
        self.suppress_with_eos[eos_id] = True
        self.seen = torch.zeros(batch, vocab_size, dtype=torch.bool, device=device)
        self.step = 0

    def filter(self, logits: torch.Tensor) -> torch.Tensor:
        """Processed logits for the current step (what the official chain returns)."""
        p = self.params
        logits = repetition_penalty(logits, self.seen, p.repetition_penalty)
        ban = self.suppress_with_eos if self.step < p.min_new_tokens else self.suppress
        logits = logits.masked_fill(ban, -math.inf)
        if p.do_sample:
            logits = temperature_top_k_top_p(logits, p.temperature, p.top_k, p.top_p)
        return logits

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        """logits [B, V] -> codebook-0 ids [B]; advances the step and records the ids."""
        ids = pick(self.filter(logits), self.params.do_sample, self.generator)
        self.seen.scatter_(1, ids[:, None], True)
        self.step += 1
        return ids


def subtalker_pick(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> torch.Tensor:
    """Codebooks 1..15: logits [B, V] -> ids [B]."""
    if not params.subtalker_do_sample:
        return logits.argmax(dim=-1)
    logits = temperature_top_k_top_p(logits, params.subtalker_temperature, params.subtalker_top_k,
                                     params.subtalker_top_p)
    return pick(logits, True, generator)
