"""Codec encoder: 24 kHz mono audio -> 12.5 Hz codes [T, 16] (the reference codes of ICL mode).

The released speech tokenizer borrows its encoder from Kyutai's Mimi (as packaged in
transformers' MimiModel): a causal SEANet conv encoder (25 Hz latents), a causal transformer
with layer scale, a stride-2 causal conv to 12.5 Hz, and a split residual vector quantizer
(1 semantic codebook, then acoustic codebooks; both quantize the same latent). Only the first
16 codebooks are valid for Qwen3-TTS (`encoder_valid_num_quantizers`), and since residual
quantization is sequential the first 15 acoustic codebooks do not depend on the rest, so the
unused ones are neither loaded nor run.

Every conv is causal: left padding of (kernel - stride) and, on the right, just enough to fill
the last stride, so a clip of N samples yields ceil(N / hop) frames, hop = prod(strides).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.codec_config import CodecEncoderConfig
from engine.errors import UnsupportedModelError
from engine.layers import apply_rope, rope_cos_sin, rope_inv_freq


class CausalConv1d(nn.Module):
    """Conv1d padded on the left by (effective kernel - stride) and on the right up to a whole
    stride, so an input of L samples gives ceil(L / stride) outputs and no output sees the future.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1,
                 bias: bool = True, pad_mode: str = "constant"):
        super().__init__()
        if pad_mode not in ("constant", "replicate"):
            raise UnsupportedModelError(f"codec encoder conv pad_mode {pad_mode!r} is not supported")
        self.conv = nn.Conv1d(cin, cout, kernel, stride, dilation=dilation, bias=bias)
        self.stride = stride
        self.left_pad = (kernel - 1) * dilation + 1 - stride
        self.pad_mode = pad_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[-1]
        right_pad = -length % self.stride  # fill the last stride
        x = F.pad(x, (self.left_pad, right_pad), mode=self.pad_mode)
        return self.conv(x)


class ResidualUnit(nn.Module):
    """SEANet residual unit: x + conv1x1(elu(conv_k,dilated(elu(x))))."""

    def __init__(self, cfg: CodecEncoderConfig, dim: int, dilation: int):
        super().__init__()
        hidden = dim // cfg.compress
        self.conv1 = CausalConv1d(dim, hidden, cfg.residual_kernel_size, dilation=dilation, pad_mode=cfg.pad_mode)
        self.conv2 = CausalConv1d(hidden, dim, 1, pad_mode=cfg.pad_mode)
        self.shortcut = CausalConv1d(dim, dim, 1, pad_mode=cfg.pad_mode) if cfg.use_conv_shortcut else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.elu(self.conv1(F.elu(x))))
        return (self.shortcut(x) if self.shortcut is not None else x) + y


class EncoderStage(nn.Module):
    """Residual units at one width, then a strided conv that doubles the channels."""

    def __init__(self, cfg: CodecEncoderConfig, dim: int, ratio: int):
        super().__init__()
        self.res = nn.ModuleList(
            ResidualUnit(cfg, dim, cfg.dilation_growth_rate ** j) for j in range(cfg.num_residual_layers))
        self.down = CausalConv1d(dim, 2 * dim, 2 * ratio, stride=ratio, pad_mode=cfg.pad_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for unit in self.res:
            x = unit(x)
        return self.down(F.elu(x))


class SeanetEncoder(nn.Module):
    """Waveform [B, 1, N] -> latents [B, hidden, ceil(N / prod(ratios))]."""

    def __init__(self, cfg: CodecEncoderConfig):
        super().__init__()
        self.stem = CausalConv1d(cfg.audio_channels, cfg.num_filters, cfg.kernel_size, pad_mode=cfg.pad_mode)
        widths = [cfg.num_filters * 2 ** i for i in range(len(cfg.upsampling_ratios))]
        self.stages = nn.ModuleList(
            EncoderStage(cfg, w, r) for w, r in zip(widths, reversed(cfg.upsampling_ratios)))
        self.head = CausalConv1d(2 * widths[-1], cfg.hidden_size, cfg.last_kernel_size, pad_mode=cfg.pad_mode)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = self.stem(wav)
        for stage in self.stages:
            x = stage(x)
        return self.head(F.elu(x))


_ACTIVATIONS = {"gelu": F.gelu, "silu": F.silu,
                "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh")}


