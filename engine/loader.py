"""Loading each engine component from a checkpoint: the one place that knows checkpoint
tensor names.

Each component (talker, code predictor, speaker encoder, codec decoder, codec encoder) has
one explicit name map below from checkpoint keys to module keys, and a `load_*` function
that reads it strictly with engine.checkpoint.load_strict.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from engine.checkpoint import KeyMap, TensorSource, TensorSubset, load_strict, prefix_map, read_json, regex_map
from engine.errors import CheckpointError


# ---------------------------------------------------------------------------------------
# name maps, one per component


# --- talker and code predictor --------------------------------------------------------

# one Qwen3 decoder layer, official -> ours (engine.talker.Block); in the full patterns built by
# `_decoder_rules`, group 1 is the layer index and group 2 the weight/bias suffix
_DECODER_LAYER = (
    (r"self_attn\.q_proj\.(weight|bias)", r"attn.wq.\2"),
    (r"self_attn\.k_proj\.(weight|bias)", r"attn.wk.\2"),
    (r"self_attn\.v_proj\.(weight|bias)", r"attn.wv.\2"),
    (r"self_attn\.o_proj\.(weight|bias)", r"attn.wo.\2"),
    (r"self_attn\.q_norm\.(weight)", r"attn.q_norm.\2"),
    (r"self_attn\.k_norm\.(weight)", r"attn.k_norm.\2"),
    (r"input_layernorm\.(weight)", r"attn_norm.\2"),
    (r"post_attention_layernorm\.(weight)", r"mlp_norm.\2"),
    (r"mlp\.gate_proj\.(weight)", r"mlp.w_gate.\2"),
    (r"mlp\.up_proj\.(weight)", r"mlp.w_up.\2"),
    (r"mlp\.down_proj\.(weight)", r"mlp.w_down.\2"),
)


def _decoder_rules(ckpt_model: str) -> list[tuple[str, str]]:
    """Rules for a decoder stack stored under `ckpt_model` (e.g. 'talker.model') -> `decoder.*`."""
    base = re.escape(ckpt_model)
    rules = [(rf"{base}\.layers\.(\d+)\.{src}", rf"decoder.layers.\1.{dst}") for src, dst in _DECODER_LAYER]
    rules.append((rf"{base}\.norm\.weight", "decoder.norm.weight"))
    return rules


TALKER_KEY_MAP = regex_map([
    (r"talker\.model\.text_embedding\.weight", "text_embedding.weight"),
    (r"talker\.text_projection\.linear_fc([12])\.(weight|bias)", r"text_projection.fc\1.\2"),
    (r"talker\.model\.codec_embedding\.weight", "codec_embedding.weight"),
    (r"talker\.codec_head\.weight", "codec_head.weight"),
    *_decoder_rules("talker.model"),
])

CODE_PREDICTOR_KEY_MAP = regex_map([
    (r"talker\.code_predictor\.model\.codec_embedding\.(\d+)\.weight", r"embeddings.\1.weight"),
    (r"talker\.code_predictor\.lm_head\.(\d+)\.weight", r"heads.\1.weight"),
    (r"talker\.code_predictor\.small_to_mtp_projection\.(weight|bias)", r"proj.\1"),
    *_decoder_rules("talker.code_predictor.model"),
])

_PREDICTOR_PREFIX = "talker.code_predictor."


def load_talker(source: TensorSource, cfg, *, device=None, dtype: torch.dtype | None = None):
    """The talker (`talker.*` except the code predictor) from model.safetensors. cfg: TalkerConfig."""
    from engine.talker import Talker

    view = TensorSubset(source, lambda k: k.startswith(_PREDICTOR_PREFIX))
    return load_strict(lambda: Talker(cfg), view, TALKER_KEY_MAP, prefix="talker.", component="talker",
                       device=device, dtype=dtype)


def load_code_predictor(source: TensorSource, cfg, *, device=None, dtype: torch.dtype | None = None):
    """The code predictor (`talker.code_predictor.*`). cfg: CodePredictorConfig."""
    from engine.code_predictor import CodePredictor

    return load_strict(lambda: CodePredictor(cfg), source, CODE_PREDICTOR_KEY_MAP, prefix=_PREDICTOR_PREFIX,
                       component="code predictor", device=device, dtype=dtype)


# Top-level prefixes of model.safetensors and who reads them; a key under none of them is
# reported by `check_components` (the per-component loads only see their own prefix).
MODEL_COMPONENTS = ("talker.", "speaker_encoder.")


def check_components(source: TensorSource, components=MODEL_COMPONENTS) -> None:
    """Raise CheckpointError listing checkpoint tensors that belong to no known component."""
    stray = [k for k in source.keys() if not k.startswith(tuple(components))]
    if stray:
        raise CheckpointError(f"{', '.join(str(f) for f in source.files)} holds tensors of no known component "
                              f"(expected prefixes {', '.join(components)}):\n" +
                              "\n".join(f"  unexpected: {k}" for k in stray))


# --- codec decoder ---------------------------------------------------------------------


def codec_decoder_key_map(cfg) -> KeyMap:
    """`decoder.*` of speech_tokenizer/model.safetensors -> `engine.codec_decoder.CodecDecoder` keys.

    cfg: `CodecDecoderConfig`. The official vocoder is one flat list `decoder.decoder.{i}`
    (input conv, the blocks, SnakeBeta, output conv); ours names them, so the flat index is
    resolved with the number of blocks. Block parts: 0 SnakeBeta, 1 transposed conv, 2-4 units.
    """
    n_blocks = len(cfg.upsample_rates)
    flat = {0: "conv_in", n_blocks + 1: "snake_out", n_blocks + 2: "conv_out"}
    flat.update({i: f"blocks.{i - 1}" for i in range(1, n_blocks + 1)})
    rules = regex_map([
        (r"decoder\.quantizer\.rvq_first\.vq\.layers\.(\d+)\._codebook\.(\w+)", r"quantizer.semantic.codebooks.\1.\2"),
        (r"decoder\.quantizer\.rvq_rest\.vq\.layers\.(\d+)\._codebook\.(\w+)", r"quantizer.acoustic.codebooks.\1.\2"),
        (r"decoder\.quantizer\.rvq_first\.output_proj\.weight", "quantizer.semantic.output_proj.weight"),
        (r"decoder\.quantizer\.rvq_rest\.output_proj\.weight", "quantizer.acoustic.output_proj.weight"),
        (r"decoder\.pre_conv\.conv\.(\w+)", r"pre_conv.\1"),
        (r"decoder\.pre_transformer\.layers\.(\d+)\.self_attn_layer_scale\.scale", r"transformer.layers.\1.attn_scale"),
        (r"decoder\.pre_transformer\.layers\.(\d+)\.mlp_layer_scale\.scale", r"transformer.layers.\1.mlp_scale"),
        (r"decoder\.pre_transformer\.(.+)", r"transformer.\1"),
        (r"decoder\.upsample\.(\d+)\.0\.conv\.(\w+)", r"upsample.\1.trans.\2"),
        (r"decoder\.upsample\.(\d+)\.1\.dwconv\.conv\.(\w+)", r"upsample.\1.convnext.dwconv.\2"),
        (r"decoder\.upsample\.(\d+)\.1\.(.+)", r"upsample.\1.convnext.\2"),
    ])
    block_parts = [(r"block\.0\.(alpha|beta)", r"snake.\1"), (r"block\.1\.conv\.(\w+)", r"trans.\1"),
                   (r"block\.([234])\.(act[12])\.(alpha|beta)", None), (r"block\.([234])\.(conv[12])\.conv\.(\w+)", None)]

    def block_key(rest: str) -> str | None:
        for pattern, repl in block_parts:
            if m := re.fullmatch(pattern, rest):
                if repl is not None:
                    return m.expand(repl)
                unit, part, name = m.groups()
                part = {"act1": "snake1", "act2": "snake2"}.get(part, part)
                return f"units.{int(unit) - 2}.{part}.{name}"
        return None

    def key_map(key: str) -> str | None:
        m = re.fullmatch(r"decoder\.decoder\.(\d+)\.(.+)", key)
        if m is None:
            return rules(key)
        target, rest = flat.get(int(m.group(1))), m.group(2)
        if target is None:
            return None
        if target.startswith("blocks."):
            sub = block_key(rest)
            return None if sub is None else f"{target}.{sub}"
        if target == "snake_out":
            return f"{target}.{rest}"
        return f"{target}.{rest[len('conv.'):]}" if rest.startswith("conv.") else None

    return key_map


def _codec_decoder_unused(key: str) -> bool:
    """The decoder quantizer's encode-side projections (`rvq_*.input_proj`): stored, never used."""
    return re.fullmatch(r"decoder\.quantizer\.rvq_(first|rest)\.input_proj\.weight", key) is not None


