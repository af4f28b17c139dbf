"""The talker: a Qwen3 decoder that reads text and codec embeddings and predicts codebook 0.

Also home of the Qwen3 decoder stack the code predictor shares (q/k RMSNorm, grouped-query
attention, RoPE, SwiGLU MLP). Layers only: loading is in engine/loader.py, the decode loop in
engine/generation.py.

RoPE: the official talker uses multimodal RoPE (mrope_section, interleaved) with three
position ids per token; for speech all three are equal, and then every section rotates by
the same angle, which is plain 1-D RoPE over the cache position. The parity tests prove it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.config import DecoderConfig, TalkerConfig
from engine.layers import KVCache, RMSNorm, apply_rope, rope_cos_sin, rope_inv_freq


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

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache,
                input_pos: torch.Tensor, kv_len: int) -> torch.Tensor:
        """x: [B, T, C] at positions input_pos [T]; attends to cache entries [0, kv_len)."""
        B, T, _ = x.shape
        q = self.q_norm(self.wq(x).view(B, T, self.n_heads, self.head_dim)).transpose(1, 2)  # [B, H, T, D]
        k = self.k_norm(self.wk(x).view(B, T, self.n_kv, self.head_dim)).transpose(1, 2)  # [B, Hkv, T, D]
        v = self.wv(x).view(B, T, self.n_kv, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        k_all, v_all = cache.update(input_pos, k.to(cache.k.dtype), v.to(cache.v.dtype))
        k, v = k_all[:, :, :kv_len], v_all[:, :, :kv_len]  # views of the written prefix, no copy
        q = q.to(k.dtype)  # the cache may be wider than the weights (float32 on CPU, see generation)
        if T == 1:
            mask, causal = None, False  # one new token sees every cached one
        elif kv_len == T:
            mask, causal = None, True  # a prefill from position 0
        else:  # a chunk after cached tokens: causal within the chunk
            mask = torch.arange(kv_len, device=x.device)[None, :] <= input_pos[:, None]  # [T, kv_len]
            causal = False
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                           enable_gqa=self.n_kv != self.n_heads)
        y = y.to(x.dtype).transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim)  # [B, T, H * D]
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

    def forward(self, x, cos, sin, cache, input_pos, kv_len):
        x = x + self.attn(self.attn_norm(x), cos, sin, cache, input_pos, kv_len)
        return x + self.mlp(self.mlp_norm(x))


class DecoderStack(nn.Module):
    """Pre-norm Qwen3 decoder layers + final norm, run against caller-owned KV caches."""

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.cfg = cfg
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.init_buffers(None)

    def init_buffers(self, device) -> None:
        self.register_buffer("inv_freq", rope_inv_freq(self.cfg.head_dim, self.cfg.rope_theta, device=device),
                             persistent=False)

    def new_caches(self, max_len: int, dtype: torch.dtype, batch: int = 1) -> list[KVCache]:
        """One preallocated KV cache per layer for sequences up to max_len."""
        c = self.cfg
        return [KVCache(batch, c.num_kv_heads, max_len, c.head_dim, dtype, self.norm.weight.device)
                for _ in range(c.num_layers)]

    def rope_table(self, max_len: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin for positions [0, max_len): [max_len, head_dim] each, computed in float32."""
        positions = torch.arange(max_len, device=self.inv_freq.device)
        return rope_cos_sin(self.inv_freq, positions, dtype)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, caches: list[KVCache],
                input_pos: torch.Tensor, kv_len: int) -> torch.Tensor:
        """x: [B, T, C]; cos/sin: [T, D] rows for input_pos; returns normed hidden [B, T, C]."""
        for layer, cache in zip(self.layers, caches):
            x = layer(x, cos, sin, cache, input_pos, kv_len)
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