class EncoderAttention(nn.Module):
    def __init__(self, cfg: CodecEncoderConfig):
        super().__init__()
        self.n_heads, self.n_kv, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        bias = cfg.attention_bias
        self.q_proj = nn.Linear(cfg.hidden_size, self.n_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(cfg.hidden_size, self.n_kv * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(cfg.hidden_size, self.n_kv * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, cfg.hidden_size, bias=bias)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # [B, H, T, D]
        k = self.k_proj(x).view(B, T, self.n_kv, self.head_dim).transpose(1, 2)  # [B, Hkv, T, D]
        v = self.v_proj(x).view(B, T, self.n_kv, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.n_kv != self.n_heads:
            k = k.repeat_interleave(self.n_heads // self.n_kv, dim=1)
            v = v.repeat_interleave(self.n_heads // self.n_kv, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1)  # [B, H, T, D]
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim))


class EncoderLayer(nn.Module):
    """Pre-norm (LayerNorm) block whose attention and MLP outputs are scaled per channel."""

    def __init__(self, cfg: CodecEncoderConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.norm_eps)
        self.attn = EncoderAttention(cfg)
        self.attn_scale = nn.Parameter(torch.full((cfg.hidden_size,), cfg.layer_scale_initial_scale))
        self.norm2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.norm_eps)
        self.fc1 = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.fc2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)
        self.mlp_scale = nn.Parameter(torch.full((cfg.hidden_size,), cfg.layer_scale_initial_scale))
        self.act = _ACTIVATIONS[cfg.hidden_act]

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn_scale * self.attn(self.norm1(x), cos, sin)
        return x + self.mlp_scale * self.fc2(self.act(self.fc1(self.norm2(x))))


class EncoderTransformer(nn.Module):
    """Causal transformer over the 25 Hz latents, [B, T, C] -> [B, T, C].

    Full causal attention: the config carries `sliding_window`, but the official encode path
    (transformers' MimiModel without streaming) builds a plain causal mask, so every frame sees
    the whole past. Matching it is what makes the codes equal to the official ones.
    """

    def __init__(self, cfg: CodecEncoderConfig):
        super().__init__()
        if cfg.hidden_act not in _ACTIVATIONS:
            raise UnsupportedModelError(f"codec encoder activation {cfg.hidden_act!r} is not supported")
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.head_dim, self.rope_theta = cfg.head_dim, cfg.rope_theta
        self.init_buffers()

    def init_buffers(self, device=None) -> None:
        self.register_buffer("inv_freq", rope_inv_freq(self.head_dim, self.rope_theta, device=device),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(x.shape[1], device=x.device)
        cos, sin = rope_cos_sin(self.inv_freq, positions, x.dtype)  # [T, D]
        for layer in self.layers:
            x = layer(x, cos, sin)
        return x


class Codebook(nn.Module):
    """Euclidean codebook stored as in the checkpoint: entries = embed_sum / cluster_usage."""

    def __init__(self, size: int, dim: int, epsilon: float = 1e-5):
        super().__init__()
        self.register_buffer("embed_sum", torch.zeros(size, dim))
        self.register_buffer("cluster_usage", torch.ones(size))
        self.epsilon = epsilon

    def entries(self) -> torch.Tensor:
        return self.embed_sum / self.cluster_usage.clamp(min=self.epsilon)[:, None]  # [K, D]

    def nearest(self, x: torch.Tensor, entries: torch.Tensor) -> torch.Tensor:
        """x [N, D] -> index [N] of the closest entry (float32 distances, as the official)."""
        return torch.cdist(x[None].float(), entries[None].float(), p=2)[0].argmin(dim=-1)


class ResidualQuantizer(nn.Module):
    """Project the latent, then quantize the residual codebook after codebook."""

    def __init__(self, cfg: CodecEncoderConfig, num_codebooks: int):
        super().__init__()
        dim = cfg.vector_quantization_hidden_dimension
        self.input_proj = nn.Conv1d(cfg.hidden_size, dim, 1, bias=False) if dim != cfg.hidden_size else None
        self.codebooks = nn.ModuleList(Codebook(cfg.codebook_size, cfg.codebook_dim) for _ in range(num_codebooks))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """latent [B, C, T] -> codes [B, K, T]."""
        x = self.input_proj(latent) if self.input_proj is not None else latent
        residual = x.transpose(1, 2)  # [B, T, D]
        B, T, D = residual.shape
        codes = []
        for book in self.codebooks:
            entries = book.entries()
            idx = book.nearest(residual.reshape(B * T, D), entries).view(B, T)
            residual = residual - F.embedding(idx, entries)
            codes.append(idx)
        return torch.stack(codes, dim=1)


class CodecEncoder(nn.Module):
    """Mimi-style encoder of the 12 Hz speech tokenizer, valid codebooks only."""

    def __init__(self, cfg: CodecEncoderConfig):
        super().__init__()
        if not cfg.use_causal_conv:
            raise UnsupportedModelError("only causal-conv (Mimi) codec encoders are supported")
        self.cfg = cfg
        self.seanet = SeanetEncoder(cfg)
        self.transformer = EncoderTransformer(cfg)
        k = cfg.downsample_kernel
        self.downsample = None if k is None else CausalConv1d(
            cfg.hidden_size, cfg.hidden_size, k, stride=2, bias=False, pad_mode="replicate")
        self.semantic = ResidualQuantizer(cfg, cfg.num_semantic_quantizers)
        self.acoustic = ResidualQuantizer(cfg, cfg.valid_num_quantizers - cfg.num_semantic_quantizers)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, N] (mono, cfg.sampling_rate, same length) -> codes [B, 16, ceil(N / hop)]."""
        x = self.seanet(wav[:, None].to(self.seanet.stem.conv.weight.dtype))  # [B, 1, N] -> [B, C, T25]
        x = self.transformer(x.transpose(1, 2)).transpose(1, 2)
        if self.downsample is not None:
            x = self.downsample(x)  # [B, C, T12]
        return torch.cat([self.semantic(x), self.acoustic(x)], dim=1)

    @torch.inference_mode()
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """One clip [N] -> codes [T, 16] (long), T = ceil(N / encode_downsample_rate).

        The official `encode` keeps ceil(valid samples / encode_downsample_rate) frames.
        """
        if wav.dim() != 1:
            raise ValueError(f"expected one mono clip [N], got shape {tuple(wav.shape)}")
        codes = self(wav[None].to(self.seanet.stem.conv.weight.device))[0]  # [16, T]
        frames = -(-wav.shape[0] // self.cfg.encode_downsample_rate)
        return codes[:, :frames].transpose(0, 1).contiguous()
