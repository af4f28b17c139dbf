"""Tiny random official 12 Hz speech tokenizers (`speech_tokenizer/` of a Qwen3-TTS checkpoint).

Run in the reference environment only (imports the official qwen-tts 0.1.1 classes).
`build(ckpt_dir, shape)` writes `ckpt_dir/speech_tokenizer/` in the layout of the released
checkpoints: `config.json` (official `save_pretrained`), `model.safetensors` and
`preprocessor_config.json` (the feature extractor the official `Qwen3TTSTokenizer` loads).

Tiny but structurally faithful to the released Qwen3-TTS-Tokenizer-12Hz:
  * decoder: 16 quantizers (1 semantic + 15 acoustic), codebook entries of codebook_dim // 2,
    pre-conv, sliding-window pre-transformer with layer scale and an explicit head_dim (shape a:
    heads * head_dim != hidden_size, as released), transposed-conv + ConvNeXt upsampling,
    SnakeBeta decoder blocks; the window is small (16 / 24 frames) so tests cross it cheaply,
    and the hop (240 / 120 samples, released 1920) keeps 300+ frame tests fast.
  * encoder: Mimi (SEANet conv encoder, transformer, stride-2 downsample, split RVQ) with more
    quantizers than the 16 that are valid (`encoder_valid_num_quantizers`), as released (32).
  Encoder hop == decoder hop == encode_downsample_rate == decode_upsample_rate.

Weights: the official random init, then N(0, 0.15) added to every tensor (fixed seed) so that
outputs depend on the codes. Exceptions, because they would make outputs NaN/inf or constant:
  * codebook `cluster_usage` (decoder parameters, encoder buffers) is the divisor of the
    codebook mean (`embedding_sum / cluster_usage.clamp(min=1e-5)`): noise could make it
    negative, clamped to 1e-5 -> entries x1e5. It is drawn from U(0.5, 2) instead.
  * codebook sums are zero at init (every code decodes to the same vector; the encoder would
    emit code 0 only). Decoder sums are drawn from N(0, 1); encoder sums from N(0, s) with s
    the spread of the encoder's own latents on noise, so nearest-neighbour codes vary.
  * the encoder's `initialized` flag stays 1.
  * decoder convolution weights get noise of std min(0.15, 0.5 / sqrt(fan_in)): with 0.15 the
    SnakeBeta vocoder gains ~2x per conv, activations reach ~400 and 97% of the output samples
    clip at +-1 (a clamped output hides any error); with 1 / sqrt(fan_in) activations still
    reach ~25 and float32 rounding, amplified through ~30 SnakeBeta/conv layers, put streaming
    vs offline at ~1e-5, the tolerance itself. With 0.5 / sqrt(fan_in) activations stay O(1)
    and that difference is ~1e-6. Then the last conv is scaled so the waveform has std ~0.25
    with (almost) no clipped samples.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT.parent / "shared" / "reference"))

from tools.parity.shapes import CODEBOOK_SIZE, CODEC, NUM_CODE_GROUPS  # noqa: E402

SEED = {"a": 3101, "b": 3102}
NOISE_STD = 0.15
CONV_GAIN = 0.5  # decoder conv noise std = CONV_GAIN / sqrt(fan_in) where below NOISE_STD
SAMPLE_RATE = 24000


def tokenizer_config(shape: str) -> dict:
    """The official `Qwen3TTSTokenizerV2Config` kwargs for one tiny shape."""
    dims = CODEC[shape]
    dec, enc = dims["decoder"], dims["encoder"]
    hop = dims["hop"]
    assert math.prod(dec["upsampling_ratios"]) * math.prod(dec["upsample_rates"]) == hop
    assert math.prod(enc["upsampling_ratios"]) * 2 == hop  # Mimi: SEANet strides, then stride 2
    decoder_config = dict(
        codebook_size=CODEBOOK_SIZE,
        num_quantizers=NUM_CODE_GROUPS,
        num_semantic_quantizers=1,
        # unused by the official code (every decoder codebook has codebook_size entries);
        # kept because the released config carries it (4096 = 2 x 2048).
        semantic_codebook_size=2 * CODEBOOK_SIZE,
        vector_quantization_hidden_dimension=dec["codebook_dim"],
        max_position_embeddings=8000,
        rope_theta=10000,
        attention_bias=False,
        hidden_act="silu",
        layer_scale_initial_scale=0.01,
        rms_norm_eps=1e-5,
        **{k: v for k, v in dec.items()},
    )
    encoder_config = dict(
        sampling_rate=SAMPLE_RATE,
        frame_rate=SAMPLE_RATE / hop,
        audio_channels=1,
        codebook_size=CODEBOOK_SIZE,
        num_semantic_quantizers=1,
        use_causal_conv=True,
        pad_mode="constant",
        compress=2,
        trim_right_ratio=1.0,
        dilation_growth_rate=2,
        num_residual_layers=1,
        kernel_size=7,
        last_kernel_size=3,
        residual_kernel_size=3,
        use_conv_shortcut=False,
        hidden_act="gelu",
        max_position_embeddings=8000,
        rope_theta=10000.0,
        norm_eps=1e-5,
        layer_scale_initial_scale=0.01,
        upsample_groups=enc["hidden_size"],
        **{k: v for k, v in enc.items()},
    )
    return dict(
        encoder_config=encoder_config,
        decoder_config=decoder_config,
        encoder_valid_num_quantizers=NUM_CODE_GROUPS,
        input_sample_rate=SAMPLE_RATE,
        output_sample_rate=SAMPLE_RATE,
        decode_upsample_rate=hop,
        encode_downsample_rate=hop,
    )


PREPROCESSOR_CONFIG = {
    "chunk_length_s": None,
    "feature_extractor_type": "EncodecFeatureExtractor",
    "feature_size": 1,
    "overlap": None,
    "padding_side": "right",
    "padding_value": 0.0,
    "return_attention_mask": True,
    "sampling_rate": SAMPLE_RATE,
}


def _encoder_latent_std(model) -> float:
    """Spread of the encoder latents the first quantizer sees, on 1 s of noise."""
    enc = model.encoder
    gen = torch.Generator().manual_seed(0)
    wav = 0.1 * torch.randn(1, 1, SAMPLE_RATE, generator=gen)
    with torch.no_grad():
        x = enc.encoder(wav)
        x = enc.encoder_transformer(x.transpose(1, 2))[0].transpose(1, 2)
        x = enc.downsample(x)
        x = enc.quantizer.semantic_residual_vector_quantizer.input_proj(x)
    return float(x.std())


def _conv_noise_std(model) -> dict[str, float]:
    """Noise std per decoder conv weight: 0.15, or 1/sqrt(fan_in) where that is smaller."""
    stds = {}
    for name, module in model.decoder.named_modules():
        if isinstance(module, torch.nn.ConvTranspose1d):
            fan_in = module.in_channels * module.kernel_size[0] / module.stride[0]
        elif isinstance(module, torch.nn.Conv1d):
            fan_in = module.in_channels / module.groups * module.kernel_size[0]
        else:
            continue
        stds[f"decoder.{name}.weight"] = min(NOISE_STD, CONV_GAIN * fan_in ** -0.5)
    return stds


def _scale_output(model, target_std: float = 0.25) -> None:
    """Scale the decoder's last conv so random codes give a waveform of std ~target_std."""
    gen = torch.Generator().manual_seed(1)
    codes = torch.randint(0, CODEBOOK_SIZE, (1, NUM_CODE_GROUPS, 64), generator=gen)
    last = model.decoder.decoder[-1].conv
    with torch.no_grad():
        last.bias.zero_()
        raw = model.decoder.decoder[:-1]
        x = model.decoder.quantizer.decode(codes)
        x = model.decoder.pre_conv(x).transpose(1, 2)
        x = model.decoder.pre_transformer(inputs_embeds=x).last_hidden_state.transpose(1, 2)
        for blocks in model.decoder.upsample:
            for block in blocks:
                x = block(x)
        for block in raw:
            x = block(x)
        last.weight.mul_(target_std / float(last(x).std()))