def load_codec_decoder(speech_tokenizer_dir: Path, cfg=None, *, device=None,
                       dtype: torch.dtype | None = None):
    """The codec decoder from `speech_tokenizer/{config.json, model.safetensors}` (keys `decoder.*`).

    cfg: `CodecConfig` (or its `.decoder`); None reads it from the folder's config.json.
    """
    from engine.codec_config import CodecConfig
    from engine.codec_decoder import CodecDecoder

    folder = Path(speech_tokenizer_dir)
    cfg = cfg or CodecConfig.from_hf(read_json(folder, "config.json"))
    cfg = getattr(cfg, "decoder", cfg)
    with TensorSource.from_dir(folder) as source:
        view = TensorSubset(source, _codec_decoder_unused)
        return load_strict(lambda: CodecDecoder(cfg), view, codec_decoder_key_map(cfg), prefix="decoder.",
                           component="codec decoder", device=device, dtype=dtype)


# --- speaker encoder and codec encoder -------------------------------------------------


def speaker_encoder_key_map(key: str) -> str | None:
    """`speaker_encoder.*` of model.safetensors -> `engine.speaker_encoder.SpeakerEncoder` keys.

    The official ECAPA keeps the stem TDNN as blocks.0 and the SE-Res2Net blocks as
    blocks.1..n; ours names the stem apart, so block i is blocks.{i-1}.
    """
    m = re.fullmatch(r"speaker_encoder\.blocks\.(\d+)\.(.+)", key)
    if m is None:
        return prefix_map({
            "speaker_encoder.mfa.": "mfa.",
            "speaker_encoder.asp.tdnn.": "pool.tdnn.",
            "speaker_encoder.asp.conv.": "pool.conv.",
            "speaker_encoder.fc.": "fc.",
        })(key)
    index, rest = int(m.group(1)), m.group(2)
    if index == 0:
        return "stem." + rest
    rest = re.sub(r"^res2net_block\.blocks\.", "res2net.convs.", rest)
    rest = re.sub(r"^se_block\.", "se.", rest)
    return f"blocks.{index - 1}.{rest}"


