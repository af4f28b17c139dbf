"""Tiny random official Qwen3-TTS 12 Hz Base checkpoints (talker + code predictor + speaker
encoder + text tokenizer), saved in the released layout.

Run in the reference environment through tools/make_parity_fixtures.py. `build(ckpt_dir, shape)`
writes config.json, generation_config.json, model.safetensors and the tokenizer files the
official processor saves (vocab.json, merges.txt, tokenizer_config.json, ...; no tokenizer.json,
as released, so the official loader converts vocab + merges exactly as it does for the real
model). The speech tokenizer (speech_tokenizer/) is built by tiny_codec.py.

What keeps the tiny model meaningful:
- the released codec vocabulary layout: talker vocab = CODEBOOK_SIZE + 1024 with every control
  id at the released offset past the codebook (generation suppresses that top block except EOS);
- the official random init perturbed by N(0, 0.15) on every weight, so argmaxes depend on text,
  voice and language;
- a byte-level BPE vocabulary trained deterministically on a varied corpus (English, CJK,
  Japanese, Korean, emoji, numbers), with "assistant" and "\n" single tokens as in Qwen's
  vocabulary (the official prompt builder slices ids by position and relies on it).
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch

from tools.parity.shapes import CODEBOOK_SIZE, NUM_CODE_GROUPS, TALKER

SEED = 1234
NOISE_STD = 0.15
BPE_VOCAB = 640  # byte alphabet (256) + merges

# released control ids minus the released codebook size (2048): offsets past the codebook
CONTROL_OFFSETS = dict(codec_pad_id=100, codec_bos_id=101, codec_eos_token_id=102, codec_think_id=106,
                       codec_nothink_id=107, codec_think_bos_id=108, codec_think_eos_id=109)
LANGUAGE_OFFSETS = dict(english=2, german=5, spanish=6, chinese=7, japanese=10, french=13, korean=16,
                        russian=21, italian=22, portuguese=23)

# Special tokens after the BPE vocabulary, in the released order (<|endoftext|> first, the tts
# tokens later with a gap, as 151643.. / 151671..).
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                  "<|audio_start|>", "<|audio_end|>", "<tts_pad>", "<tts_text_bos>", "<tts_text_eod>",
                  "<tts_text_bos_single>", "<|audio_pad|>"]

# Qwen2's pre-tokenizer split (transformers' Qwen2Converter), used to train the tiny vocabulary.
QWEN2_SPLIT = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
               r"""\s*[\r\n]+|\s+(?!\S)|\s+""")

CORPUS = [
    "<|im_start|>assistant\nHello there, how are you doing today?<|im_end|>\n",
    "The quick brown fox jumps over the lazy dog. It's 3:45 pm and we're late!",
    "I'll call you at 555-0123 tomorrow; the price is $19.99, not 20 dollars.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1,000 3.14159 2026-01-15 50% 7th",
    "今天天气很好，我们去公园散步吧。你好，世界！我叫通义千问，是阿里云的开源大模型。",
    "こんにちは、元気ですか？今日はいい天気ですね。ありがとうございます。カタカナもひらがなも。",
    "안녕하세요, 만나서 반갑습니다. 오늘 날씨가 좋네요.",
    "Guten Tag! Wie geht's? Schöne Grüße aus München, Straße und Fußball.",
    "Bonjour, ça va ? Très bien, merci. À bientôt, élève, garçon, où.",
    "Привет, как дела? Всё хорошо, спасибо. До свидания!",
    "Hola, ¿cómo estás? Olá, tudo bem? Ciao, come stai? Buongiorno.",
    "Emoji time 😀🎉👍🏽❤️🔥 and flags 🇯🇵🇨🇳 plus symbols © ® ™ € £ ¥ … — “quotes” ‘single’",
    "Mixed: Hello 世界 こんにちは 123 안녕 ok? Yes! No... maybe; (maybe) [sure] {fine} <tag> a/b c\\d",
    "\n\n  indented line\ttab\r\nwindows line\n",
    "assistant user system assistant\nassistant\n user\n",
]


def _corpus() -> list[str]:
    # repeated so merges are frequent enough; "assistant" gets its own token as in Qwen's vocab
    return CORPUS * 20 + ["<|im_start|>assistant\n"] * 200


def train_bpe(out_dir: Path) -> None:
    """Deterministic byte-level BPE with Qwen2's pre-tokenizer -> vocab.json + merges.txt."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=BPE_VOCAB, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    # special tokens are not part of the BPE vocabulary; strip them from the training text
    text = [t.replace("<|im_start|>", "").replace("<|im_end|>", "") for t in _corpus()]
    tok.train_from_iterator(text, trainer)
    tok.model.save(str(out_dir))


def _tokenizer_config(n_bpe: int) -> dict:
    decoder = {}
    for i, content in enumerate(SPECIAL_TOKENS):
        decoder[str(n_bpe + i)] = dict(content=content, lstrip=False, normalized=False, rstrip=False,
                                       single_word=False, special=True)
    return {
        "add_bos_token": False, "add_prefix_space": False, "added_tokens_decoder": decoder,
        "additional_special_tokens": SPECIAL_TOKENS[1:], "bos_token": None,
        "clean_up_tokenization_spaces": False, "eos_token": "<|im_end|>", "errors": "replace",
        "model_max_length": 131072, "pad_token": "<|endoftext|>", "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer", "unk_token": None,
    }


