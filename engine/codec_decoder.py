"""The 12 Hz codec decoder (codes -> 24 kHz waveform), offline and exactly streamed.

    codes [B, T, 16] -> split RVQ -> causal conv -> sliding-window transformer
    -> upsampling stages (transposed conv + ConvNeXt) -> causal conv
    -> decoder blocks (SnakeBeta, transposed conv, 3 dilated residual units)
    -> SnakeBeta -> causal conv -> clamp to [-1, 1]              -> wav [B, T * hop]

Every layer is causal: convolutions are left-padded, transposed convolutions are trimmed on
the right, attention sees the current frame and the `sliding_window - 1` before it. So a
decoder that carries, per layer, what the next frame still needs from the past produces
the samples of the full decode frame by frame, without re-decoding anything:
  * causal conv: its last (kernel - 1) * dilation input samples        (ConvState)
  * transposed conv: the overlap its past frames add to future samples (TransConvState)
  * attention: a ring buffer of the window's keys/values               (KVState, RingState)
None of these grows with the stream length.

One `forward(x, stream=None)` serves both uses (moshi `modules/streaming.py` style):
`stream=None` is the offline pass (zero left context); a `StreamState` holds the small state
dataclass of every stateful module of one stream, created at its first chunk.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Iterator, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from engine.codec_config import CodecDecoderConfig
from engine.errors import InvalidParameterError
from engine.layers import RMSNorm, apply_rope, rope_cos_sin, rope_inv_freq
from engine.quantizer import SplitRVQDecoder

S = TypeVar("S")
_EMPTY = {"slot_pos": -1}  # the value of a state field before any frame (others: 0)


class StreamState:
    """The streaming state of one stream through one decoder: a small dataclass per module.

    Modules fetch their own state with `get(self, make)`; `make()` builds it (zeros = silence
    before the stream) at the first chunk. Keeping the states here, not on the modules, lets
    several streams share one set of weights.
    """

    def __init__(self):
        self._states: dict[nn.Module, object] = {}

    def get(self, module: nn.Module, make: Callable[[], S]) -> S:
        state = self._states.get(module)
        if state is None:
            state = self._states[module] = make()
        return state

    def reset(self) -> None:
        """Forget everything: the next chunk starts a new stream."""
        self._states.clear()

    def copy(self) -> "StreamState":
        """An independent copy (tensors cloned): it continues exactly where this one is."""
        return self._map(torch.clone)

    # ---- many streams in one state (engine.batch.codec): row i of every tensor is stream i

    def select(self, rows: torch.Tensor) -> "StreamState":
        """The streams at `rows` [n] (long) as a new state of batch n (tensors copied)."""
        return self._map(lambda t: t.index_select(0, rows))

    def assign(self, rows: torch.Tensor, other: "StreamState") -> None:
        """Write the n streams of `other` (same modules, batch n) into `rows` [n], in place."""
        for module, state in self._states.items():
            theirs = other._states[module]
            for f in dataclasses.fields(state):
                value = getattr(state, f.name)
                if isinstance(value, torch.Tensor):
                    value.index_copy_(0, rows, getattr(theirs, f.name))

    def clear(self, rows: torch.Tensor) -> None:
        """Make `rows` new streams (silence before them; empty attention rings)."""
        for state in self._states.values():
            for f in dataclasses.fields(state):
                value = getattr(state, f.name)
                if isinstance(value, torch.Tensor):
                    value.index_fill_(0, rows, _EMPTY.get(f.name, 0))

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "StreamState":
        out = StreamState()
        for module, state in self._states.items():
            out._states[module] = dataclasses.replace(state, **{
                f.name: fn(getattr(state, f.name)) for f in dataclasses.fields(state)
                if isinstance(getattr(state, f.name), torch.Tensor)})
        return out

    def tensors(self) -> Iterator[torch.Tensor]:
        """Every tensor held (for size checks)."""
        for state in self._states.values():
            for f in dataclasses.fields(state):
                value = getattr(state, f.name)
                if isinstance(value, torch.Tensor):
                    yield value

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors())


# ---------------------------------------------------------------------------------------
# convolutions


@dataclass
class ConvState:
    context: torch.Tensor  # [B, C_in, (kernel - 1) * dilation]: past inputs still in reach


class CausalConv1d(nn.Conv1d):
    """Stride-1 conv that sees only the past: left-padded by (kernel - 1) * dilation."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, dilation: int = 1, groups: int = 1):
        super().__init__(in_ch, out_ch, kernel, dilation=dilation, groups=groups)
        self.context = (kernel - 1) * dilation

    def forward(self, x: torch.Tensor, stream: StreamState | None = None) -> torch.Tensor:
        """x: [B, C_in, T] -> [B, C_out, T]."""
        if self.context:
            if stream is None:
                x = F.pad(x, (self.context, 0))
            else:
                st = stream.get(self, lambda: ConvState(x.new_zeros(x.shape[0], x.shape[1], self.context)))
                x = torch.cat([st.context, x], dim=-1)
                st.context = x[..., -self.context:].contiguous()
        return self._valid_conv(x)

    def _valid_conv(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C_in, L + context] -> [B, C_out, L], no padding."""
        B, L = x.shape[0], x.shape[-1] - self.context
        if self.groups == 1 and L * 16 <= self.in_channels:
            # short inputs (streaming) against wide layers: one GEMM with the weight as stored
            # beats oneDNN's conv, which is tuned for long inputs (2-4x on the first vocoder
            # conv at 4-32 samples); columns are the k dilated taps of each input sample.
            cols = x
            if self.context:
                taps = x.unfold(-1, self.context + 1, 1)[..., ::self.dilation[0]]  # [B, C_in, L, k]
                cols = taps.transpose(2, 3).reshape(B, -1, L)  # [B, C_in * k, L], row c * k + j
            return torch.matmul(self.weight.view(self.out_channels, -1), cols).add_(self.bias[:, None])
        return F.conv1d(x, self.weight, self.bias, 1, 0, self.dilation, self.groups)


@dataclass
class TransConvState:
    tail: torch.Tensor  # [B, C_out, kernel - stride]: past frames' share of future samples, no bias


class CausalConvTranspose1d(nn.ConvTranspose1d):
    """Transposed conv whose output for frame t is final once frame t is in: the
    (kernel - stride) samples it spills past the end are trimmed offline, carried when streaming."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int):
        super().__init__(in_ch, out_ch, kernel, stride=stride)
        self.overlap = kernel - stride

    def forward(self, x: torch.Tensor, stream: StreamState | None = None) -> torch.Tensor:
        """x: [B, C_in, T] -> [B, C_out, T * stride]."""
        n = x.shape[-1] * self.stride[0]
        y = self._full(x)  # [B, C_out, n + overlap], no bias
        if stream is not None and self.overlap:
            st = stream.get(self, lambda: TransConvState(x.new_zeros(x.shape[0], self.out_channels, self.overlap)))
            y[..., :self.overlap] += st.tail
            st.tail = y[..., n:].contiguous()
        return y[..., :n] + self.bias[:, None]

    def _full(self, x: torch.Tensor) -> torch.Tensor:
        """Untrimmed output without bias: [B, C_in, L] -> [B, C_out, (L - 1) * stride + kernel]."""
        k, s = self.kernel_size[0], self.stride[0]
        B, _, L = x.shape
        if k % s or L * 8 > self.in_channels:
            return F.conv_transpose1d(x, self.weight, None, s)
        # short inputs on wide layers (streaming), where PyTorch's CPU transposed conv is a slow
        # fallback (14x on the first vocoder block at 4 samples): kernel = m * stride, so each
        # input sample writes m blocks of `stride` outputs; one GEMM gives every sample's
        # blocks, then block i of sample l lands on output block l + i.
        m, C = k // s, self.out_channels
        blocks = torch.matmul(x.transpose(1, 2), self.weight.view(self.in_channels, -1))  # [B, L, C * k]
        blocks = blocks.view(B, L, C, m, s)
        if m == 1:
            y = blocks[:, :, :, 0]  # [B, L, C, s]
        else:
            y = blocks.new_zeros(B, L + m - 1, C, s)
            for i in range(m):
                y[:, i:i + L] += blocks[:, :, :, i]
        return y.permute(0, 2, 1, 3).reshape(B, C, -1)  # [B, C, (L + m - 1) * s]