def load_speaker_encoder(source: "TensorSource | Path", cfg, *, device=None, dtype: torch.dtype | None = None):
    """The x-vector ECAPA-TDNN (keys `speaker_encoder.*` of model.safetensors).

    source: the open model.safetensors (as for `load_talker`) or the checkpoint folder.
    cfg: `engine.config.SpeakerEncoderConfig` (the checkpoint's `speaker_encoder_config`).
    """
    from engine.speaker_encoder import SpeakerEncoder

    def load(src: TensorSource):
        return load_strict(lambda: SpeakerEncoder(cfg), src, speaker_encoder_key_map,
                           prefix="speaker_encoder.", component="speaker encoder", device=device, dtype=dtype)

    if isinstance(source, TensorSource):
        return load(source)
    with TensorSource.from_dir(Path(source)) as src:
        return load(src)


def codec_encoder_key_map(cfg) -> KeyMap:
    """`encoder.*` of speech_tokenizer/model.safetensors -> `engine.codec_encoder.CodecEncoder` keys.

    The official SEANet is one flat list (convs, residual blocks and parameterless ELUs,
    `layers.{i}`); ours nests it as stem / stages[s].{res[j], down} / head, so the flat index
    is computed from the config. Tensors the encoder never uses map to None here and are
    dropped by `load_codec_encoder` before the strict check (see `_codec_encoder_unused`).
    """
    per_stage = cfg.num_residual_layers + 2  # residual units, ELU, strided conv
    n_stages = len(cfg.upsampling_ratios)
    flat: dict[int, str] = {0: "seanet.stem"}
    for s in range(n_stages):
        base = 1 + s * per_stage
        for j in range(cfg.num_residual_layers):
            flat[base + j] = f"seanet.stages.{s}.res.{j}"
        flat[base + cfg.num_residual_layers + 1] = f"seanet.stages.{s}.down"
    flat[2 + n_stages * per_stage] = "seanet.head"
    unit_parts = {"block.1.": "conv1.", "block.3.": "conv2.", "shortcut.": "shortcut."}
    layer_parts = {
        "self_attn.": "attn.", "input_layernorm.": "norm1.", "post_attention_layernorm.": "norm2.",
        "self_attn_layer_scale.scale": "attn_scale", "mlp_layer_scale.scale": "mlp_scale",
        "mlp.fc1.": "fc1.", "mlp.fc2.": "fc2.",
    }

    def key_map(key: str) -> str | None:
        if (m := re.fullmatch(r"encoder\.encoder\.layers\.(\d+)\.(.+)", key)) and int(m.group(1)) in flat:
            target, rest = flat[int(m.group(1))], m.group(2)
            if ".res." in target:
                part = next((p for p in unit_parts if rest.startswith(p)), None)
                return None if part is None else f"{target}.{unit_parts[part]}{rest[len(part):]}"
            return f"{target}.{rest}"
        if m := re.fullmatch(r"encoder\.encoder_transformer\.layers\.(\d+)\.(.+)", key):
            index, rest = m.groups()
            part = next((p for p in layer_parts if rest.startswith(p)), None)
            return None if part is None else f"transformer.layers.{index}.{layer_parts[part]}{rest[len(part):]}"
        if key.startswith("encoder.downsample."):
            return key[len("encoder."):]
        if m := re.fullmatch(r"encoder\.quantizer\.(semantic|acoustic)_residual_vector_quantizer\.(.+)", key):
            kind, rest = m.groups()
            if rest.startswith("input_proj."):
                return f"{kind}.{rest}"
            if m2 := re.fullmatch(r"layers\.(\d+)\.codebook\.(embed_sum|cluster_usage)", rest):
                return f"{kind}.codebooks.{m2.group(1)}.{m2.group(2)}"
        return None

    return key_map


