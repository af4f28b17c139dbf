"""The decode loop: talker prefill, then per frame codebook 0 from the talker and codebooks
1..15 from the code predictor, until EOS or max_new_tokens.

Caches are preallocated (`engine.layers.KVCache`): the talker's for the prompt plus the frames
to come (grown by doubling, i.e. rarely, for very long runs so that a large max_new_tokens
does not reserve memory up front), the predictor's once per run for its 16-token sequences
(reused every frame: each frame overwrites positions 0..15). The single decode steps
(`talker_step`, `predict_frame`) are plain functions of tensors and caches.

Frame accounting differs from the official generate in one respect: it drops the last
sampled frame when max_new_tokens is reached (that frame's codebooks 1..15 would be computed
by a forward that never runs), so it returns max_new_tokens - 1 frames; we complete the frame
and return max_new_tokens. All frames both produce are identical.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from engine.code_predictor import CodePredictor
from engine.layers import KVCache
from engine.prompt import TalkerPrompt
from engine.sampling import SamplingParams, TalkerSampler, subtalker_pick
from engine.talker import Talker

_INITIAL_FRAMES = 512  # talker cache rows reserved past the prompt before the first doubling


@dataclass
class DecodeState:
    """Per-run caches and RoPE tables of the talker and the code predictor."""

    talker_caches: list[KVCache]
    talker_cos: torch.Tensor  # [capacity, D]
    talker_sin: torch.Tensor
    predictor_caches: list[KVCache]
    predictor_cos: torch.Tensor  # [num_code_groups, D]
    predictor_sin: torch.Tensor
    positions: torch.Tensor  # arange(capacity), sliced for the talker's input_pos
    predictor_positions: torch.Tensor  # arange(num_code_groups)

    @property
    def capacity(self) -> int:
        return self.talker_cos.shape[0]


def cache_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """KV caches (and so attention) run in float32 on CPU: CPU attention kernels are several
    times slower in bfloat16 than in float32, and the cache is small next to the weights."""
    return torch.float32 if torch.device(device).type == "cpu" else dtype


def new_state(talker: Talker, predictor: CodePredictor, capacity: int, dtype: torch.dtype) -> DecodeState:
    """dtype: the model's (RoPE tables match it, as in the official code)."""
    groups = predictor.cfg.num_code_groups
    t_cos, t_sin = talker.decoder.rope_table(capacity, dtype)
    p_cos, p_sin = predictor.decoder.rope_table(groups, dtype)
    kv_dtype = cache_dtype(dtype, t_cos.device)
    return DecodeState(
        talker_caches=talker.decoder.new_caches(capacity, kv_dtype), talker_cos=t_cos, talker_sin=t_sin,
        predictor_caches=predictor.decoder.new_caches(groups, kv_dtype), predictor_cos=p_cos, predictor_sin=p_sin,
        positions=torch.arange(capacity, device=t_cos.device),
        predictor_positions=torch.arange(groups, device=t_cos.device))


def _grow(talker: Talker, state: DecodeState, needed: int, used: int) -> None:
    """Reallocate the talker caches with at least `needed` rows, keeping the first `used`."""
    capacity = max(needed, 2 * state.capacity)
    dtype = state.talker_cos.dtype
    caches = talker.decoder.new_caches(capacity, state.talker_caches[0].k.dtype)
    for new, old in zip(caches, state.talker_caches):
        new.k[:, :, :used] = old.k[:, :, :used]
        new.v[:, :, :used] = old.v[:, :, :used]
    state.talker_caches = caches
    state.talker_cos, state.talker_sin = talker.decoder.rope_table(capacity, dtype)
    state.positions = torch.arange(capacity, device=state.positions.device)


def talker_forward(talker: Talker, x: torch.Tensor, start: int, state: DecodeState):
    """Run rows x [B, T, C] at positions start.. -> (last hidden [B, C], codec logits [B, V] float32)."""
    end = start + x.shape[1]
    h = talker.decoder(x, state.talker_cos[start:end], state.talker_sin[start:end], state.talker_caches,
                       state.positions[start:end], end)
    last = h[:, -1]
    return last, talker.codec_head(last).float()


