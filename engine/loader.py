"""Finding checkpoints, reading safetensors and loading weights into engine modules.

The one place that knows checkpoint tensor names. Each component (talker, code predictor,
speaker encoder, codec decoder, codec encoder) has one explicit name map below from
checkpoint keys to module keys; `load_strict` builds the module on the meta device (so the
weights are never held twice), checks every tensor name and shape before reading any data,
and raises one `CheckpointError` listing every missing, unexpected and mis-shaped tensor.

Convention for modules loaded here: buffers that are computed rather than stored (rotary
tables, mel filterbanks, KV caches) are non-persistent and created by a method
`init_buffers(device)`, which `load_strict` calls on every submodule after the weights are
assigned (a module built on the meta device has no real storage for them otherwise).
"""
from __future__ import annotations

import json
import os
import re
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Iterable, Mapping

import torch
from torch import nn

from engine.errors import CheckpointError

# Files a 12 Hz Base checkpoint needs; nothing else is fetched from the Hub.
CHECKPOINT_PATTERNS = (
    "config.json",
    "generation_config.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "model.safetensors",
    "model-*.safetensors",
    "model.safetensors.index.json",
    "speech_tokenizer/config.json",
    "speech_tokenizer/model.safetensors",
    "speech_tokenizer/model-*.safetensors",
    "speech_tokenizer/model.safetensors.index.json",
)

# ---------------------------------------------------------------------------------------
# resolving a local directory or a Hub id


def resolve_checkpoint(repo_id_or_dir: str | os.PathLike, revision: str | None = None,
                       patterns: Iterable[str] = CHECKPOINT_PATTERNS) -> Path:
    """Return a local directory holding the checkpoint.

    An existing directory is used as is. Anything else is taken as a Hugging Face Hub repo
    id and resolved with `huggingface_hub.snapshot_download`, fetching only `patterns` and
    honouring the Hub cache and `HF_HUB_OFFLINE` (offline: the cached snapshot or an error).
    """
    path = Path(repo_id_or_dir).expanduser()
    if path.is_dir():
        if revision is not None:
            raise CheckpointError(f"revision={revision!r} was given for a local directory {path}; "
                                  "revisions apply to Hub repo ids only")
        return path
    name = str(repo_id_or_dir)
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", name):
        raise CheckpointError(f"{name!r} is neither an existing directory nor a Hub repo id "
                              "of the form 'owner/name'")
    return _snapshot(name, revision, list(patterns))


def _snapshot(repo_id: str, revision: str | None, patterns: list[str]) -> Path:
    import huggingface_hub
    from huggingface_hub import constants, errors as hf_errors

    try:
        folder = huggingface_hub.snapshot_download(repo_id, revision=revision, allow_patterns=patterns)
    except hf_errors.RevisionNotFoundError as e:
        raise CheckpointError(f"revision {revision!r} of {repo_id!r} does not exist on the Hub") from e
    except (hf_errors.RepositoryNotFoundError, hf_errors.GatedRepoError) as e:
        raise CheckpointError(f"Hub repo {repo_id!r} not found or not accessible "
                              f"(private or gated repos need a token): {e}") from e
    except hf_errors.LocalEntryNotFoundError as e:
        offline = " (HF_HUB_OFFLINE is set)" if constants.HF_HUB_OFFLINE else ""
        raise CheckpointError(f"{repo_id!r} (revision {revision or 'main'}) is not in the Hugging Face "
                              f"cache and cannot be downloaded{offline}: {e}") from e
    except (hf_errors.HfHubHTTPError, OSError, ValueError) as e:
        raise CheckpointError(f"could not fetch {repo_id!r} from the Hub: {e}") from e
    return Path(folder)


def require_file(folder: Path, name: str) -> Path:
    """`folder / name`, or a CheckpointError naming the missing file."""
    path = Path(folder) / name
    if not path.is_file():
        raise CheckpointError(f"checkpoint file missing: {path}")
    return path


def read_json(folder: Path, name: str) -> dict:
    """Parse a JSON file of the checkpoint with a clear error for a missing or broken file."""
    path = require_file(folder, name)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from e


# ---------------------------------------------------------------------------------------
# reading safetensors


# safetensors dtype names -> torch dtypes
_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}


