"""`python -m engine make-tiny DIR`: a tiny random Qwen3-TTS 12 Hz Base checkpoint, written by
our own code in the released layout, for offline tries of the app and for tests.

    DIR/config.json, generation_config.json, model.safetensors            talker, code
        predictor, speaker encoder, with the official tensor names
    DIR/vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json,
        added_tokens.json                                                 a byte-level BPE
        vocabulary trained here with `tokenizers` (Qwen2's pre-tokenizer, 640 entries)
    DIR/speech_tokenizer/config.json, model.safetensors, preprocessor_config.json
                                                                          codec decoder +
        encoder at the released frame rate (12.5 Hz, 1920 samples per frame) but tiny widths

The modules are built from their config dataclasses with a seeded random init (a few
statistics made sane: codebooks with spread-out entries, an output level of about -12 dBFS),
and their tensors are saved under the checkpoint names that `engine.loader`'s key maps read.
Those maps go from checkpoint names to module names; the inverses here are checked against
them for every tensor (`_invert`), so a name that would not load is caught while writing.
The whole checkpoint is about 2 MB; it speaks noise, at the real frame rate.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from engine.text_tokenizer import QWEN2_SPLIT

CODEBOOK = 64
GROUPS = 16
BPE_VOCAB = 640
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                  "<|audio_start|>", "<|audio_end|>", "<tts_pad>", "<tts_text_bos>", "<tts_text_eod>",
                  "<tts_text_bos_single>", "<|audio_pad|>"]
# control ids past the codebook, at the released offsets (released codebook: 2048)
CONTROL = dict(codec_pad_id=100, codec_bos_id=101, codec_eos_token_id=102, codec_think_id=106,
               codec_nothink_id=107, codec_think_bos_id=108, codec_think_eos_id=109)
LANGUAGES = dict(english=2, german=5, spanish=6, chinese=7, japanese=10, french=13, korean=16, russian=21,
                 italian=22, portuguese=23)
GENERATION_CONFIG = {"do_sample": True, "repetition_penalty": 1.05, "temperature": 0.9, "top_p": 1.0,
                     "top_k": 50, "subtalker_dosample": True, "subtalker_temperature": 0.9,
                     "subtalker_top_p": 1.0, "subtalker_top_k": 50, "max_new_tokens": 8192}
CORPUS = [
    "Hello there, how are you doing today? The quick brown fox jumps over the lazy dog.",
    "I'll call you at 555-0123 tomorrow; the price is $19.99. Numbers: 0 1 2 3 4 5 6 7 8 9 10 100.",
    "今天天气很好，我们去公园散步吧。你好，世界！こんにちは、元気ですか？ありがとうございます。",
    "안녕하세요, 만나서 반갑습니다. Guten Tag! Bonjour, ça va ? Привет, как дела? Hola, ¿cómo estás?",
    "Mixed: Hello 世界 123 ok? Yes! No... maybe; (maybe) [sure] a/b — “quotes” ‘single’ … ☺",
]


# ---------------------------------------------------------------------------------------
# configs (official config.json layout)


def talker_config(ids: dict[str, int]) -> dict:
    """config.json of the tiny model (the fields the official Qwen3TTSConfig saves)."""
    text_vocab = -(-(max(ids.values()) + 1) // 64) * 64  # padded, as the released 151936
    predictor = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, head_dim=16, vocab_size=CODEBOOK, num_code_groups=GROUPS,
                     hidden_act="silu", rms_norm_eps=1e-6, rope_theta=1_000_000, max_position_embeddings=65536,
                     rope_scaling=None, layer_types=["full_attention"] * 2)
    talker = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, text_hidden_size=48, vocab_size=CODEBOOK + 1024,
                  text_vocab_size=text_vocab, num_code_groups=GROUPS, hidden_act="silu", rms_norm_eps=1e-6,
                  rope_theta=1_000_000, max_position_embeddings=32768,
                  rope_scaling={"interleaved": True, "mrope_section": [4, 2, 2], "rope_type": "default"},
                  position_id_per_seconds=13, spk_id={}, spk_is_dialect={},
                  codec_language_id={k: CODEBOOK + v for k, v in LANGUAGES.items()},
                  **{k: CODEBOOK + v for k, v in CONTROL.items()}, code_predictor_config=predictor)
    speaker = dict(enc_channels=[16, 16, 16, 16, 48], enc_attention_channels=8, enc_res2net_scale=4,
                   enc_se_channels=8, mel_dim=128, enc_dim=32, enc_kernel_sizes=[5, 3, 3, 3, 1],
                   enc_dilations=[1, 2, 3, 4, 1], sample_rate=24000)
    return dict(architectures=["Qwen3TTSForConditionalGeneration"], model_type="qwen3_tts",
                torch_dtype="float32", talker_config=talker, speaker_encoder_config=speaker,
                tokenizer_type="qwen3_tts_tokenizer_12hz", tts_model_size="0b6", tts_model_type="base",
                im_start_token_id=ids["<|im_start|>"], im_end_token_id=ids["<|im_end|>"],
                tts_pad_token_id=ids["<tts_pad>"], tts_bos_token_id=ids["<tts_text_bos>"],
                tts_eos_token_id=ids["<tts_text_eod>"])


def codec_config() -> dict:
    """speech_tokenizer/config.json: the released 1920-sample hop, tiny widths."""
    decoder = dict(attention_bias=False, attention_dropout=0.0, codebook_dim=32, codebook_size=CODEBOOK,
                   decoder_dim=64, head_dim=16, hidden_act="silu", hidden_size=32, intermediate_size=64,
                   latent_dim=32, layer_scale_initial_scale=0.01, max_position_embeddings=8000, model_type="",
                   num_attention_heads=4, num_hidden_layers=2, num_key_value_heads=4, num_quantizers=GROUPS,
                   num_semantic_quantizers=1, rms_norm_eps=1e-5, rope_theta=10000, semantic_codebook_size=2 * CODEBOOK,
                   sliding_window=72, upsample_rates=[8, 5, 4, 3], upsampling_ratios=[2, 2],
                   vector_quantization_hidden_dimension=32)
    encoder = dict(_frame_rate=12.5, attention_bias=False, attention_dropout=0.0, audio_channels=1,
                   codebook_dim=16, codebook_size=CODEBOOK, compress=2, dilation_growth_rate=2, head_dim=8,
                   hidden_act="gelu", hidden_size=32, initializer_range=0.02, intermediate_size=64, kernel_size=7,
                   last_kernel_size=3, layer_scale_initial_scale=0.01, max_position_embeddings=8000,
                   model_type="mimi", norm_eps=1e-5, num_attention_heads=4, num_filters=4, num_hidden_layers=2,
                   num_key_value_heads=4, num_quantizers=GROUPS, num_residual_layers=1, num_semantic_quantizers=1,
                   pad_mode="constant", residual_kernel_size=3, rope_theta=10000.0, sampling_rate=24000,
                   sliding_window=250, trim_right_ratio=1.0, upsample_groups=32, upsampling_ratios=[8, 6, 5, 4],
                   use_cache=False, use_causal_conv=True, use_conv_shortcut=False, use_streaming=False,
                   vector_quantization_hidden_dimension=16)
    return dict(architectures=["Qwen3TTSTokenizerV2Model"], model_type="qwen3_tts_tokenizer_12hz",
                decoder_config=decoder, encoder_config=encoder, encoder_valid_num_quantizers=GROUPS,
                input_sample_rate=24000, output_sample_rate=24000, decode_upsample_rate=1920,
                encode_downsample_rate=1920, dtype="float32")


PREPROCESSOR_CONFIG = {"chunk_length_s": None, "feature_extractor_type": "EncodecFeatureExtractor",
                       "feature_size": 1, "overlap": None, "padding_side": "right", "padding_value": 0.0,
                       "return_attention_mask": True, "sampling_rate": 24000}


# ---------------------------------------------------------------------------------------
# text tokenizer


def write_tokenizer(out: Path) -> dict[str, int]:
    """Train a byte-level BPE (Qwen2 pre-tokenizer) and write the released tokenizer files.

    Returns the special token ids. "assistant" and "\\n" must be single tokens: the prompt
    builder slices the chat template by token position, as the official one does.
    """
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    trainer = trainers.BpeTrainer(vocab_size=BPE_VOCAB, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train_from_iterator(CORPUS * 20 + ["assistant\n"] * 200, trainer)
    tok.model.save(str(out))
    vocab = json.loads((out / "vocab.json").read_text(encoding="utf-8"))
    ids = {t: len(vocab) + i for i, t in enumerate(SPECIAL_TOKENS)}
    added = {str(i): dict(content=t, lstrip=False, normalized=False, rstrip=False, single_word=False, special=True)
             for t, i in ids.items()}
    config = {"add_bos_token": False, "add_prefix_space": False, "added_tokens_decoder": added,
              "additional_special_tokens": SPECIAL_TOKENS[1:], "bos_token": None,
              "clean_up_tokenization_spaces": False, "eos_token": "<|im_end|>", "errors": "replace",
              "model_max_length": 131072, "pad_token": "<|endoftext|>", "split_special_tokens": False,
              "tokenizer_class": "Qwen2Tokenizer", "unk_token": None}
    _write_json(out / "tokenizer_config.json", config)
    _write_json(out / "added_tokens.json", dict(sorted(ids.items())))
    _write_json(out / "special_tokens_map.json", {
        "additional_special_tokens": SPECIAL_TOKENS[1:], "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"})
    for probe in ("assistant", "\n"):
        if len(tok.encode(probe).ids) != 1:
            raise RuntimeError(f"tiny tokenizer: {probe!r} is not a single token")
    return ids


# ---------------------------------------------------------------------------------------
# checkpoint names: the loader's maps, inverted


def _decoder_layer(rest: str) -> str:
    """Our Qwen3 block names -> official (engine.talker.Block)."""
    for ours, theirs in (("attn.wq.", "self_attn.q_proj."), ("attn.wk.", "self_attn.k_proj."),
                         ("attn.wv.", "self_attn.v_proj."), ("attn.wo.", "self_attn.o_proj."),
                         ("attn.q_norm.", "self_attn.q_norm."), ("attn.k_norm.", "self_attn.k_norm."),
                         ("attn_norm.", "input_layernorm."), ("mlp_norm.", "post_attention_layernorm."),
                         ("mlp.w_gate.", "mlp.gate_proj."), ("mlp.w_up.", "mlp.up_proj."),
                         ("mlp.w_down.", "mlp.down_proj.")):
        if rest.startswith(ours):
            return theirs + rest[len(ours):]
    raise KeyError(rest)


def _stack(key: str, base: str) -> str | None:
    """decoder.layers.N.* / decoder.norm.* under the official `base` (e.g. talker.model)."""
    if m := re.fullmatch(r"decoder\.layers\.(\d+)\.(.+)", key):
        return f"{base}.layers.{m.group(1)}.{_decoder_layer(m.group(2))}"
    if key.startswith("decoder.norm."):
        return f"{base}.norm.{key[len('decoder.norm.'):]}"
    return None


def talker_name(key: str) -> str:
    fixed = {"text_embedding.weight": "talker.model.text_embedding.weight",
             "codec_embedding.weight": "talker.model.codec_embedding.weight",
             "codec_head.weight": "talker.codec_head.weight"}
    if key in fixed:
        return fixed[key]
    if key.startswith("text_projection.fc"):
        return "talker.text_projection.linear_fc" + key[len("text_projection.fc"):]
    return _stack(key, "talker.model") or key


def predictor_name(key: str) -> str:
    p = "talker.code_predictor."
    for ours, theirs in (("embeddings.", "model.codec_embedding."), ("heads.", "lm_head."),
                         ("proj.", "small_to_mtp_projection.")):
        if key.startswith(ours):
            return p + theirs + key[len(ours):]
    return _stack(key, p + "model") or key


def speaker_name(key: str) -> str:
    p = "speaker_encoder."
    if key.startswith("stem."):
        return p + "blocks.0." + key[len("stem."):]
    if m := re.fullmatch(r"blocks\.(\d+)\.(.+)", key):
        rest = re.sub(r"^res2net\.convs\.", "res2net_block.blocks.", m.group(2))
        rest = re.sub(r"^se\.", "se_block.", rest)
        return f"{p}blocks.{int(m.group(1)) + 1}.{rest}"
    for ours, theirs in (("pool.tdnn.", "asp.tdnn."), ("pool.conv.", "asp.conv.")):
        if key.startswith(ours):
            return p + theirs + key[len(ours):]
    return p + key  # mfa.*, fc.*


def codec_decoder_name(key: str, n_blocks: int) -> str:
    d = "decoder."
    if m := re.fullmatch(r"quantizer\.(semantic|acoustic)\.(.+)", key):
        half = "rvq_first" if m.group(1) == "semantic" else "rvq_rest"
        rest = re.sub(r"^codebooks\.(\d+)\.", r"vq.layers.\1._codebook.", m.group(2))
        return f"{d}quantizer.{half}.{rest}"
    if m := re.fullmatch(r"transformer\.layers\.(\d+)\.(attn|mlp)_scale", key):
        part = "self_attn_layer_scale" if m.group(2) == "attn" else "mlp_layer_scale"
        return f"{d}pre_transformer.layers.{m.group(1)}.{part}.scale"
    if m := re.fullmatch(r"upsample\.(\d+)\.(trans|convnext)\.(.+)", key):
        i, part, rest = m.groups()
        if part == "trans":
            return f"{d}upsample.{i}.0.conv.{rest}"
        return f"{d}upsample.{i}.1.{'dwconv.conv.' + rest[7:] if rest.startswith('dwconv.') else rest}"
    if m := re.fullmatch(r"blocks\.(\d+)\.(.+)", key):
        block, rest = int(m.group(1)) + 1, m.group(2)
        if u := re.fullmatch(r"units\.(\d+)\.(snake|conv)([12])\.(.+)", rest):
            unit, kind, n, name = u.groups()
            part = f"act{n}" if kind == "snake" else f"conv{n}.conv"
            return f"{d}decoder.{block}.block.{int(unit) + 2}.{part}.{name}"
        rest = rest.replace("snake.", "block.0.", 1) if rest.startswith("snake.") else "block.1.conv." + rest[6:]
        return f"{d}decoder.{block}.{rest}"
    for ours, theirs in (("pre_conv.", "pre_conv.conv."), ("transformer.", "pre_transformer."),
                         ("conv_in.", "decoder.0.conv."), ("snake_out.", f"decoder.{n_blocks + 1}."),
                         ("conv_out.", f"decoder.{n_blocks + 2}.conv.")):
        if key.startswith(ours):
            return d + theirs + key[len(ours):]
    return key


def codec_encoder_name(key: str, cfg) -> str:
    e = "encoder."
    per_stage = cfg.num_residual_layers + 2
    if m := re.fullmatch(r"seanet\.(stem|head)\.(.+)", key):
        index = 0 if m.group(1) == "stem" else 2 + len(cfg.upsampling_ratios) * per_stage
        return f"{e}encoder.layers.{index}.{m.group(2)}"
    if m := re.fullmatch(r"seanet\.stages\.(\d+)\.res\.(\d+)\.(conv1|conv2|shortcut)\.(.+)", key):
        stage, unit, part, rest = m.groups()
        part = {"conv1": "block.1", "conv2": "block.3", "shortcut": "shortcut"}[part]
        return f"{e}encoder.layers.{1 + int(stage) * per_stage + int(unit)}.{part}.{rest}"
    if m := re.fullmatch(r"seanet\.stages\.(\d+)\.down\.(.+)", key):
        return f"{e}encoder.layers.{1 + int(m.group(1)) * per_stage + cfg.num_residual_layers + 1}.{m.group(2)}"
    if m := re.fullmatch(r"transformer\.layers\.(\d+)\.(.+)", key):
        rest = m.group(2)
        for ours, theirs in (("attn.", "self_attn."), ("norm1.", "input_layernorm."),
                             ("norm2.", "post_attention_layernorm."), ("attn_scale", "self_attn_layer_scale.scale"),
                             ("mlp_scale", "mlp_layer_scale.scale"), ("fc1.", "mlp.fc1."), ("fc2.", "mlp.fc2.")):
            if rest.startswith(ours):
                return f"{e}encoder_transformer.layers.{m.group(1)}.{theirs}{rest[len(ours):]}"
    if m := re.fullmatch(r"(semantic|acoustic)\.(.+)", key):
        rest = re.sub(r"^codebooks\.(\d+)\.", r"layers.\1.codebook.", m.group(2))
        return f"{e}quantizer.{m.group(1)}_residual_vector_quantizer.{rest}"
    return e + key  # downsample.*


def _invert(module: torch.nn.Module, name, key_map) -> dict[str, torch.Tensor]:
    """The module's tensors under checkpoint names; each name checked with the loader's map."""
    out = {}
    for key, tensor in module.state_dict().items():
        ckpt = name(key)
        if key_map(ckpt) != key:
            raise RuntimeError(f"tiny checkpoint: {key} -> {ckpt} does not map back (got {key_map(ckpt)})")
        out[ckpt] = tensor.detach().contiguous().clone()
    return out


# ---------------------------------------------------------------------------------------
# building


def _model_tensors(config: dict) -> dict[str, torch.Tensor]:
    from engine import loader
    from engine.code_predictor import CodePredictor
    from engine.config import TTSConfig
    from engine.speaker_encoder import SpeakerEncoder
    from engine.talker import Talker

    cfg = TTSConfig.from_hf(config)
    talker, predictor = Talker(cfg.talker), CodePredictor(cfg.code_predictor)
    tensors = _invert(talker, talker_name, loader.TALKER_KEY_MAP)
    tensors.update(_invert(predictor, predictor_name, loader.CODE_PREDICTOR_KEY_MAP))
    tensors.update(_invert(SpeakerEncoder(cfg.speaker_encoder), speaker_name, loader.speaker_encoder_key_map))
    return tensors


def _codec_tensors(config: dict, gen: torch.Generator) -> dict[str, torch.Tensor]:
    from engine import loader
    from engine.codec_config import CodecConfig, CodecEncoderConfig
    from engine.codec_decoder import CodecDecoder
    from engine.codec_encoder import CodecEncoder

    dec_cfg = CodecConfig.from_hf(config).decoder
    enc_cfg = CodecEncoderConfig.from_hf(config)
    decoder, encoder = CodecDecoder(dec_cfg), CodecEncoder(enc_cfg)
    with torch.no_grad():
        for name, t in list(decoder.named_parameters()) + list(encoder.named_buffers()):
            if name.endswith("cluster_usage"):  # EMA counts: positive, varied
                t.copy_(0.5 + 1.5 * torch.rand(t.shape, generator=gen))
            elif name.endswith(("embedding_sum", "embed_sum")):  # spread-out codebook entries
                t.copy_(torch.randn(t.shape, generator=gen))
        _set_output_level(decoder, gen)
    tensors = _invert(decoder, lambda k: codec_decoder_name(k, len(dec_cfg.upsample_rates)),
                      loader.codec_decoder_key_map(dec_cfg))
    tensors.update(_invert(encoder, lambda k: codec_encoder_name(k, enc_cfg), loader.codec_encoder_key_map(enc_cfg)))
    # stored by the official model but never read by ours (the loader skips them)
    half = dec_cfg.codebook_dim // 2
    for q in ("rvq_first", "rvq_rest"):
        tensors[f"decoder.quantizer.{q}.input_proj.weight"] = 0.1 * torch.randn(half, dec_cfg.codebook_dim, 1,
                                                                                 generator=gen)
    for q in ("semantic", "acoustic"):
        base = f"encoder.quantizer.{q}_residual_vector_quantizer."
        tensors[base + "output_proj.weight"] = 0.1 * torch.randn(enc_cfg.hidden_size, enc_cfg.codebook_dim, 1,
                                                                 generator=gen)
        n = 1 if q == "semantic" else enc_cfg.num_quantizers - 1
        for i in range(n):
            tensors[f"{base}layers.{i}.codebook.initialized"] = torch.ones(1)
    return tensors


def _set_output_level(decoder, gen: torch.Generator, target_std: float = 0.25) -> None:
    """Scale the last conv so random codes decode to a waveform of std ~target_std."""
    for module in decoder.modules():
        if hasattr(module, "init_buffers"):
            module.init_buffers(None)  # codebook tables from the new statistics
    codes = torch.randint(0, CODEBOOK, (1, 16, GROUPS), generator=gen)
    decoder.conv_out.bias.zero_()
    std = float(decoder(codes).std())
    decoder.conv_out.weight.mul_(target_std / max(std, 1e-6))


def make_tiny(out_dir, seed: int = 0) -> Path:
    """Write the tiny checkpoint into `out_dir` (created); returns its path."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    (out / "speech_tokenizer").mkdir(parents=True, exist_ok=True)
    ids = write_tokenizer(out)
    config = talker_config(ids)
    st_config = codec_config()
    torch.manual_seed(seed)  # module init draws from the global generator
    gen = torch.Generator().manual_seed(seed + 1)
    save_file(_model_tensors(config), str(out / "model.safetensors"), metadata={"format": "pt"})
    save_file(_codec_tensors(st_config, gen), str(out / "speech_tokenizer" / "model.safetensors"),
              metadata={"format": "pt"})
    _write_json(out / "config.json", config)
    _write_json(out / "generation_config.json", GENERATION_CONFIG)
    _write_json(out / "speech_tokenizer" / "config.json", st_config)
    _write_json(out / "speech_tokenizer" / "preprocessor_config.json", PREPROCESSOR_CONFIG)
    return out


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
