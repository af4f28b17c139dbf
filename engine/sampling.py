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
import secrets
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
    seed: makes sampling reproducible (None: a fresh random seed each run). A row's draws
        depend only on its seed, never on the other requests of its batch.
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

    def resolve_seed(self) -> int:
        """The seed this run samples with: `seed`, or a fresh random one (reported in the
        request's metrics so that a run can be repeated)."""
        return self.seed if self.seed is not None else secrets.randbits(63)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise InvalidParameterError(message)


# ---------------------------------------------------------------------------------------
# per-row settings of a batch


@dataclass
class SamplingRows:
    """The sampling settings of every row of a batch as tensors [S] (one row per stream), so
    one step samples all rows with their own settings, without a host sync.

    The decode pool owns one instance of size S; a step reads the views of its batch bucket
    (`view(B)`). seed_lo / seed_hi: the two 32-bit halves of the row's seed (`noise`).
    """

    do_sample: torch.Tensor  # bool
    temperature: torch.Tensor  # float32
    top_k: torch.Tensor  # long, 0 = off
    top_p: torch.Tensor  # float32, 1.0 = off
    repetition_penalty: torch.Tensor  # float32
    min_new_tokens: torch.Tensor  # long
    sub_do_sample: torch.Tensor
    sub_temperature: torch.Tensor
    sub_top_k: torch.Tensor
    sub_top_p: torch.Tensor
    seed_lo: torch.Tensor  # long in [0, 2**32)
    seed_hi: torch.Tensor

    @classmethod
    def empty(cls, rows: int, device) -> "SamplingRows":
        f = lambda dtype: torch.ones(rows, dtype=dtype, device=device)  # noqa: E731 - harmless filler values
        return cls(do_sample=f(torch.bool), temperature=f(torch.float32), top_k=f(torch.long),
                   top_p=f(torch.float32), repetition_penalty=f(torch.float32), min_new_tokens=f(torch.long),
                   sub_do_sample=f(torch.bool), sub_temperature=f(torch.float32), sub_top_k=f(torch.long),
                   sub_top_p=f(torch.float32), seed_lo=f(torch.long), seed_hi=f(torch.long))

    def set_row(self, row: int, params: SamplingParams, seed: int) -> None:
        """Write one row's settings (at admission, outside the step)."""
        values = dict(do_sample=params.do_sample, temperature=params.temperature, top_k=params.top_k,
                      top_p=params.top_p, repetition_penalty=params.repetition_penalty,
                      min_new_tokens=params.min_new_tokens, sub_do_sample=params.subtalker_do_sample,
                      sub_temperature=params.subtalker_temperature, sub_top_k=params.subtalker_top_k,
                      sub_top_p=params.subtalker_top_p, seed_lo=seed & _M32, seed_hi=(seed >> 32) & _M32)
        for name, value in values.items():
            getattr(self, name)[row] = value

    def view(self, rows: int) -> "SamplingRows":
        """The first `rows` rows (views, no copy)."""
        return SamplingRows(**{f.name: getattr(self, f.name)[:rows] for f in dataclasses.fields(self)})


# ---------------------------------------------------------------------------------------
# filters (logits [B, V] -> filtered logits [B, V]; removed entries are -inf). Every one works
# row by row, so a row's result never depends on the other rows of its batch.


def repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: torch.Tensor) -> torch.Tensor:
    """Divide positive / multiply negative logits of ids already generated (seen: bool [B, V];
    penalty [B]; 1.0 leaves a row unchanged)."""
    p = penalty[:, None]
    penalized = torch.where(logits < 0, logits * p, logits / p)
    return torch.where(seen, penalized, logits)