class TensorSource:
    """Read-only view of the tensors in one or more safetensors files.

    Names, shapes and dtypes come from the headers alone (validated by the safetensors
    library: a truncated or corrupt file is refused before anything is read), so a checkpoint
    can be checked completely before any tensor data is read. `get` reads one tensor into
    fresh memory with a plain file read, not through a memory map: mapped pages of the file
    would count as resident on top of the copies made from them (dtype casts, packed
    weights), doubling the peak. Use as a context manager (closes the files).
    """

    def __init__(self, files: list[Path]):
        from safetensors import SafetensorError, safe_open

        self._stack = ExitStack()
        self._where: dict[str, tuple] = {}  # key -> (file object, absolute offset, size, dtype, shape)
        self.files = files
        for file in files:
            try:
                with safe_open(str(file), framework="pt", device="cpu"):
                    pass  # validation only: header, offsets, file length
                fh = self._stack.enter_context(open(file, "rb"))
                header_len = int.from_bytes(fh.read(8), "little")
                header = json.loads(fh.read(header_len))
            except (SafetensorError, OSError, ValueError) as e:
                self._stack.close()
                raise CheckpointError(f"cannot read {file}: {e} (truncated or corrupt download? "
                                      "delete it and fetch it again)") from e
            for key, info in header.items():
                if key == "__metadata__":
                    continue
                if info["dtype"] not in _DTYPES:
                    self._stack.close()
                    raise CheckpointError(f"{file}: tensor {key!r} has unsupported dtype {info['dtype']}")
                begin, end = info["data_offsets"]
                self._where[key] = (fh, 8 + header_len + begin, end - begin, _DTYPES[info["dtype"]],
                                    tuple(info["shape"]))

    @classmethod
    def from_dir(cls, folder: Path, stem: str = "model") -> "TensorSource":
        """Open `stem.safetensors`, or every shard listed in `stem.safetensors.index.json`."""
        folder = Path(folder)
        single = folder / f"{stem}.safetensors"
        index = folder / f"{stem}.safetensors.index.json"
        if single.is_file():
            return cls([single])
        if index.is_file():
            weight_map = read_json(folder, index.name).get("weight_map", {})
            return cls([require_file(folder, name) for name in sorted(set(weight_map.values()))])
        raise CheckpointError(f"checkpoint file missing: {single}")

    def __enter__(self) -> "TensorSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()

    def keys(self) -> list[str]:
        return list(self._where)

    def __contains__(self, key: str) -> bool:
        return key in self._where

    def shape(self, key: str) -> tuple[int, ...]:
        return self._where[key][4]

    def get(self, key: str) -> torch.Tensor:
        fh, offset, size, dtype, shape = self._where[key]
        tensor = torch.empty(shape, dtype=dtype)
        if size:
            buffer = memoryview(tensor.reshape(-1).view(torch.uint8).numpy())
            try:
                fh.seek(offset)
                got = fh.readinto(buffer)
            except OSError as e:
                raise CheckpointError(f"cannot read tensor {key!r} from {fh.name}: {e}") from e
            if got != size or buffer.nbytes != size:
                raise CheckpointError(f"{fh.name}: tensor {key!r} is truncated or corrupt "
                                      f"({got} of {size} bytes, {buffer.nbytes} expected from its shape)")
        return tensor


# ---------------------------------------------------------------------------------------
# strict loading

KeyMap = Callable[[str], "str | None"]


def prefix_map(rules: Mapping[str, str]) -> KeyMap:
    """A key map from an ordered table of checkpoint-prefix -> module-prefix rewrites.

    A key matching no rule maps to None (reported as unexpected by `load_strict`).
    Rules are tried in order, so put longer prefixes first.
    """
    items = list(rules.items())

    def key_map(key: str) -> str | None:
        for src, dst in items:
            if key.startswith(src):
                return dst + key[len(src):]
        return None

    return key_map


def regex_map(rules: Iterable[tuple[str, str]]) -> KeyMap:
    """A key map from ordered (regex, replacement) rules; the first full match wins."""
    compiled = [(re.compile(pattern), repl) for pattern, repl in rules]

    def key_map(key: str) -> str | None:
        for pattern, repl in compiled:
            if pattern.fullmatch(key):
                return pattern.sub(repl, key)
        return None

    return key_map