# ---------------------------------------------------------------------------------------
# activations and blocks


class SnakeBeta(nn.Module):
    """x + sin^2(x * e^alpha) / e^beta, per channel (alpha, beta stored as logs)."""

    def __init__(self, dim: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(dim))
        self.beta = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C, T]."""
        alpha = self.alpha.exp()[:, None]
        inv_beta = 1.0 / (self.beta.exp()[:, None] + 1e-9)
        wave = torch.mul(x, alpha).sin_().square_()  # in place: one temporary, not three
        return torch.addcmul(x, wave, inv_beta)


class ConvNeXtBlock(nn.Module):
    """Causal depthwise conv, then a per-sample MLP on a residual branch scaled by gamma."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = CausalConv1d(dim, dim, 7, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x: torch.Tensor, stream: StreamState | None = None) -> torch.Tensor:
        """x: [B, C, T]."""
        h = self.dwconv(x, stream).transpose(1, 2)  # [B, T, C]
        h = self.pwconv2(F.gelu(self.pwconv1(self.norm(h))))
        return x + (self.gamma * h).transpose(1, 2)


class UpsampleStage(nn.Module):
    """Non-overlapping transposed conv (kernel == stride) then a ConvNeXt block."""

    def __init__(self, dim: int, factor: int):
        super().__init__()
        self.trans = CausalConvTranspose1d(dim, dim, factor, factor)
        self.convnext = ConvNeXtBlock(dim)

    def forward(self, x: torch.Tensor, stream: StreamState | None = None) -> torch.Tensor:
        return self.convnext(self.trans(x, stream), stream)