def _perturb(model, gen: torch.Generator) -> None:
    """Official init + N(0, 0.15) everywhere, exceptions as the module docstring says."""
    conv_std = _conv_noise_std(model)
    with torch.no_grad():
        tensors = dict(model.named_parameters())
        tensors.update(dict(model.named_buffers()))
        for name in sorted(tensors):
            t = tensors[name]
            if not t.is_floating_point() or name.endswith("inv_freq"):
                continue
            if name.endswith("initialized"):
                continue
            if name.endswith("cluster_usage"):
                t.copy_(0.5 + 1.5 * torch.rand(t.shape, generator=gen))
            elif name.endswith("embedding_sum"):  # decoder codebooks
                t.copy_(torch.randn(t.shape, generator=gen))
            elif name.endswith("embed_sum"):  # encoder codebooks: scaled below
                t.copy_(torch.randn(t.shape, generator=gen))
            else:
                t.add_(conv_std.get(name, NOISE_STD) * torch.randn(t.shape, generator=gen))
        scale = _encoder_latent_std(model)
        for name, buf in model.encoder.quantizer.named_buffers():
            if name.endswith("embed_sum"):
                buf.mul_(scale)
        for module in model.encoder.modules():  # Mimi caches embed_sum / cluster_usage
            if hasattr(module, "_embed"):
                module._embed = None
    _scale_output(model)