def load_strict(build: Callable[[], nn.Module], source: TensorSource, key_map: KeyMap, *,
                prefix: str, component: str, device=None, dtype: torch.dtype | None = None,
                keep_dtype: Callable[[str], bool] | None = None) -> nn.Module:
    """Build a module on the meta device and fill it from the checkpoint, strictly.

    build: constructs the module (called under `torch.device("meta")`).
    source: the checkpoint's tensors; only keys starting with `prefix` belong to this
        component, and every one of them must map (via `key_map`) to a module key.
    component: a human name for messages ("talker", "speaker encoder", ...).
    dtype: floating tensors are cast to it (None keeps the stored dtype), except module
        keys for which `keep_dtype(key)` is true (kept in float32 if stored so).
    Raises CheckpointError listing every missing, unexpected and mis-shaped tensor.
    """
    device = torch.device(device or "cpu")
    with torch.device("meta"):
        module = build()
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    pairs = _check_names_and_shapes(source, key_map, expected, prefix=prefix, component=component)
    state = {}
    for ckpt_key, module_key in pairs.items():
        tensor = source.get(ckpt_key)
        if tensor.is_floating_point() and dtype is not None and not (keep_dtype and keep_dtype(module_key)):
            tensor = tensor.to(dtype)
        state[module_key] = tensor.to(device)
        del tensor
    module.load_state_dict(state, strict=True, assign=True)
    del state
    _init_buffers(module, device)
    return module.eval()


def _check_names_and_shapes(source: TensorSource, key_map: KeyMap, expected: dict[str, tuple], *,
                            prefix: str, component: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    unexpected, misshaped = [], []
    for ckpt_key in source.keys():
        if not ckpt_key.startswith(prefix):
            continue
        module_key = key_map(ckpt_key)
        if module_key is None or module_key not in expected:
            unexpected.append(ckpt_key)
            continue
        found = source.shape(ckpt_key)
        if found != expected[module_key]:
            misshaped.append(f"{ckpt_key}: checkpoint {list(found)}, model expects {list(expected[module_key])}")
        pairs[ckpt_key] = module_key
    missing = sorted(set(expected) - set(pairs.values()))
    if missing or unexpected or misshaped:
        lines = [f"the {component} weights in {', '.join(str(f) for f in source.files)} do not match the model:"]
        lines += [f"  missing: {k}" for k in missing]
        lines += [f"  unexpected: {k}" for k in unexpected]
        lines += [f"  wrong shape: {k}" for k in misshaped]
        raise CheckpointError("\n".join(lines))
    return pairs


def _init_buffers(module: nn.Module, device: torch.device) -> None:
    for sub in module.modules():
        init = getattr(sub, "init_buffers", None)
        if callable(init):
            init(device)
    left = [name for name, t in list(module.named_parameters()) + list(module.named_buffers()) if t.is_meta]
    if left:
        raise CheckpointError(f"internal: tensors left uninitialised after loading: {left[:10]}")


# ---------------------------------------------------------------------------------------
# name maps (one per component; CODEC and ENCODERS insert theirs below)


# --- talker and code predictor (engineer CORE) ------------------------------------------

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

    view = _Without(source, lambda k: k.startswith(_PREDICTOR_PREFIX))
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


# --- codec decoder (engineer CODEC) -----------------------------------------------------


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
        view = _Without(source, _codec_decoder_unused)
        return load_strict(lambda: CodecDecoder(cfg), view, codec_decoder_key_map(cfg), prefix="decoder.",
                           component="codec decoder", device=device, dtype=dtype)


# --- speaker encoder and codec encoder (engineer ENCODERS) ------------------------------


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


class _Without:
    """A TensorSource view hiding the keys `drop(key)` is true for (same read interface)."""

    def __init__(self, source: TensorSource, drop: Callable[[str], bool]):
        self._source, self.files = source, source.files
        self._keys = [k for k in source.keys() if not drop(k)]

    def keys(self) -> list[str]:
        return list(self._keys)

    def shape(self, key: str) -> tuple[int, ...]:
        return self._source.shape(key)

    def get(self, key: str) -> torch.Tensor:
        return self._source.get(key)


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
        view = _Without(source, lambda k: _codec_encoder_unused(cfg, k))
        return load_strict(lambda: CodecEncoder(cfg), view, codec_encoder_key_map(cfg), prefix="encoder.",
                           component="codec encoder", device=device, dtype=dtype,
                           keep_dtype=lambda k: ".codebooks." in k)
