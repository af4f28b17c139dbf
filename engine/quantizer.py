"""Split residual vector quantizer of the codec decoder: codes -> latent (decode side).

A frame's 16 codes index 16 codebooks: codebook 0 is the semantic one, 1..15 the acoustic
residuals. Each half (semantic / acoustic) sums its codebook entries and projects the sum
with its own 1x1 conv; the two projections add up to the decoder's input latent.

Each codebook is stored as (embedding_sum, cluster_usage), the EMA statistics of training;
an entry is embedding_sum / max(cluster_usage, eps). The division is done once, in
`init_buffers`, not per frame (it would cost more than the lookup itself when streaming).
"""
from __future__ import annotations

import torch
from torch import nn

EPSILON = 1e-5  # floor of cluster_usage (official EuclideanCodebook epsilon)


class Codebook(nn.Module):
    """One codebook in the checkpoint's form; entries are derived in `init_buffers`."""

    def __init__(self, codebook_size: int, dim: int):
        super().__init__()
        self.cluster_usage = nn.Parameter(torch.ones(codebook_size), requires_grad=False)
        self.embedding_sum = nn.Parameter(torch.zeros(codebook_size, dim), requires_grad=False)

    def entries(self) -> torch.Tensor:
        """[codebook_size, dim] codebook entries (divided in float32, returned in the stored dtype)."""
        entries = self.embedding_sum.float() / self.cluster_usage.float().clamp(min=EPSILON)[:, None]
        return entries.to(self.embedding_sum.dtype)


class ResidualCodebooks(nn.Module):
    """A group of codebooks whose entries are summed, then projected to the output width."""

    def __init__(self, num_codebooks: int, codebook_size: int, dim: int, out_dim: int):
        super().__init__()
        self.codebooks = nn.ModuleList(Codebook(codebook_size, dim) for _ in range(num_codebooks))
        self.output_proj = nn.Conv1d(dim, out_dim, 1, bias=False)
        self.init_buffers(None)

    def init_buffers(self, device) -> None:
        """Precompute the entries of every codebook as one [K, codebook_size, dim] table."""
        if self.codebooks[0].embedding_sum.is_meta:
            self.register_buffer("table", None, persistent=False)
            return
        with torch.no_grad():
            table = torch.stack([cb.entries() for cb in self.codebooks])
        self.register_buffer("table", table, persistent=False)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """codes: [B, T, K] -> [B, T, out_dim]."""
        K = codes.shape[-1]
        picked = self.table[torch.arange(K, device=codes.device), codes]  # [B, T, K, dim]
        summed = picked.sum(dim=2)  # [B, T, dim]
        return summed @ self.output_proj.weight[:, :, 0].t()  # 1x1 conv == matmul


class SplitRVQDecoder(nn.Module):
    """codes [B, T, num_quantizers] -> latent [B, T, codebook_dim]."""

    def __init__(self, num_quantizers: int, codebook_size: int, codebook_dim: int, num_semantic: int = 1):
        super().__init__()
        dim = codebook_dim // 2
        self.num_semantic = num_semantic
        self.semantic = ResidualCodebooks(num_semantic, codebook_size, dim, codebook_dim)
        self.acoustic = ResidualCodebooks(num_quantizers - num_semantic, codebook_size, dim, codebook_dim)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        n = self.num_semantic
        return self.semantic(codes[..., :n]) + self.acoustic(codes[..., n:])