def talker_step(talker: Talker, x: torch.Tensor, pos: int, state: DecodeState):
    """One decode step of the talker: one input row x [B, 1, C] at position `pos`."""
    return talker_forward(talker, x, pos, state)


def predict_frame(talker: Talker, predictor: CodePredictor, hidden: torch.Tensor, code0: torch.Tensor,
                  state: DecodeState, params: SamplingParams, generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Codebooks 1..15 of one frame.

    hidden: the talker's last hidden state [B, Ct]; code0: codebook-0 ids [B].
    Returns (codes [B, 16], the frame's talker input: the sum of its 16 code embeddings [B, Ct]).
    """
    groups = predictor.cfg.num_code_groups
    B = code0.shape[0]
    codes = torch.empty(B, groups, dtype=torch.long, device=code0.device)
    embeds = torch.empty(B, groups, hidden.shape[-1], dtype=hidden.dtype, device=hidden.device)  # [B, 16, Ct]
    codes[:, 0] = code0
    embeds[:, 0] = talker.embed_codec(code0)
    dec, cos, sin, caches, pos = predictor.decoder, state.predictor_cos, state.predictor_sin, \
        state.predictor_caches, state.predictor_positions
    x = predictor.project(torch.stack([hidden, embeds[:, 0]], dim=1))  # [B, 2, Cp]: a two-row prefill
    h = dec(x, cos[:2], sin[:2], caches, pos[:2], 2)[:, -1]
    for i in range(1, groups):
        code = subtalker_pick(predictor.heads[i - 1](h).float(), params, generator)
        codes[:, i] = code
        embeds[:, i] = predictor.embeddings[i - 1](code)
        if i == groups - 1:
            break
        x = predictor.project(embeds[:, i:i + 1])  # [B, 1, Cp] at position i + 1
        h = dec(x, cos[i + 1:i + 2], sin[i + 1:i + 2], caches, pos[i + 1:i + 2], i + 2)[:, -1]
    return codes, embeds.sum(dim=1)


@torch.inference_mode()
def iter_frames(talker: Talker, predictor: CodePredictor, prompt: TalkerPrompt, params: SamplingParams,
                eos_id: int) -> Iterator[torch.Tensor]:
    """Generate frame by frame: yields codes [16] (long) per frame; stops at EOS or
    params.max_new_tokens frames. Closing the iterator stops generation at once."""
    dtype = prompt.embeds.dtype
    device = prompt.embeds.device
    n_prompt = prompt.embeds.shape[1]
    capacity = n_prompt + min(params.max_new_tokens, _INITIAL_FRAMES)
    state = new_state(talker, predictor, capacity, dtype)
    generator = params.generator(device) if (params.do_sample or params.subtalker_do_sample) else None
    cfg = talker.cfg
    sampler = TalkerSampler(params, cfg.vocab_size, cfg.control_start, eos_id, device, generator)
    trailing = prompt.trailing
    hidden, logits = talker_forward(talker, prompt.embeds, 0, state)
    for step in range(params.max_new_tokens):
        code0 = sampler(logits)
        if int(code0[0]) == eos_id:
            return
        codes, frame_embed = predict_frame(talker, predictor, hidden, code0, state, params, generator)
        yield codes[0]
        if step == params.max_new_tokens - 1:
            return
        text = trailing[:, step] if step < trailing.shape[1] else prompt.pad[:, 0]
        pos = n_prompt + step
        if pos >= state.capacity:
            _grow(talker, state, pos + 1, pos)
        hidden, logits = talker_step(talker, (frame_embed + text)[:, None], pos, state)


def generate(talker: Talker, predictor: CodePredictor, prompt: TalkerPrompt, params: SamplingParams,
             eos_id: int) -> torch.Tensor:
    """All frames at once: codes [frames, 16] (long)."""
    frames = list(iter_frames(talker, predictor, prompt, params, eos_id))
    if not frames:
        return torch.empty(0, predictor.cfg.num_code_groups, dtype=torch.long, device=prompt.embeds.device)
    return torch.stack(frames)