class ResidualUnit(nn.Module):
    def __init__(self, dim: int, dilation: int):
        super().__init__()
        self.snake1 = SnakeBeta(dim)
        self.conv1 = CausalConv1d(dim, dim, 7, dilation=dilation)
        self.snake2 = SnakeBeta(dim)
        self.conv2 = CausalConv1d(dim, dim, 1)

    def forward(self, x: torch.Tensor, stream: StreamState | None = None) -> torch.Tensor:
        h = self.conv1(self.snake1(x), stream)
        return x + self.conv2(self.snake2(h), stream)


class DecoderBlock(nn.Module):
    """SnakeBeta, transposed conv (x rate samples, half the channels), dilated residual units."""

    def __init__(self, in_dim: int, out_dim: int, rate: int):
        super().__init__()
        self.snake = SnakeBeta(in_dim)
        self.trans = CausalConvTranspose1d(in_dim, out_dim, 2 * rate, rate)
        self.units = nn.ModuleList(ResidualUnit(out_dim, d) for d in (1, 3, 9))

    def forward(self, x: torch.Tensor, stream: StreamState | None = None) -> torch.Tensor:
        x = self.trans(self.snake(x), stream)
        for unit in self.units:
            x = unit(x, stream)
        return x


# ---------------------------------------------------------------------------------------
# sliding-window transformer


@dataclass
class RingState:
    next_pos: torch.Tensor  # [B] long: frames seen so far by each stream (the next frame's position)
    slot_pos: torch.Tensor  # [B, W] long: the position each ring slot holds (-1: empty)


@dataclass
class KVState:
    k: torch.Tensor  # [B, H_kv, W, D] rotated keys of the last W frames, in ring order
    v: torch.Tensor  # [B, H_kv, W, D]


class Attention(nn.Module):
    def __init__(self, cfg: CodecDecoderConfig):
        super().__init__()
        H, Hkv, D, bias = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, cfg.attention_bias
        self.n_heads, self.n_kv_heads, self.head_dim, self.window = H, Hkv, D, cfg.sliding_window
        self.q_proj = nn.Linear(cfg.hidden_size, H * D, bias=bias)
        self.k_proj = nn.Linear(cfg.hidden_size, Hkv * D, bias=bias)
        self.v_proj = nn.Linear(cfg.hidden_size, Hkv * D, bias=bias)
        self.o_proj = nn.Linear(H * D, cfg.hidden_size, bias=bias)

    def forward(self, x, cos, sin, mask, stream: StreamState | None = None, slots=None) -> torch.Tensor:
        """x: [B, T, C]; mask: [B, 1, T, W + T] (streaming: ring keys first) or [T, T] (offline);
        slots: ring slots [B, n] for the last n new keys of each row (streaming only)."""
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # [B, H, T, D]
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # [B, Hkv, T, D]
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if stream is not None:
            st = stream.get(self, lambda: KVState(*(k.new_zeros(B, self.n_kv_heads, self.window, self.head_dim)
                                                    for _ in range(2))))
            n = slots.shape[1]
            k_all, v_all = torch.cat([st.k, k], dim=2), torch.cat([st.v, v], dim=2)
            index = slots[:, None, :, None].expand(B, self.n_kv_heads, n, self.head_dim)
            st.k.scatter_(2, index, k[:, :, T - n:])  # per row: each stream has its own ring position
            st.v.scatter_(2, index, v[:, :, T - n:])
            k, v = k_all, v_all
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=self.n_kv_heads != self.n_heads)
        return self.o_proj(out.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim))


