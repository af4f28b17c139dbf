"""Configuration of a Qwen3-TTS 12 Hz Base checkpoint, read from its config.json and
generation_config.json.

One dataclass per sub-model, each with `from_hf(dict)` taking the matching section of the
official config.json. `TTSConfig.from_hf` refuses, with a message naming what was found and
what is supported, any checkpoint this engine does not run: another model family, the 25 Hz
tokenizer, the CustomVoice / VoiceDesign variants, or architecture options the official Base
models never use (sliding windows, scaled RoPE, other activations).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from engine.errors import CheckpointError, UnsupportedModelError

SUPPORTED = "Qwen3-TTS 12 Hz Base models (model_type 'qwen3_tts', tokenizer_type 'qwen3_tts_tokenizer_12hz', " \
            "tts_model_type 'base'), e.g. Qwen/Qwen3-TTS-12Hz-0.6B-Base or Qwen/Qwen3-TTS-12Hz-1.7B-Base"


def known_fields(cls, d: dict) -> dict:
    """The entries of an HF config dict that are init fields of dataclass `cls` (others ignored)."""
    names = {f.name for f in fields(cls) if f.init}
    return {k: v for k, v in d.items() if k in names}


def _get(d: dict, key: str, where: str):
    if key not in d:
        raise CheckpointError(f"config.json: {where} lacks the required field {key!r}")
    return d[key]


def _check_plain_decoder(d: dict, where: str) -> None:
    """Refuse decoder options the released Base models do not use (we would compute wrongly)."""
    if d.get("use_sliding_window"):
        raise UnsupportedModelError(f"config.json: {where} uses sliding-window attention; supported: {SUPPORTED}")
    rope = d.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        raise UnsupportedModelError(f"config.json: {where} uses RoPE scaling {rope_type!r}; only the default "
                                    f"(unscaled) RoPE of the Base models is supported")
    act = d.get("hidden_act", "silu")
    if act != "silu":
        raise UnsupportedModelError(f"config.json: {where} uses activation {act!r}; only 'silu' is supported")


@dataclass
class DecoderConfig:
    """A Qwen3 decoder stack (q/k RMSNorm, GQA, RoPE, SwiGLU MLP)."""

    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    attention_bias: bool = False

    @classmethod
    def from_hf(cls, d: dict, where: str) -> "DecoderConfig":
        _check_plain_decoder(d, where)
        hidden = _get(d, "hidden_size", where)
        heads = _get(d, "num_attention_heads", where)
        return cls(
            hidden_size=hidden, intermediate_size=_get(d, "intermediate_size", where),
            num_layers=_get(d, "num_hidden_layers", where), num_heads=heads,
            num_kv_heads=d.get("num_key_value_heads") or heads,
            head_dim=d.get("head_dim") or hidden // heads, rms_norm_eps=d.get("rms_norm_eps", 1e-6),
            rope_theta=float(d.get("rope_theta", 10000.0)), attention_bias=bool(d.get("attention_bias", False)),
        )

    def __post_init__(self):
        if self.num_heads % self.num_kv_heads:
            raise CheckpointError(f"num_attention_heads {self.num_heads} is not a multiple of "
                                  f"num_key_value_heads {self.num_kv_heads}")


@dataclass
class CodePredictorConfig:
    """The small transformer that predicts codebooks 1..15 of a frame."""

    decoder: DecoderConfig
    vocab_size: int  # == codebook size
    num_code_groups: int
    talker_hidden_size: int  # width of its codec embeddings and of its input before projection

    @classmethod
    def from_hf(cls, d: dict, talker_hidden_size: int) -> "CodePredictorConfig":
        where = "talker_config.code_predictor_config"
        return cls(decoder=DecoderConfig.from_hf(d, where), vocab_size=_get(d, "vocab_size", where),
                   num_code_groups=_get(d, "num_code_groups", where), talker_hidden_size=talker_hidden_size)

    @property
    def needs_projection(self) -> bool:
        return self.decoder.hidden_size != self.talker_hidden_size


@dataclass
class TalkerConfig:
    """The talker: text embedding + projection, codec embedding, decoder, codec head."""

    decoder: DecoderConfig
    vocab_size: int  # codec vocabulary: codebook + 1024 control ids
    text_vocab_size: int
    text_hidden_size: int
    num_code_groups: int
    codec_pad_id: int
    codec_bos_id: int
    codec_eos_id: int
    codec_think_id: int
    codec_nothink_id: int
    codec_think_bos_id: int
    codec_think_eos_id: int
    language_ids: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_hf(cls, d: dict) -> "TalkerConfig":
        where = "talker_config"
        g = lambda key: _get(d, key, where)  # noqa: E731
        return cls(
            decoder=DecoderConfig.from_hf(d, where), vocab_size=g("vocab_size"),
            text_vocab_size=g("text_vocab_size"), text_hidden_size=g("text_hidden_size"),
            num_code_groups=g("num_code_groups"), codec_pad_id=g("codec_pad_id"), codec_bos_id=g("codec_bos_id"),
            codec_eos_id=g("codec_eos_token_id"), codec_think_id=g("codec_think_id"),
            codec_nothink_id=g("codec_nothink_id"), codec_think_bos_id=g("codec_think_bos_id"),
            codec_think_eos_id=g("codec_think_eos_id"),
            language_ids={k.lower(): int(v) for k, v in (d.get("codec_language_id") or {}).items()},
        )

    @property
    def control_start(self) -> int:
        """First id of the control block (the top 1024 ids; generation suppresses all but EOS)."""
        return self.vocab_size - 1024

    @property
    def languages(self) -> list[str]:
        """Languages this checkpoint can be told to speak (dialect entries are not languages)."""
        return sorted(k for k in self.language_ids if "dialect" not in k)


@dataclass
class SpeakerEncoderConfig:
    """ECAPA-TDNN speaker encoder on a 128-bin mel spectrogram -> x-vector of enc_dim."""

    mel_dim: int = 128
    enc_dim: int = 1024
    enc_channels: list[int] = field(default_factory=lambda: [512, 512, 512, 512, 1536])
    enc_kernel_sizes: list[int] = field(default_factory=lambda: [5, 3, 3, 3, 1])
    enc_dilations: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 1])
    enc_attention_channels: int = 128
    enc_res2net_scale: int = 8
    enc_se_channels: int = 128
    sample_rate: int = 24000

    @classmethod
    def from_hf(cls, d: dict) -> "SpeakerEncoderConfig":
        return cls(**known_fields(cls, d))


@dataclass
class TTSConfig:
    """Top level of config.json."""

    talker: TalkerConfig
    code_predictor: CodePredictorConfig
    speaker_encoder: SpeakerEncoderConfig
    tts_model_size: str | None
    im_start_token_id: int
    im_end_token_id: int
    tts_pad_token_id: int
    tts_bos_token_id: int
    tts_eos_token_id: int

    @classmethod
    def from_hf(cls, d: dict) -> "TTSConfig":
        check_supported(d)
        talker = TalkerConfig.from_hf(d["talker_config"])
        predictor = CodePredictorConfig.from_hf(_get(d["talker_config"], "code_predictor_config", "talker_config"),
                                                talker.decoder.hidden_size)
        speaker = SpeakerEncoderConfig.from_hf(d.get("speaker_encoder_config") or {})
        if speaker.enc_dim != talker.decoder.hidden_size:
            raise CheckpointError(f"config.json: speaker_encoder_config.enc_dim {speaker.enc_dim} must equal the "
                                  f"talker hidden_size {talker.decoder.hidden_size} (the x-vector is a talker input)")
        if predictor.num_code_groups != talker.num_code_groups:
            raise CheckpointError("config.json: talker and code predictor disagree on num_code_groups")
        return cls(
            talker=talker, code_predictor=predictor, speaker_encoder=speaker,
            tts_model_size=d.get("tts_model_size"), im_start_token_id=d.get("im_start_token_id", 151644),
            im_end_token_id=d.get("im_end_token_id", 151645), tts_pad_token_id=d.get("tts_pad_token_id", 151671),
            tts_bos_token_id=d.get("tts_bos_token_id", 151672), tts_eos_token_id=d.get("tts_eos_token_id", 151673),
        )


def check_supported(d: dict) -> None:
    """Raise UnsupportedModelError unless config.json describes a 12 Hz Base Qwen3-TTS model."""
    found = (f"model_type={d.get('model_type')!r}, tokenizer_type={d.get('tokenizer_type')!r}, "
             f"tts_model_type={d.get('tts_model_type')!r}")
    if d.get("model_type") != "qwen3_tts" or "talker_config" not in d:
        raise UnsupportedModelError(f"not a Qwen3-TTS checkpoint ({found}); supported: {SUPPORTED}")
    if d.get("tokenizer_type") != "qwen3_tts_tokenizer_12hz":
        raise UnsupportedModelError(f"unsupported speech tokenizer ({found}): only the 12 Hz tokenizer is "
                                    f"supported, not the 25 Hz one; supported: {SUPPORTED}")
    if d.get("tts_model_type") != "base":
        raise UnsupportedModelError(f"unsupported model variant ({found}): CustomVoice and VoiceDesign "
                                    f"checkpoints are not supported; supported: {SUPPORTED}")


@dataclass(frozen=True)
class GenerationDefaults:
    """Sampling defaults from generation_config.json (the official names, as released)."""

    do_sample: bool = True
    top_k: int = 50
    top_p: float = 1.0
    temperature: float = 0.9
    repetition_penalty: float = 1.05
    subtalker_dosample: bool = True
    subtalker_top_k: int = 50
    subtalker_top_p: float = 1.0
    subtalker_temperature: float = 0.9
    max_new_tokens: int = 2048

    @classmethod
    def from_hf(cls, d: dict) -> "GenerationDefaults":
        return cls(**known_fields(cls, d))

    def sampling(self, **overrides):
        """SamplingParams with these defaults, `overrides` taking precedence."""
        from engine.sampling import SamplingParams

        values = dict(
            do_sample=self.do_sample, top_k=self.top_k, top_p=self.top_p, temperature=self.temperature,
            repetition_penalty=self.repetition_penalty, subtalker_do_sample=self.subtalker_dosample,
            subtalker_top_k=self.subtalker_top_k, subtalker_top_p=self.subtalker_top_p,
            subtalker_temperature=self.subtalker_temperature, max_new_tokens=self.max_new_tokens)
        values.update(overrides)
        return SamplingParams(**values)