def _codec_encoder_unused(cfg, key: str) -> bool:
    """Checkpoint tensors the encode path never reads: the decode-side output projections,
    the codebooks' `initialized` flags, and acoustic codebooks past the valid 16."""
    if not key.startswith("encoder.quantizer."):
        return False
    if key.endswith(".output_proj.weight") or key.endswith(".codebook.initialized"):
        return True
    m = re.fullmatch(r"encoder\.quantizer\.acoustic_residual_vector_quantizer\.layers\.(\d+)\..+", key)
    return m is not None and int(m.group(1)) >= cfg.valid_num_quantizers - cfg.num_semantic_quantizers


def load_codec_encoder(speech_tokenizer_dir: Path, cfg=None, *, device=None,
                       dtype: torch.dtype | None = None):
    """The codec encoder from `speech_tokenizer/{config.json, model.safetensors}` (keys `encoder.*`).

    cfg: `CodecEncoderConfig`; None reads it from the folder's config.json. Codebooks stay in
    float32 whatever `dtype` (nearest-neighbour search on bf16 entries would change codes).
    """
    from engine.codec_encoder import CodecEncoder, CodecEncoderConfig

    folder = Path(speech_tokenizer_dir)
    cfg = cfg or CodecEncoderConfig.from_hf(read_json(folder, "config.json"))
    with TensorSource.from_dir(folder) as source:
        view = TensorSubset(source, lambda k: _codec_encoder_unused(cfg, k))
        return load_strict(lambda: CodecEncoder(cfg), view, codec_encoder_key_map(cfg), prefix="encoder.",
                           component="codec encoder", device=device, dtype=dtype,
                           keep_dtype=lambda k: ".codebooks." in k)
