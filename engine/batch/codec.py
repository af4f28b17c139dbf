"""CodecRows: the streaming codec decoder state of every slot, decoded together.

The decoder's streaming state (engine.codec_decoder.StreamState) has a batch dimension; here
row i is slot i's stream, allocated once for all slots (moshi style). A call decodes the due
chunks of many slots at once: slots with the same number of pending frames form one batch
(their rows are gathered, run, and written back), so a step costs one decoder call per chunk
size instead of one per stream.

ICL: a stream continues its voice's reference audio (the first frames need its acoustic
context). The state after the reference is small, so it is kept per reference (`primed`, an
LRU keyed by the reference codes) and copied into a slot at each segment start: a voice's
reference is decoded once, not once per request.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np
import torch

from engine.codec_decoder import CodecDecoder, StreamState


def codes_key(codes: torch.Tensor) -> bytes:
    return hashlib.sha256(codes.to("cpu", torch.int32).contiguous().numpy().tobytes()).digest()


class CodecRows:
    allocations = 0

    def __init__(self, decoder: CodecDecoder, slots: int, primed_entries: int = 16):
        CodecRows.allocations += 1
        self.decoder, self.slots = decoder, slots
        self.device = decoder.conv_out.weight.device
        self.state = StreamState()
        K = decoder.config.num_quantizers
        with torch.inference_mode():  # one frame through every row creates each module's state
            decoder(torch.zeros(slots, 1, K, dtype=torch.long, device=self.device), self.state)
            self.state.clear(torch.arange(slots, device=self.device))
        self.primed: OrderedDict[bytes, StreamState] = OrderedDict()
        self.primed_entries = primed_entries
        self.primings = 0  # references decoded (misses of `primed`)

    def nbytes(self) -> int:
        return self.state.nbytes()

    @torch.inference_mode()
    def start(self, slot: int, ref_codes: torch.Tensor | None = None) -> None:
        """Begin a new stream in `slot`: after silence, or continuing an ICL reference."""
        rows = torch.tensor([slot], device=self.device)
        if ref_codes is None:
            self.state.clear(rows)
            return
        key = codes_key(ref_codes)
        primed = self.primed.get(key)
        if primed is None:
            primed = StreamState()
            self.decoder(self.decoder.check_codes(ref_codes)[None], primed)
            self.primings += 1
            self.primed[key] = primed
            while len(self.primed) > self.primed_entries:
                self.primed.popitem(last=False)
        self.primed.move_to_end(key)
        self.state.assign(rows, primed)

    @torch.inference_mode()
    def decode(self, chunks: dict[int, list[torch.Tensor]]) -> dict[int, np.ndarray]:
        """{slot: frames [16] each} -> {slot: float32 pcm of exactly those frames}."""
        by_length: dict[int, list[int]] = {}
        for slot, frames in chunks.items():
            by_length.setdefault(len(frames), []).append(slot)
        out = {}
        for slots in by_length.values():
            rows = torch.tensor(slots, device=self.device)
            codes = torch.stack([torch.stack(chunks[s]) for s in slots]).to(self.device)  # [n, T, 16]
            part = self.state.select(rows)
            wav = self.decoder(codes, part).float().cpu().numpy()  # [n, T * hop]
            self.state.assign(rows, part)
            out.update(zip(slots, wav))
        return out