class MLP(nn.Module):
    def __init__(self, cfg: CodecDecoderConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)
        self.act = F.silu if cfg.hidden_act == "silu" else F.gelu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


class TransformerLayer(nn.Module):
    """Pre-norm attention and MLP, each residual branch scaled per channel (layer scale)."""

    def __init__(self, cfg: CodecDecoderConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)
        self.attn_scale = nn.Parameter(torch.full((cfg.hidden_size,), cfg.layer_scale_initial_scale))
        self.mlp_scale = nn.Parameter(torch.full((cfg.hidden_size,), cfg.layer_scale_initial_scale))

    def forward(self, h, cos, sin, mask, stream=None, slots=None) -> torch.Tensor:
        h = h + self.attn_scale * self.self_attn(self.input_layernorm(h), cos, sin, mask, stream, slots)
        return h + self.mlp_scale * self.mlp(self.post_attention_layernorm(h))


class DecoderTransformer(nn.Module):
    """latent [B, T, latent_dim] -> [B, T, latent_dim] through causal sliding-window attention."""

    def __init__(self, cfg: CodecDecoderConfig):
        super().__init__()
        self.window, self.head_dim, self.rope_theta = cfg.sliding_window, cfg.head_dim, cfg.rope_theta
        self.input_proj = nn.Linear(cfg.latent_dim, cfg.hidden_size)
        self.layers = nn.ModuleList(TransformerLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.output_proj = nn.Linear(cfg.hidden_size, cfg.latent_dim)
        self.init_buffers(None)

    def init_buffers(self, device) -> None:
        """The rotary inverse frequencies (computed, not stored in the checkpoint)."""
        self.register_buffer("inv_freq", rope_inv_freq(self.head_dim, self.rope_theta, device), persistent=False)

    def forward(self, x: torch.Tensor, stream: StreamState | None = None) -> torch.Tensor:
        B, T, dev = x.shape[0], x.shape[1], x.device
        steps = torch.arange(T, device=dev)
        if stream is None:  # offline: every row starts at position 0
            pos = steps
            mask = (pos[None] <= pos[:, None]) & (pos[None] > pos[:, None] - self.window)  # [T, T]
            slots = ring = None
        else:  # each row continues its own stream: positions [B, T], ring keys first
            ring = stream.get(self, lambda: RingState(torch.zeros(B, dtype=torch.long, device=dev),
                                                      torch.full((B, self.window), -1, dtype=torch.long, device=dev)))
            pos = ring.next_pos[:, None] + steps  # [B, T] absolute positions, as in the full decode
            key_pos = torch.cat([ring.slot_pos, pos], dim=1)[:, None, :]  # [B, 1, W + T]
            q_pos = pos[:, :, None]  # [B, T, 1]
            # query at p sees keys at (p - W, p]; empty ring slots (position -1) never
            mask = ((key_pos <= q_pos) & (key_pos > q_pos - self.window) & (key_pos >= 0))[:, None]
            kept = pos[:, -self.window:]  # only the last W new frames can still be attended to
            slots = kept % self.window
        cos, sin = rope_cos_sin(self.inv_freq, pos, x.dtype)
        h = self.input_proj(x)
        for layer in self.layers:
            h = layer(h, cos, sin, mask, stream, slots)
        if ring is not None:
            ring.slot_pos.scatter_(1, slots, kept)
            ring.next_pos += T
        return self.output_proj(self.norm(h))


# ---------------------------------------------------------------------------------------
# the decoder


class CodecDecoder(nn.Module):
    """Speech-tokenizer decoder: codes [B, T, num_quantizers] -> wav [B, T * hop] in [-1, 1]."""

    def __init__(self, cfg: CodecDecoderConfig):
        super().__init__()
        self.config = cfg
        self.quantizer = SplitRVQDecoder(cfg.num_quantizers, cfg.codebook_size, cfg.codebook_dim,
                                         cfg.num_semantic_quantizers)
        self.pre_conv = CausalConv1d(cfg.codebook_dim, cfg.latent_dim, 3)
        self.transformer = DecoderTransformer(cfg)
        self.upsample = nn.ModuleList(UpsampleStage(cfg.latent_dim, r) for r in cfg.upsampling_ratios)
        self.conv_in = CausalConv1d(cfg.latent_dim, cfg.decoder_dim, 7)
        dims = [cfg.decoder_dim // 2 ** i for i in range(len(cfg.upsample_rates) + 1)]
        self.blocks = nn.ModuleList(DecoderBlock(dims[i], dims[i + 1], r) for i, r in enumerate(cfg.upsample_rates))
        self.snake_out = SnakeBeta(dims[-1])
        self.conv_out = CausalConv1d(dims[-1], 1, 7)

    def forward(self, codes: torch.Tensor, stream: StreamState | None = None) -> torch.Tensor:
        """codes: [B, T, K] long -> [B, T * hop]. With `stream`, continues that stream."""
        x = self.quantizer(codes).transpose(1, 2)  # [B, codebook_dim, T]
        x = self.pre_conv(x, stream).transpose(1, 2)  # [B, T, latent]
        x = self.transformer(x, stream).transpose(1, 2)  # [B, latent, T]
        for stage in self.upsample:
            x = stage(x, stream)
        x = self.conv_in(x, stream)
        for block in self.blocks:
            x = block(x, stream)
        wav = self.conv_out(self.snake_out(x), stream)  # [B, 1, T * hop]
        return wav[:, 0].clamp(min=-1.0, max=1.0)

    def check_codes(self, codes) -> torch.Tensor:
        """Validate [T, K] or [B, T, K] integer codes in range; return them as long on our device."""
        cfg = self.config
        if not isinstance(codes, torch.Tensor):
            codes = torch.as_tensor(codes)
        if codes.dim() not in (2, 3) or codes.shape[-1] != cfg.num_quantizers:
            raise InvalidParameterError(f"codes must be [frames, {cfg.num_quantizers}] (or batched), "
                                        f"got shape {list(codes.shape)}")
        if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
            raise InvalidParameterError(f"codes must be integers, got {codes.dtype}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= cfg.codebook_size):
            raise InvalidParameterError(f"codes must lie in [0, {cfg.codebook_size}), "
                                        f"got [{int(codes.min())}, {int(codes.max())}]")
        return codes.to(device=self.conv_out.weight.device, dtype=torch.long)

    @torch.inference_mode()
    def decode(self, codes, max_chunk: int | None = 300) -> torch.Tensor:
        """codes [T, K] -> float32 wav [T * hop] ([B, T, K] -> [B, T * hop]), on the model's device.

        Inputs longer than `max_chunk` frames are decoded through the streaming state in chunks
        of `max_chunk`: the same samples as one pass, with bounded memory (None: one pass).
        """
        codes = self.check_codes(codes)
        batched = codes.dim() == 3
        codes = codes if batched else codes[None]
        T = codes.shape[1]
        if T == 0:
            wav = torch.zeros(codes.shape[0], 0, device=codes.device)
        elif max_chunk is None or T <= max_chunk:
            wav = self(codes)
        else:
            stream = StreamState()
            wav = torch.cat([self(codes[:, i:i + max_chunk], stream) for i in range(0, T, max_chunk)], dim=-1)
        wav = wav.float()
        return wav if batched else wav[0]


class StreamingDecoder:
    """Frame-by-frame decoding of one stream, exactly equal to decoding all its frames at once.

        dec = StreamingDecoder(decoder)
        dec.prime(ref_codes)        # ICL: the reference's acoustic context, nothing emitted
        for codes in frames:        # [n, 16] each, any n >= 1
            pcm = dec.push(codes)   # float32 [n * hop], the samples of exactly these frames
    """

    def __init__(self, decoder: CodecDecoder):
        self.decoder = decoder
        self.state = StreamState()
        self.frames = 0  # frames taken in since the last reset (primed ones included)

    def reset(self) -> None:
        """Start a new stream (silence before it)."""
        self.state.reset()
        self.frames = 0

    def copy(self) -> "StreamingDecoder":
        """An independent decoder continuing from this one's state, e.g. one primed with a
        voice's reference codes, copied for each segment instead of priming it again."""
        out = StreamingDecoder(self.decoder)
        out.state, out.frames = self.state.copy(), self.frames
        return out

    @torch.inference_mode()
    def prime(self, ref_codes) -> None:
        """Run reference codes [T, K] through the decoder to fill its state; emit nothing."""
        self.push(ref_codes)

    @torch.inference_mode()
    def push(self, codes) -> torch.Tensor:
        """codes [n, K] -> float32 wav [n * hop] for these n frames, on the model's device."""
        codes = self.decoder.check_codes(codes)
        if codes.dim() != 2:
            raise InvalidParameterError(f"push takes one stream's codes [frames, K], got {list(codes.shape)}")
        if codes.shape[0] == 0:
            return torch.zeros(0, device=codes.device)
        wav = self.decoder(codes[None], self.state)[0]
        self.frames += codes.shape[0]
        return wav.float()
