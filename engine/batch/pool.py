"""DecodePool: the decode state of S slots (one live stream per slot), allocated once.

gpt-fast style: KV caches with a batch dimension of slots and a fixed capacity, per-row
positions and step counts as tensors, so that a decode step reads fixed-size views
(`[:B, :, :L]` for a batch bucket B and a length bucket L) and never slices by a Python
value that changes from frame to frame. Everything a step reads or writes lives here, which
is also what a captured CUDA graph needs: its inputs and outputs are these buffers.
"""
from __future__ import annotations

import torch

from engine.sampling import SamplingRows, control_masks


def cache_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """KV caches (and so attention) run in float32 on CPU: CPU attention kernels are several
    times slower in bfloat16 than in float32, and the cache is small next to the weights."""
    return torch.float32 if torch.device(device).type == "cpu" else dtype


class DecodePool:
    """slots: most rows decoded together; capacity: most talker positions per row (prompt +
    frames). Allocated once per worker (`allocations` counts it, for tests)."""

    allocations = 0

    def __init__(self, talker, predictor, *, slots: int, capacity: int, eos_id: int):
        DecodePool.allocations += 1
        tc, pc = talker.cfg.decoder, predictor.cfg.decoder
        weight = talker.codec_embedding.weight
        device, dtype = weight.device, weight.dtype
        self.talker, self.predictor, self.eos_id = talker, predictor, eos_id
        self.slots, self.capacity, self.groups = slots, capacity, predictor.cfg.num_code_groups
        self.device, self.dtype = device, dtype
        kv = cache_dtype(dtype, device)
        self.k = [torch.zeros(slots, tc.num_kv_heads, capacity, tc.head_dim, dtype=kv, device=device)
                  for _ in range(tc.num_layers)]
        self.v = [torch.zeros_like(k) for k in self.k]
        self.pk = [torch.zeros(slots, pc.num_kv_heads, self.groups, pc.head_dim, dtype=kv, device=device)
                   for _ in range(pc.num_layers)]
        self.pv = [torch.zeros_like(k) for k in self.pk]
        self.cos, self.sin = talker.decoder.rope_table(capacity, dtype)  # [capacity, D]
        self.p_cos, self.p_sin = predictor.decoder.rope_table(self.groups, dtype)  # [16, D]
        self.positions = torch.arange(capacity, device=device)
        self.p_positions = torch.arange(self.groups, device=device)  # the predictor's 16 positions
        C, V = talker.cfg.decoder.hidden_size, talker.cfg.vocab_size
        self.vocab = V
        self.suppress, self.eos = control_masks(V, talker.cfg.control_start, eos_id, device)
        # per row (slot)
        self.hidden = torch.zeros(slots, C, dtype=dtype, device=device)  # talker's last hidden state
        self.logits = torch.zeros(slots, V, dtype=torch.float32, device=device)  # its codebook-0 logits
        self.pos = torch.zeros(slots, dtype=torch.long, device=device)  # where the next input is written
        self.steps = torch.zeros(slots, dtype=torch.long, device=device)  # frames generated so far
        self.active = torch.zeros(slots, dtype=torch.bool, device=device)  # decoding (not free / prefilling)
        self.seen = torch.zeros(slots, V, dtype=torch.bool, device=device)  # codebook-0 ids generated
        self.trailing = torch.zeros(slots, capacity, C, dtype=dtype, device=device)  # text fed one per frame
        self.n_trailing = torch.zeros(slots, dtype=torch.long, device=device)  # row n_trailing: tts_pad
        self.sampling = SamplingRows.empty(slots, device)
        self.codes = torch.zeros(slots, self.groups, dtype=torch.long, device=device)  # the step's output

    def nbytes(self) -> int:
        tensors = [*self.k, *self.v, *self.pk, *self.pv, self.hidden, self.logits, self.seen, self.trailing]
        return sum(t.numel() * t.element_size() for t in tensors)

    @staticmethod
    def bytes_per_slot(talker, predictor, capacity: int) -> int:
        """Memory one slot costs (to size a pool from the device's free memory)."""
        tc, pc = talker.cfg.decoder, predictor.cfg.decoder
        weight = talker.codec_embedding.weight
        kv = torch.finfo(cache_dtype(weight.dtype, weight.device)).bits // 8
        caches = 2 * tc.num_layers * tc.num_kv_heads * capacity * tc.head_dim * kv
        caches += 2 * pc.num_layers * pc.num_kv_heads * predictor.cfg.num_code_groups * pc.head_dim * kv
        trailing = capacity * tc.hidden_size * weight.element_size()
        return caches + trailing + talker.cfg.vocab_size * 6

    def row_views(self, row: int, length: int):
        """The talker caches of one row, first `length` positions (for its prefill)."""
        return ([k[row:row + 1, :, :length] for k in self.k], [v[row:row + 1, :, :length] for v in self.v])

    def grow(self, capacity: int) -> None:
        """A larger capacity, keeping what is written (private single-request pools only: a
        worker's pool is sized once)."""
        if capacity <= self.capacity:
            return
        def wider(t: torch.Tensor, dim: int) -> torch.Tensor:
            shape = list(t.shape)
            shape[dim] = capacity
            out = t.new_zeros(shape)
            out.narrow(dim, 0, t.shape[dim]).copy_(t)
            return out
        self.k = [wider(k, 2) for k in self.k]
        self.v = [wider(v, 2) for v in self.v]
        self.trailing = wider(self.trailing, 1)
        self.capacity = capacity
        self.cos, self.sin = self.talker.decoder.rope_table(capacity, self.dtype)
        self.positions = torch.arange(capacity, device=self.device)
