"""The code predictor ("sub-talker"): codebooks 1..15 of a frame from the talker's hidden state
and codebook 0.

Per frame it runs a short sequence of its own: [talker hidden, embed(code 0)] as a two-token
prefill, then one step per further codebook, each step embedding the previous code with that
codebook's table and reading the next code with that codebook's head (moshi's depformer
pattern). Its embeddings are talker-width (their sum is also the talker's next input); a
linear projection maps them to the predictor's width when the two differ.
"""
from __future__ import annotations

import torch
from torch import nn

from engine.config import CodePredictorConfig
from engine.talker import DecoderStack


class CodePredictor(nn.Module):
    def __init__(self, cfg: CodePredictorConfig):
        super().__init__()
        self.cfg = cfg
        n = cfg.num_code_groups - 1
        self.embeddings = nn.ModuleList(nn.Embedding(cfg.vocab_size, cfg.talker_hidden_size) for _ in range(n))
        self.proj = nn.Linear(cfg.talker_hidden_size, cfg.decoder.hidden_size) if cfg.needs_projection else None
        self.decoder = DecoderStack(cfg.decoder)
        self.heads = nn.ModuleList(nn.Linear(cfg.decoder.hidden_size, cfg.vocab_size, bias=False) for _ in range(n))

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Talker-width inputs [..., Ct] -> predictor width [..., Cp]."""
        return x if self.proj is None else self.proj(x)

    def embed_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes of codebooks 1..15 [..., 15] -> talker-width embeddings [..., 15, Ct]."""
        return torch.stack([emb(codes[..., i]) for i, emb in enumerate(self.embeddings)], dim=-2)
