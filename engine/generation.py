"""One request's decode loop, run by the batched engine with a private single-slot pool.

`iter_frames` / `generate` are what `TTSModel.iter_codes` / `generate_codes` use: the same
code path (engine.batch: chunked prefill, `decode_step`, per-row sampling) that serves many
streams in the worker, so a request gives the same codes here as in any batch.

Frame accounting differs from the official generate in one respect: it drops the last
sampled frame when max_new_tokens is reached (that frame's codebooks 1..15 would be computed
by a forward that never runs), so it returns max_new_tokens - 1 frames; we complete the frame
and return max_new_tokens. All frames both produce are identical.
"""
from __future__ import annotations

from typing import Iterator

import torch

from engine.batch.generator import BatchGenerator
from engine.code_predictor import CodePredictor
from engine.prompt import TalkerPrompt
from engine.sampling import SamplingParams
from engine.talker import Talker

_INITIAL_FRAMES = 256  # positions reserved past the prompt; a longer run grows the private pool


def private_generator(talker: Talker, predictor: CodePredictor, prompt: TalkerPrompt, params: SamplingParams,
                      eos_id: int) -> BatchGenerator:
    """A one-slot generator sized for this prompt (grown if the run gets longer)."""
    capacity = prompt.embeds.shape[1] + min(params.max_new_tokens, _INITIAL_FRAMES)
    return BatchGenerator(talker, predictor, eos_id, slots=1, capacity=max(capacity, prompt.trailing.shape[1] + 1))


@torch.inference_mode()
def iter_frames(talker: Talker, predictor: CodePredictor, prompt: TalkerPrompt, params: SamplingParams,
                eos_id: int, seed: int | None = None) -> Iterator[torch.Tensor]:
    """Generate frame by frame: yields codes [16] (long) per frame; stops at EOS or
    params.max_new_tokens frames. Closing the iterator stops generation at once."""
    gen = private_generator(talker, predictor, prompt, params, eos_id)
    row = gen.add(prompt, params, params.max_new_tokens, seed)
    while True:
        if row.codes:
            yield row.codes.pop(0)
        elif row.done:
            return
        else:
            if row.frames + 1 >= row.limit < params.max_new_tokens:  # the next frame fills the pool
                gen.grow(row, min(params.max_new_tokens, 2 * row.limit))
            gen.step()


def generate(talker: Talker, predictor: CodePredictor, prompt: TalkerPrompt, params: SamplingParams,
             eos_id: int) -> torch.Tensor:
    """All frames at once: codes [frames, 16] (long)."""
    frames = list(iter_frames(talker, predictor, prompt, params, eos_id))
    if not frames:
        return torch.empty(0, predictor.cfg.num_code_groups, dtype=torch.long, device=prompt.embeds.device)
    return torch.stack(frames)