def write_tokenizer(ckpt_dir: Path) -> dict[str, int]:
    """Train, then save through the official processor; returns special token ids."""
    from qwen_tts.core.models import Qwen3TTSProcessor
    from transformers import Qwen2TokenizerFast

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train_bpe(tmp)
        n_bpe = len(json.loads((tmp / "vocab.json").read_text(encoding="utf-8")))
        (tmp / "tokenizer_config.json").write_text(json.dumps(_tokenizer_config(n_bpe), indent=2))
        tokenizer = Qwen2TokenizerFast.from_pretrained(str(tmp))
        Qwen3TTSProcessor(tokenizer=tokenizer).save_pretrained(str(ckpt_dir))
    (ckpt_dir / "tokenizer.json").unlink(missing_ok=True)  # as released: vocab + merges only
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    for probe in ("assistant", "\n"):
        assert len(tokenizer(probe)["input_ids"]) == 1, f"{probe!r} must be one token"
    return ids


def make_config(shape: str, ids: dict[str, int]) -> dict:
    """config.json of the tiny checkpoint: only the keys a released config.json carries."""
    dims = TALKER[shape]
    t = dict(dims["talker"])
    mrope_section = t.pop("mrope_section")
    text_vocab = -(-(max(ids.values()) + 1) // 64) * 64  # padded like the released 151936
    talker = dict(
        t, vocab_size=CODEBOOK_SIZE + 1024, text_vocab_size=text_vocab, num_code_groups=NUM_CODE_GROUPS,
        hidden_act="silu", rms_norm_eps=1e-6, rope_theta=1_000_000, max_position_embeddings=32768,
        rope_scaling={"interleaved": True, "mrope_section": mrope_section, "rope_type": "default"},
        position_id_per_seconds=13, spk_id={}, spk_is_dialect={},
        codec_language_id={k: CODEBOOK_SIZE + v for k, v in LANGUAGE_OFFSETS.items()},
        **{k: CODEBOOK_SIZE + v for k, v in CONTROL_OFFSETS.items()},
        code_predictor_config=dict(
            dims["predictor"], vocab_size=CODEBOOK_SIZE, num_code_groups=NUM_CODE_GROUPS, hidden_act="silu",
            rms_norm_eps=1e-6, rope_theta=1_000_000, max_position_embeddings=65536, rope_scaling=None,
            layer_types=["full_attention"] * dims["predictor"]["num_hidden_layers"]),
    )
    speaker = dict(dims["speaker"], mel_dim=128, enc_dim=t["hidden_size"], enc_kernel_sizes=[5, 3, 3, 3, 1],
                   enc_dilations=[1, 2, 3, 4, 1], sample_rate=24000)
    return dict(
        architectures=["Qwen3TTSForConditionalGeneration"], model_type="qwen3_tts", torch_dtype="float32",
        talker_config=talker, speaker_encoder_config=speaker, tokenizer_type="qwen3_tts_tokenizer_12hz",
        tts_model_size="0b6", tts_model_type="base", im_start_token_id=ids["<|im_start|>"],
        im_end_token_id=ids["<|im_end|>"], tts_pad_token_id=ids["<tts_pad>"],
        tts_bos_token_id=ids["<tts_text_bos>"], tts_eos_token_id=ids["<tts_text_eod>"])


GENERATION_CONFIG = {  # the released generation_config.json of the Base models
    "do_sample": True, "repetition_penalty": 1.05, "temperature": 0.9, "top_p": 1.0, "top_k": 50,
    "subtalker_dosample": True, "subtalker_temperature": 0.9, "subtalker_top_p": 1.0, "subtalker_top_k": 50,
    "max_new_tokens": 8192,
}


def build(ckpt_dir: Path, shape: str) -> None:
    """Write the tiny official checkpoint of `shape` ("a" or "b") into `ckpt_dir`."""
    from qwen_reference import official

    ckpt_dir = Path(ckpt_dir)
    for name in ("config.json", "generation_config.json", "model.safetensors", "vocab.json", "merges.txt",
                 "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "chat_template.jinja"):
        (ckpt_dir / name).unlink(missing_ok=True)
    ids = write_tokenizer(ckpt_dir)
    config = make_config(shape, ids)
    torch.manual_seed(SEED)
    model = official.Qwen3TTSForConditionalGeneration(official.Qwen3TTSConfig(**config)).eval()
    gen = torch.Generator().manual_seed(SEED + ord(shape))
    with torch.no_grad():
        for _, param in sorted(model.named_parameters()):
            param.add_(torch.randn(param.shape, generator=gen) * NOISE_STD)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        shutil.copy(Path(tmp) / "model.safetensors", ckpt_dir / "model.safetensors")
    (ckpt_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (ckpt_dir / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG, indent=2) + "\n")
