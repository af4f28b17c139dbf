"""The talker: a Qwen3 decoder that reads text and codec embeddings and predicts codebook 0.

Also home of the Qwen3 decoder stack the code predictor shares (q/k RMSNorm, grouped-query
attention, RoPE, SwiGLU MLP). Layers only: loading is in engine/loader.py, the decode step in
engine/batch/step.py.

RoPE: the official talker uses multimodal RoPE (mrope_section, interleaved) with three
position ids per token; for speech all three are equal, and then every section rotates by
the same angle, which is plain 1-D RoPE over the cache position. The parity tests prove it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.config import DecoderConfig, TalkerConfig
from engine.layers import RMSNorm, apply_rope, rope_cos_sin, rope_inv_freq


class Attention(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.n_heads, self.n_kv, self.head_dim = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        bias = cfg.attention_bias
        self.wq = nn.Linear(cfg.hidden_size, cfg.num_heads * cfg.head_dim, bias=bias)
        self.wk = nn.Linear(cfg.hidden_size, cfg.num_kv_heads * cfg.head_dim, bias=bias)
        self.wv = nn.Linear(cfg.hidden_size, cfg.num_kv_heads * cfg.head_dim, bias=bias)
        self.wo = nn.Linear(cfg.num_heads * cfg.head_dim, cfg.hidden_size, bias=bias)
        self.q_norm = RMSNorm(cfg.head_dim, cfg.rms_norm_eps)  # per head, before RoPE (Qwen3)
        self.k_norm = RMSNorm(cfg.head_dim, cfg.rms_norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, k_cache: torch.Tensor,
                v_cache: torch.Tensor, write_pos: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x: [B, T, C], written to the caches at positions write_pos [B, T].

        k_cache, v_cache: [B, H_kv, L, D], views of the caller's caches (row b = batch row b);
        every key in [0, L) is read. mask: [B, 1, T, L] bool (True: may attend), or None:
        causal when T > 1 (then T == L: a prefill from position 0), all L keys when T == 1.
        """
        B, T, _ = x.shape
        q = self.q_norm(self.wq(x).view(B, T, self.n_heads, self.head_dim)).transpose(1, 2)  # [B, H, T, D]
        k = self.k_norm(self.wk(x).view(B, T, self.n_kv, self.head_dim)).transpose(1, 2)  # [B, Hkv, T, D]
        v = self.wv(x).view(B, T, self.n_kv, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        index = write_pos[:, None, :, None].expand(B, self.n_kv, T, self.head_dim)
        k_cache.scatter_(2, index, k.to(k_cache.dtype))  # in place: per-row positions, no host sync
        v_cache.scatter_(2, index, v.to(v_cache.dtype))
        q = q.to(k_cache.dtype)  # the cache may be wider than the weights (float32 on CPU)
        if T == 1:
            # One new token per row: the query heads that share a KV head become that head's
            # queries, so a plain (non-GQA) attention kernel serves every device and mask.
            G = self.n_heads // self.n_kv
            y = F.scaled_dot_product_attention(q.reshape(B, self.n_kv, G, self.head_dim), k_cache, v_cache,
                                               attn_mask=mask)  # [B, Hkv, G, D]; mask [B, 1, 1, L] broadcasts
        else:
            y = F.scaled_dot_product_attention(q, k_cache, v_cache, attn_mask=mask, is_causal=mask is None,
                                               enable_gqa=self.n_kv != self.n_heads)  # [B, H, T, D]
            y = y.transpose(1, 2)
        y = y.to(x.dtype).reshape(B, T, self.n_heads * self.head_dim)  # [B, T, H * D]
        return self.wo(y)  # [B, T, C]


class MLP(nn.Module):
    def __init__(self, hidden: int, intermediate: int):
        super().__init__()
        self.w_gate = nn.Linear(hidden, intermediate, bias=False)
        self.w_up = nn.Linear(hidden, intermediate, bias=False)
        self.w_down = nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_down(F.silu(self.w_gate(x)) * self.w_up(x))


class Block(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, x, cos, sin, k_cache, v_cache, write_pos, mask):
        x = x + self.attn(self.attn_norm(x), cos, sin, k_cache, v_cache, write_pos, mask)
        return x + self.mlp(self.mlp_norm(x))


class DecoderStack(nn.Module):
    """Pre-norm Qwen3 decoder layers + final norm, run against caller-owned KV caches
    (engine.batch.pool.DecodePool owns them)."""

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.cfg = cfg
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.init_buffers(None)

    def init_buffers(self, device) -> None:
        self.register_buffer("inv_freq", rope_inv_freq(self.cfg.head_dim, self.cfg.rope_theta, device=device),
                             persistent=False)

    def rope_table(self, max_len: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin for positions [0, max_len): [max_len, head_dim] each, computed in float32."""
        positions = torch.arange(max_len, device=self.inv_freq.device)
        return rope_cos_sin(self.inv_freq, positions, dtype)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, k_caches: list[torch.Tensor],
                v_caches: list[torch.Tensor], write_pos: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x: [B, T, C]; cos/sin: [B, T, D] (or [T, D]) for write_pos [B, T]; one cache view per
        layer (see Attention.forward); returns the normed hidden states [B, T, C]."""
        for layer, k_cache, v_cache in zip(self.layers, k_caches, v_caches):
            x = layer(x, cos, sin, k_cache, v_cache, write_pos, mask)
        return self.norm(x)


class TextProjection(nn.Module):
    """Two-layer MLP from the text embedding width to the talker width (bias, SiLU)."""

    def __init__(self, text_hidden: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(text_hidden, text_hidden, bias=True)
        self.fc2 = nn.Linear(text_hidden, hidden, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.silu(self.fc1(x)))


class Talker(nn.Module):
    def __init__(self, cfg: TalkerConfig):
        super().__init__()
        self.cfg = cfg
        hidden = cfg.decoder.hidden_size
        self.text_embedding = nn.Embedding(cfg.text_vocab_size, cfg.text_hidden_size)
        self.text_projection = TextProjection(cfg.text_hidden_size, hidden)
        self.codec_embedding = nn.Embedding(cfg.vocab_size, hidden)
        self.decoder = DecoderStack(cfg.decoder)
        self.codec_head = nn.Linear(hidden, cfg.vocab_size, bias=False)

    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        """Text token ids [..., T] -> talker-width embeddings [..., T, C]."""
        return self.text_projection(self.text_embedding(ids))

    def embed_codec(self, ids: torch.Tensor) -> torch.Tensor:
        """Codec ids (codebook 0 or control ids) [..., T] -> [..., T, C]."""
        return self.codec_embedding(ids)
