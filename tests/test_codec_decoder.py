"""The codec decoder against the official one (goldens from tools/parity/golden_codec.py),
its config parsing, strict loading and input checks."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.codec_config import CodecConfig, CodecDecoderConfig
from engine.codec_decoder import CodecDecoder
from engine.errors import CheckpointError, InvalidParameterError, UnsupportedModelError
from engine.loader import load_codec_decoder

PARITY_TOL = 1e-4  # ours vs official, float32
EXACT_TOL = 1e-5  # ours vs ours (chunked vs one pass)


@pytest.fixture(scope="module")
def decoder(tiny_ckpt):
    return load_codec_decoder(tiny_ckpt / "speech_tokenizer")


@pytest.fixture(scope="module")
def golden(golden_dir):
    return load_file(str(golden_dir / "codec_decode.safetensors"))


def golden_meta(golden_dir) -> dict:
    from safetensors import safe_open

    with safe_open(str(golden_dir / "codec_decode.safetensors"), framework="pt") as f:
        return f.metadata()


@pytest.mark.parametrize("frames", [1, 50, 130])
def test_offline_decode_matches_official(decoder, golden, frames):
    codes = golden[f"codes_{frames}"]
    wav = decoder.decode(codes, max_chunk=None)
    want = golden[f"wav_{frames}"]
    assert wav.dtype == torch.float32 and wav.shape == want.shape == (frames * decoder.config.hop,)
    assert (wav - want).abs().max().item() <= PARITY_TOL
    assert want.std() > 0.05  # the fixture is not a flat or clipped signal


def test_official_chunked_decode_is_windows_of_our_decode(decoder, golden, golden_dir):
    """Re-decoding windows with left context (official chunked_decode, community streaming)
    is reproduced by our decoder on the same windows, and is NOT the full decode: it has seams."""
    meta = json.loads(golden_meta(golden_dir)["chunked"])
    codes, hop = golden[f"codes_{meta['length']}"], decoder.config.hop
    chunk, context = meta["chunk_size"], meta["left_context_size"]
    pieces = []
    for start in range(0, codes.shape[0], chunk):
        ctx = min(context, start)
        wav = decoder.decode(codes[start - ctx:start + chunk], max_chunk=None)
        pieces.append(wav[ctx * hop:])
    ours = torch.cat(pieces)
    assert (ours - golden["chunked"]).abs().max().item() <= PARITY_TOL
    full = golden[f"wav_{meta['length']}"]
    assert (golden["chunked"] - full).abs().max().item() > PARITY_TOL


def test_long_decode_in_chunks_is_one_pass(decoder):
    gen = torch.Generator().manual_seed(5)
    codes = torch.randint(0, decoder.config.codebook_size, (310, 16), generator=gen)
    one_pass = decoder.decode(codes, max_chunk=None)
    assert (decoder.decode(codes, max_chunk=64) - one_pass).abs().max().item() <= EXACT_TOL
    assert torch.equal(decoder.decode(codes), decoder.decode(codes, max_chunk=300))


def test_batched_decode_equals_single(decoder):
    gen = torch.Generator().manual_seed(6)
    codes = torch.randint(0, decoder.config.codebook_size, (2, 20, 16), generator=gen)
    batch = decoder.decode(codes)
    assert batch.shape == (2, 20 * decoder.config.hop)
    for i in range(2):
        assert (batch[i] - decoder.decode(codes[i])).abs().max().item() <= EXACT_TOL


def test_empty_codes_give_empty_wav(decoder):
    assert decoder.decode(torch.zeros(0, 16, dtype=torch.long)).shape == (0,)


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(4, 15, dtype=torch.long), r"\[frames, 16\]"),
    (torch.zeros(4, 16), "integers"),
    (torch.full((4, 16), -1), r"\[0, 64\)"),
    (torch.full((4, 16), 64), r"\[0, 64\)"),
])
def test_bad_codes_are_rejected(decoder, bad, match):
    with pytest.raises(InvalidParameterError, match=match):
        decoder.decode(bad)


RELEASED = {  # Qwen3-TTS-Tokenizer-12Hz speech_tokenizer/config.json (fields we read)
    "model_type": "qwen3_tts_tokenizer_12hz", "input_sample_rate": 24000, "output_sample_rate": 24000,
    "decode_upsample_rate": 1920, "encode_downsample_rate": 1920, "encoder_valid_num_quantizers": 16,
    "encoder_config": {"num_quantizers": 32, "upsampling_ratios": [8, 6, 5, 4]},
    "decoder_config": {
        "codebook_size": 2048, "codebook_dim": 512, "latent_dim": 1024, "hidden_size": 512, "head_dim": 64,
        "num_attention_heads": 16, "num_key_value_heads": 16, "intermediate_size": 1024, "num_hidden_layers": 8,
        "sliding_window": 72, "upsample_rates": [8, 5, 4, 3], "upsampling_ratios": [2, 2], "decoder_dim": 1536,
        "semantic_codebook_size": 4096, "num_semantic_quantizers": 1, "rms_norm_eps": 1e-5, "rope_theta": 10000,
    },
}


def test_released_config_parses():
    cfg = CodecConfig.from_hf(RELEASED)
    assert cfg.decoder == CodecDecoderConfig()  # our defaults are the released values
    assert cfg.decoder.hop == 1920 and cfg.frame_rate == 12.5 and cfg.decoder.head_dim == 64
    assert cfg.encoder_hf["num_quantizers"] == 32 and cfg.encoder_valid_num_quantizers == 16


def test_head_dim_defaults_like_the_official_code():
    d = dict(RELEASED["decoder_config"])
    del d["head_dim"]
    assert CodecDecoderConfig.from_hf(d).head_dim == 512 // 16


def test_other_tokenizers_are_refused():
    with pytest.raises(UnsupportedModelError, match="qwen3_tts_tokenizer_25hz"):
        CodecConfig.from_hf({**RELEASED, "model_type": "qwen3_tts_tokenizer_25hz"})
    with pytest.raises(UnsupportedModelError, match="decode_upsample_rate"):
        CodecConfig.from_hf({**RELEASED, "decode_upsample_rate": 960})


def test_tiny_configs_parse(tiny_ckpt):
    raw = json.loads((tiny_ckpt / "speech_tokenizer" / "config.json").read_text())
    cfg = CodecConfig.from_hf(raw)
    assert cfg.decoder.num_quantizers == 16 and cfg.decoder.sliding_window < 300


def test_strict_load_lists_every_bad_tensor(tiny_ckpt, tmp_path):
    folder = tmp_path / "speech_tokenizer"
    shutil.copytree(tiny_ckpt / "speech_tokenizer", folder)
    tensors = load_file(str(folder / "model.safetensors"))
    del tensors["decoder.pre_conv.conv.bias"]
    tensors["decoder.extra.weight"] = torch.zeros(1)
    w = "decoder.pre_transformer.layers.0.mlp.up_proj.weight"
    tensors[w] = tensors[w][:-1]
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError) as err:
        load_codec_decoder(folder)
    msg = str(err.value)
    assert "missing: pre_conv.bias" in msg and "unexpected: decoder.extra.weight" in msg and f"wrong shape: {w}" in msg


def test_key_map_covers_the_checkpoint(decoder, tiny_ckpt):
    """Every checkpoint decoder tensor lands in the module unchanged (decode-unused ones excepted)."""
    from engine.loader import _codec_decoder_unused, codec_decoder_key_map

    tensors = load_file(str(tiny_ckpt / "speech_tokenizer" / "model.safetensors"))
    key_map, ours = codec_decoder_key_map(decoder.config), decoder.state_dict()
    used = [k for k in tensors if k.startswith("decoder.") and not _codec_decoder_unused(k)]
    assert sorted(key_map(k) for k in used) == sorted(ours)
    for k in used:
        assert torch.equal(tensors[k], ours[key_map(k)]), k


def test_meta_build_has_no_stored_buffers():
    """Computed tables are non-persistent: state_dict holds checkpoint tensors only."""
    with torch.device("meta"):
        model = CodecDecoder(CodecDecoderConfig(num_hidden_layers=1))
    assert not any(k.endswith(("table", "inv_freq")) for k in model.state_dict())