def build_model(shape: str):
    """The perturbed official `Qwen3TTSTokenizerV2Model` for a shape (not saved)."""
    from qwen_reference import official

    torch.manual_seed(SEED[shape])  # the official init draws from the global generator
    config = official.TokenizerConfig(**tokenizer_config(shape))
    model = official.TokenizerModel(config).eval()
    _perturb(model, torch.Generator().manual_seed(SEED[shape] + 1))
    return model


def build(ckpt_dir: Path, shape: str) -> None:
    """Write `ckpt_dir/speech_tokenizer/` for `shape` and check the official loader reads it."""
    out = Path(ckpt_dir) / "speech_tokenizer"
    out.mkdir(parents=True, exist_ok=True)
    model = build_model(shape)
    model.save_pretrained(out, safe_serialization=True)
    (out / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR_CONFIG, indent=2) + "\n")
    _check_official_load(out, model)


def _check_official_load(out: Path, model) -> None:
    """Load with the official `Qwen3TTSTokenizer.from_pretrained` and compare every tensor."""
    from qwen_reference import official  # noqa: F401  (torchaudio stubs before qwen_tts)
    from qwen_tts.inference.qwen3_tts_tokenizer import Qwen3TTSTokenizer

    loaded = Qwen3TTSTokenizer.from_pretrained(str(out))
    want = model.state_dict()
    got = loaded.model.state_dict()
    assert want.keys() == got.keys(), sorted(set(want) ^ set(got))
    for key, value in want.items():
        assert torch.equal(value, got[key]), key
    assert loaded.get_model_type() == "qwen3_tts_tokenizer_12hz"


def official_decoder(decoder_config: dict, seed: int = 0):
    """A random official `Qwen3TTSTokenizerV2Decoder` with a live signal (for engine/bench/codec.py).

    The bare official init decodes every code to silence (zero codebooks and biases), so the
    weights get the same treatment as the tiny checkpoints: random codebooks, and noise of std
    min(0.15, 0.5 / sqrt(fan_in)) on conv and linear weights, 0.15 on the rest.
    """
    from qwen_reference import official

    torch.manual_seed(seed)
    decoder = official.TokenizerDecoder(official.TokenizerDecoderConfig(**decoder_config)).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    stds = {}
    for name, module in decoder.named_modules():
        if isinstance(module, (torch.nn.Conv1d, torch.nn.ConvTranspose1d, torch.nn.Linear)):
            fan_in = module.weight[0].numel() if not isinstance(module, torch.nn.ConvTranspose1d) \
                else module.in_channels * module.kernel_size[0] / module.stride[0]
            stds[f"{name}.weight"] = min(NOISE_STD, CONV_GAIN * fan_in ** -0.5)
    with torch.no_grad():
        for name, p in decoder.named_parameters():
            if name.endswith("cluster_usage"):
                p.copy_(0.5 + 1.5 * torch.rand(p.shape, generator=gen))
            elif name.endswith("embedding_sum"):
                p.copy_(torch.randn(p.shape, generator=gen))
            else:
                p.add_(stds.get(name, NOISE_STD) * torch.randn(p.shape, generator=gen))
    return decoder
