"""Golden outputs of the official talker, code predictor, text tokenizer and logits processors.

Run in the reference environment through tools/make_parity_fixtures.py. `record(ckpt_dir,
golden_dir, shape)` loads the tiny checkpoint with the official loaders
(`Qwen3TTSModel.from_pretrained`: AutoConfig/AutoModel/AutoProcessor, as for the released model)
and writes golden_dir/talker.json (inputs, token ids, codes) and golden_dir/talker.safetensors
(x-vectors, reference codes, logits):

- tokenizer ids of a varied text set in both chat templates the official wrapper builds;
- per prompt case (x-vector only / ICL, both text-feeding modes, auto / fixed language):
  the last-position prefill logits, the first decode-step logits, and the greedy codes of
  all 16 codebooks (EOS suppressed, so every case is long: the config's EOS id is moved out
  of the vocabulary for the run, which puts the real EOS into the suppressed control block);
  one case per shape keeps EOS enabled;
- the official logits-processor chains (talker and sub-talker) applied to fixed logits.

Note: the official generate drops the last sampled frame (its codebooks 1..15 are computed by
the forward that never runs), so max_new_tokens=M yields M-1 frames.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from tools.parity.shapes import CODEBOOK_SIZE, NUM_CODE_GROUPS

MAX_NEW_TOKENS = 34  # -> 33 frames from the official generate
SEED = 4321

TOKENIZER_TEXTS = [
    "Hello world!", " leading space", "trailing space ", "double  space", "The year 2026 has 365 days.",
    "3.14159 and 1,000,000 and -42", "今天天气很好，我们去公园散步吧。", "こんにちは、世界！カタカナとひらがな。",
    "안녕하세요, 반갑습니다.", "Grüße aus München, ça va? Привет, как дела?", "emoji 😀🎉👍🏽❤️🔥 🇯🇵",
    "Mixed 中文 English 日本語 한국어 123abc!?", "<|im_start|> inside <|im_end|> and <tts_pad> tokens",
    "tabs\tand\nnew lines\n\nhere", "", "ﬁ ligature, e\u0301 (NFD) vs é", "unseen: ∮ ∂ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ☃ ⅷ",
    "'s 't 're 've 'm 'll 'd I'M WE'LL", "Dr. Smith's café costs €3.50 (approx.) — see §12.",
]

TEXTS = {
    "en": "Hello there! This is a small test of the speech model, with numbers like 42 and 3.5.",
    "en2": "Good morning, how are you today?",
    "zh": "今天天气很好，我们去公园散步吧。你好，世界！",
    "ja": "こんにちは。",
    "mix": "Hello 世界, こんにちは 123! 😀 Mixed scripts here.",
    "ref1": "This is the reference transcript.",
    "ref2": "参考音频的文本内容，很长很长的一句话，用来测试填充。",
}

# name, mode, language, non_streaming_mode, text, ref_text, ref_frames, eos_allowed
CASES = [
    ("xvec_auto", "xvector", "auto", False, "en", None, 0, False),
    ("xvec_english_nonstream", "xvector", "english", True, "en2", None, 0, False),
    ("xvec_chinese", "xvector", "chinese", False, "zh", None, 0, False),
    ("icl_auto_trailing", "icl", "auto", False, "en", "ref1", 4, False),
    ("icl_japanese_padded", "icl", "japanese", False, "ja", "ref2", 24, False),
    ("icl_english_nonstream", "icl", "english", True, "mix", "ref1", 10, False),
    ("icl_auto_nonstream", "icl", "auto", True, "zh", "ref2", 6, False),
    ("xvec_auto_eos", "xvector", "auto", False, "en2", None, 0, True),
]

# talker (codebook 0) sampling-filter cases: kwargs as the official generate passes them
TALKER_FILTERS = [
    dict(temperature=0.9, top_k=50, top_p=1.0, repetition_penalty=1.05, step=0),
    dict(temperature=0.9, top_k=50, top_p=1.0, repetition_penalty=1.05, step=1),
    dict(temperature=0.7, top_k=10, top_p=0.8, repetition_penalty=1.3, step=5),
    dict(temperature=1.3, top_k=1000, top_p=0.95, repetition_penalty=1.0, step=7),
    dict(temperature=1.0, top_k=0, top_p=0.5, repetition_penalty=2.0, step=3),
]
SUBTALKER_FILTERS = [
    dict(temperature=0.9, top_k=50, top_p=1.0),
    dict(temperature=0.5, top_k=5, top_p=0.9),
    dict(temperature=1.0, top_k=0, top_p=0.7),
]


def _load(ckpt_dir: Path):
    import qwen_reference  # noqa: F401  (stubs torchaudio before qwen_tts imports)
    from qwen_tts.inference.qwen3_tts_model import Qwen3TTSModel

    wrapper = Qwen3TTSModel.from_pretrained(str(ckpt_dir), dtype=torch.float32, attn_implementation="eager")
    wrapper.model.eval()
    return wrapper


def _record_tokenizer(wrapper) -> dict:
    out = {"texts": TOKENIZER_TEXTS, "assistant": [], "reference": []}
    for text in TOKENIZER_TEXTS:
        out["assistant"].append(wrapper._tokenize_texts([wrapper._build_assistant_text(text)])[0][0].tolist())
        out["reference"].append(wrapper._tokenize_texts([wrapper._build_ref_text(text)])[0][0].tolist())
    return out


def _run_case(wrapper, case, xvector, ref_codes, max_new_tokens):
    name, mode, language, non_streaming, text_key, ref_key, _, eos_allowed = case
    model = wrapper.model
    talker_cfg = model.config.talker_config
    input_ids = wrapper._tokenize_texts([wrapper._build_assistant_text(TEXTS[text_key])])
    ref_ids = None
    if mode == "icl":
        ref_ids = wrapper._tokenize_texts([wrapper._build_ref_text(TEXTS[ref_key])])
    prompt = dict(ref_code=[ref_codes if mode == "icl" else None], ref_spk_embedding=[xvector],
                  x_vector_only_mode=[mode == "xvector"], icl_mode=[mode == "icl"])
    logits = []
    hook = model.talker.codec_head.register_forward_hook(lambda m, i, o: logits.append(o.detach()[0, -1].clone()))
    real_eos = talker_cfg.codec_eos_token_id
    if not eos_allowed:
        talker_cfg.codec_eos_token_id = talker_cfg.vocab_size + 1000
    try:
        codes, _ = model.generate(
            input_ids=input_ids, ref_ids=ref_ids, voice_clone_prompt=prompt, languages=[language],
            non_streaming_mode=non_streaming, max_new_tokens=max_new_tokens, do_sample=False,
            subtalker_dosample=False, repetition_penalty=1.05)
    finally:
        talker_cfg.codec_eos_token_id = real_eos
        hook.remove()
    return codes[0], torch.stack(logits[:2])


def _talker_chain(talker, kw):
    from transformers.generation.logits_process import LogitsProcessorList

    config = talker.generation_config.__class__.from_dict(talker.generation_config.to_dict())
    suppress = [i for i in range(talker.config.vocab_size - 1024, talker.config.vocab_size)
                if i != talker.config.codec_eos_token_id]
    config.update(do_sample=True, temperature=kw["temperature"], top_k=kw["top_k"], top_p=kw["top_p"],
                  repetition_penalty=kw["repetition_penalty"], min_new_tokens=2, suppress_tokens=suppress,
                  eos_token_id=talker.config.codec_eos_token_id)
    talker._prepare_special_tokens(config, True, device="cpu")
    return talker._get_logits_processor(generation_config=config, input_ids_seq_length=0, device="cpu",
                                        logits_processor=LogitsProcessorList(), model_kwargs={})


def _subtalker_chain(predictor, kw):
    from transformers.generation.logits_process import LogitsProcessorList

    config = predictor.generation_config.__class__.from_dict(predictor.generation_config.to_dict())
    config.update(do_sample=True, temperature=kw["temperature"], top_k=kw["top_k"], top_p=kw["top_p"])
    predictor._prepare_special_tokens(config, True, device="cpu")
    return predictor._get_logits_processor(generation_config=config, input_ids_seq_length=2, device="cpu",
                                           logits_processor=LogitsProcessorList(), model_kwargs={})


def _record_filters(model, gen: torch.Generator, tensors: dict) -> dict:
    talker = model.talker
    vocab = talker.config.vocab_size
    meta = {"talker": [], "subtalker": []}
    for i, kw in enumerate(TALKER_FILTERS):
        chain = _talker_chain(talker, kw)
        logits = torch.randn(1, vocab, generator=gen) * 3
        history = torch.randint(0, CODEBOOK_SIZE, (1, kw["step"]), generator=gen)
        if kw["step"]:  # make sure the penalty meets both signs of logits
            history[0, 0] = int(logits[0, :CODEBOOK_SIZE].argmax())
            history[0, -1] = int(logits[0, :CODEBOOK_SIZE].argmin())
        tensors[f"filter.talker.{i}.logits"] = logits[0]
        tensors[f"filter.talker.{i}.history"] = history[0]
        tensors[f"filter.talker.{i}.out"] = chain(history, logits.clone())[0]
        meta["talker"].append(dict(kw, processors=[type(p).__name__ for p in chain]))
    for i, kw in enumerate(SUBTALKER_FILTERS):
        chain = _subtalker_chain(talker.code_predictor, kw)
        logits = torch.randn(1, CODEBOOK_SIZE, generator=gen) * 3
        tensors[f"filter.subtalker.{i}.logits"] = logits[0]
        tensors[f"filter.subtalker.{i}.out"] = chain(torch.zeros(1, 2, dtype=torch.long), logits.clone())[0]
        meta["subtalker"].append(dict(kw, processors=[type(p).__name__ for p in chain]))
    return meta


def record(ckpt_dir: Path, golden_dir: Path, shape: str) -> None:
    """Write golden_dir/talker.json and golden_dir/talker.safetensors for the tiny checkpoint."""
    from safetensors.torch import save_file

    wrapper = _load(Path(ckpt_dir))
    model = wrapper.model
    hidden = model.config.talker_config.hidden_size
    gen = torch.Generator().manual_seed(SEED + ord(shape))
    tensors: dict[str, torch.Tensor] = {}
    meta = {"shape": shape, "max_new_tokens": MAX_NEW_TOKENS, "texts": TEXTS,
            "tokenizer": _record_tokenizer(wrapper), "cases": []}
    with torch.no_grad():
        for case in CASES:
            name, mode, language, non_streaming, text_key, ref_key, ref_frames, eos_allowed = case
            xvector = torch.randn(hidden, generator=gen) * 0.5
            ref_codes = torch.randint(0, CODEBOOK_SIZE, (max(ref_frames, 1), NUM_CODE_GROUPS), generator=gen)
            codes, logits = _run_case(wrapper, case, xvector, ref_codes, MAX_NEW_TOKENS)
            tensors[f"{name}.xvector"] = xvector
            if mode == "icl":
                tensors[f"{name}.ref_codes"] = ref_codes
            tensors[f"{name}.prefill_logits"] = logits[0]
            tensors[f"{name}.step1_logits"] = logits[1]
            tensors[f"{name}.codes"] = codes.to(torch.long).contiguous()
            meta["cases"].append(dict(name=name, mode=mode, language=language, non_streaming_mode=non_streaming,
                                      text=text_key, ref_text=ref_key, eos_allowed=eos_allowed,
                                      frames=int(codes.shape[0])))
            print(f"  {name}: {codes.shape[0]} frames", flush=True)
        meta["filters"] = _record_filters(model, gen, tensors)
    golden_dir = Path(golden_dir)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(golden_dir / "talker.safetensors"))
    (golden_dir / "talker.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