def temperature_top_k_top_p(logits: torch.Tensor, temperature: torch.Tensor, top_k: torch.Tensor,
                            top_p: torch.Tensor) -> torch.Tensor:
    """The sampling warpers, in the official order, each row with its own settings [B]."""
    logits = logits / temperature[:, None]
    V = logits.shape[-1]
    # top-k: keep what is >= the k-th largest (ties with it stay); k == 0 keeps everything
    ordered = torch.sort(logits, dim=-1, descending=True).values
    kth = ordered.gather(1, (top_k.clamp(1, V) - 1)[:, None])
    kth = torch.where((top_k > 0)[:, None], kth, torch.full_like(kth, -math.inf))
    logits = logits.masked_fill(logits < kth, -math.inf)
    # top-p: drop the least likely ids whose total probability is <= 1 - top_p (top_p 1.0: off)
    ascending, order = torch.sort(logits, dim=-1)
    cumulative = ascending.softmax(dim=-1).cumsum(dim=-1)
    remove = (cumulative <= (1 - top_p)[:, None]) & (top_p < 1.0)[:, None]
    remove[..., -1] = False  # always keep the most likely id
    return logits.masked_fill(remove.scatter(-1, order, remove), -math.inf)


def choose(processed: torch.Tensor, do_sample: torch.Tensor, temperature: torch.Tensor, top_k: torch.Tensor,
           top_p: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Ids [B]: argmax of `processed` for greedy rows; for sampling rows one draw from
    softmax(warped logits) by the Gumbel-max trick (argmax of logits + Gumbel noise), which
    is exactly a categorical sample and needs no generator state."""
    greedy = processed.argmax(dim=-1)
    warped = temperature_top_k_top_p(processed, temperature, top_k, top_p)
    sampled = (warped + noise).argmax(dim=-1)
    return torch.where(do_sample, sampled, greedy)


def codebook0_logits(logits: torch.Tensor, seen: torch.Tensor, steps: torch.Tensor, rows: SamplingRows,
                     suppress: torch.Tensor, eos: torch.Tensor) -> torch.Tensor:
    """The official processor chain for codebook 0 up to the warpers: repetition penalty, EOS
    banned before min_new_tokens (steps [B]: frames generated so far), the control block
    suppressed except EOS. suppress, eos: bool [V] (eos: only the EOS id)."""
    logits = repetition_penalty(logits, seen, rows.repetition_penalty)
    ban = suppress[None, :] | ((steps < rows.min_new_tokens)[:, None] & eos[None, :])  # [B, V]
    return logits.masked_fill(ban, -math.inf)


def control_masks(vocab_size: int, control_start: int, eos_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(suppress, eos) bool [V]: the control block except EOS, and EOS alone."""
    suppress = torch.zeros(vocab_size, dtype=torch.bool, device=device)
    suppress[control_start:] = True  # the control block: never a code, except EOS
    suppress[eos_id] = False
    eos = torch.zeros_like(suppress)
    eos[eos_id] = True
    return suppress, eos


# ---------------------------------------------------------------------------------------
# noise: a counter-based generator


_M32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, m: int) -> torch.Tensor:
    """(x * m) mod 2**32 for x in [0, 2**32), in int64 without overflow (16-bit halves of m)."""
    return ((((x * (m >> 16)) & 0xFFFF) << 16) + x * (m & 0xFFFF)) & _M32


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash with good avalanche (the "lowbias32" constants)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def noise(seed_lo: torch.Tensor, seed_hi: torch.Tensor, counter: torch.Tensor, vocab: int) -> torch.Tensor:
    """Gumbel noise [B, vocab] (float32), a pure function of (seed, counter, id) per row.

    Why not torch.Generator: one generator per row cannot be used by one batched kernel,
    nor inside a CUDA graph; a hash of the row's seed and a counter (frame * 16 + codebook)
    gives every row its own reproducible stream whatever the batch it runs in.
    """
    base = _mix32(_mix32((counter & _M32) ^ seed_lo) ^ seed_hi)  # [B]
    ids = torch.arange(vocab, device=counter.device)
    bits = _mix32(_mix32(_mul32(ids, 0x9E3779B1)[None, :] ^ base[:, None]) ^ seed_lo[:, None])  # [B, V]
    uniform = ((bits >> 8).float() + 0.5) * (1.0 / (1 << 24))  # (0, 1), never 0 or 1
    return -torch.log(-torch.log(uniform))
