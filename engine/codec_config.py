"""Configuration of the 12 Hz speech tokenizer (the checkpoint's `speech_tokenizer/config.json`).

`CodecConfig` is the top level (sample rates, frame hop, valid encoder quantizers); the decoder
and the encoder each get their own dataclass. Defaults are the released
Qwen3-TTS-Tokenizer-12Hz values. The official config class defaults differ from the release
for the decoder (hidden 1024 / intermediate 3072, and no codebook_dim / head_dim at all), so
every released config.json states them; we default to what was shipped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from engine.config import known_fields
from engine.errors import UnsupportedModelError

MODEL_TYPE = "qwen3_tts_tokenizer_12hz"


@dataclass
class CodecDecoderConfig:
    """Codes -> waveform: split RVQ, pre-conv, sliding-window transformer, upsampler, vocoder."""

    codebook_size: int = 2048
    codebook_dim: int = 512  # quantizer output width; codebook entries are codebook_dim // 2
    num_quantizers: int = 16  # 1 semantic + 15 acoustic
    latent_dim: int = 1024
    hidden_size: int = 512
    num_attention_heads: int = 16
    num_key_value_heads: int = 16
    head_dim: int | None = 64  # None: hidden_size // num_attention_heads (the official fallback)
    intermediate_size: int = 1024
    num_hidden_layers: int = 8
    sliding_window: int = 72  # each frame attends to itself and the 71 before it
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    layer_scale_initial_scale: float = 0.01
    hidden_act: str = "silu"
    attention_bias: bool = False
    upsampling_ratios: tuple[int, ...] = (2, 2)  # transposed conv + ConvNeXt stages
    upsample_rates: tuple[int, ...] = (8, 5, 4, 3)  # SnakeBeta decoder blocks
    decoder_dim: int = 1536
    max_position_embeddings: int = 8000
    num_semantic_quantizers: int = field(default=1, init=False)  # fixed to 1 by the official code
    hop: int = field(init=False)  # output samples per frame

    def __post_init__(self):
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        self.upsampling_ratios = tuple(int(r) for r in self.upsampling_ratios)
        self.upsample_rates = tuple(int(r) for r in self.upsample_rates)
        self.hop = math.prod(self.upsampling_ratios) * math.prod(self.upsample_rates)
        if self.num_quantizers <= self.num_semantic_quantizers:
            raise UnsupportedModelError(f"codec decoder needs more than 1 quantizer, got {self.num_quantizers}")
        if self.decoder_dim % 2 ** len(self.upsample_rates):
            raise UnsupportedModelError(f"decoder_dim {self.decoder_dim} must halve {len(self.upsample_rates)} times")
        if self.hidden_act not in ("silu", "gelu"):
            raise UnsupportedModelError(f"codec decoder activation {self.hidden_act!r} is not supported")

    @classmethod
    def from_hf(cls, d: dict) -> "CodecDecoderConfig":
        """From the `decoder_config` dict of `speech_tokenizer/config.json`."""
        if d.get("rope_scaling"):
            raise UnsupportedModelError(f"codec decoder rope_scaling {d['rope_scaling']!r} is not supported")
        kw = known_fields(cls, d)
        kw.setdefault("head_dim", None)  # absent in a config: derived, as the official code does
        return cls(**kw)


@dataclass
class CodecConfig:
    """Top level of `speech_tokenizer/config.json` (model_type qwen3_tts_tokenizer_12hz)."""

    decoder: CodecDecoderConfig = field(default_factory=CodecDecoderConfig)
    encoder_hf: dict = field(default_factory=dict)  # raw `encoder_config` (a MimiConfig dict)
    input_sample_rate: int = 24000
    output_sample_rate: int = 24000
    encode_downsample_rate: int = 1920  # input samples per code frame
    decode_upsample_rate: int = 1920  # output samples per code frame
    encoder_valid_num_quantizers: int = 16  # the encoder has more; the first 16 are the codes

    def __post_init__(self):
        if self.decode_upsample_rate != self.decoder.hop:
            raise UnsupportedModelError(
                f"decode_upsample_rate {self.decode_upsample_rate} != decoder hop {self.decoder.hop} "
                f"(upsampling_ratios {self.decoder.upsampling_ratios} x upsample_rates {self.decoder.upsample_rates})")

    @property
    def frame_rate(self) -> float:
        """Code frames per second (12.5 for the released tokenizer)."""
        return self.output_sample_rate / self.decode_upsample_rate

    @classmethod
    def from_hf(cls, d: dict) -> "CodecConfig":
        """From the parsed `speech_tokenizer/config.json`."""
        model_type = d.get("model_type")
        if model_type != MODEL_TYPE:
            raise UnsupportedModelError(
                f"speech tokenizer model_type {model_type!r} is not supported; this engine runs the "
                f"12 Hz tokenizer ({MODEL_TYPE!r}) of the Qwen3-TTS-12Hz models")
        kw = known_fields(cls, d)
        kw.pop("decoder", None)
        kw.pop("encoder_hf", None)
        return cls(decoder=CodecDecoderConfig.from_hf(d.get("decoder_config") or {}),
                   encoder_hf=dict(d.get("encoder_config") or {}), **kw)


@dataclass
class CodecEncoderConfig:
    """Audio -> codes: the Mimi encoder of `speech_tokenizer/config.json` (`encoder_config`, a
    MimiConfig dict; field names as there) plus the two top-level fields the encode path uses.
    Defaults are the released values (the encoder is engine/codec_encoder.py)."""

    sampling_rate: int = 24000
    audio_channels: int = 1
    hidden_size: int = 512
    num_filters: int = 64
    num_residual_layers: int = 1
    upsampling_ratios: list[int] = field(default_factory=lambda: [8, 6, 5, 4])  # encoder runs them reversed
    kernel_size: int = 7
    last_kernel_size: int = 3
    residual_kernel_size: int = 3
    dilation_growth_rate: int = 2
    compress: int = 2
    pad_mode: str = "constant"
    use_causal_conv: bool = True
    use_conv_shortcut: bool = False
    codebook_size: int = 2048
    codebook_dim: int = 256
    num_quantizers: int = 32
    num_semantic_quantizers: int = 1
    vector_quantization_hidden_dimension: int = 256
    num_hidden_layers: int = 8
    intermediate_size: int = 2048
    num_attention_heads: int = 8
    num_key_value_heads: int = 8
    head_dim: int | None = None
    hidden_act: str = "gelu"
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    layer_scale_initial_scale: float = 0.01
    attention_bias: bool = False
    sliding_window: int | None = 250  # unused: the official encode attends causally over all frames
    frame_rate: float | None = None  # output frames per second; None: derived from the strides
    # top-level tokenizer fields
    valid_num_quantizers: int = 16  # encoder_valid_num_quantizers
    encode_downsample_rate: int = 1920  # samples per output frame

    def __post_init__(self):
        self.upsampling_ratios = list(self.upsampling_ratios)
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.frame_rate is None:
            self.frame_rate = self.sampling_rate / (math.prod(self.upsampling_ratios) * 2)
        if self.audio_channels != 1:
            raise UnsupportedModelError(f"codec encoder with {self.audio_channels} audio channels; "
                                        "only mono is supported")
        if not self.num_semantic_quantizers <= self.valid_num_quantizers <= self.num_quantizers:
            raise UnsupportedModelError(f"valid_num_quantizers={self.valid_num_quantizers} must lie between "
                                        f"num_semantic_quantizers and num_quantizers={self.num_quantizers}")

    @property
    def latent_rate(self) -> int:
        """Frames per second after the SEANet convs (before the stride-2 downsample)."""
        return math.ceil(self.sampling_rate / math.prod(self.upsampling_ratios))

    @property
    def downsample_kernel(self) -> int | None:
        """Kernel of the stride-2 downsample conv, or None when there is none."""
        if self.frame_rate == self.latent_rate:
            return None
        return 2 * int(self.latent_rate / self.frame_rate)

    @property
    def hop_length(self) -> int:
        return math.prod(self.upsampling_ratios) * (2 if self.downsample_kernel else 1)

    @classmethod
    def from_hf(cls, d: dict) -> "CodecEncoderConfig":
        """From the tokenizer's top-level config dict, or from its `encoder_config` alone."""
        top = d if "encoder_config" in d else {}
        enc = dict(d["encoder_config"] if "encoder_config" in d else d)
        if "frame_rate" not in enc and "_frame_rate" in enc:  # serialized private attribute
            enc["frame_rate"] = enc["_frame_rate"]
        kwargs = known_fields(cls, enc)
        if "encoder_valid_num_quantizers" in top:
            kwargs["valid_num_quantizers"] = top["encoder_valid_num_quantizers"]
        if "encode_downsample_rate" in top:
            kwargs["encode_downsample_rate"] = top["encode_downsample_rate"]
        return cls(**kwargs)
