"""Talker + code predictor benchmark: ms per generated frame (no codec), ours vs the official
implementation on the same random weights in the same run, at the released 0.6B-Base size;
plus the peak resident memory of loading a saved full-size checkpoint.

    /tmp/qwen-ref/bin/python -m engine.bench talker [--frames 24] [--threads 1] [--dtypes float32 bfloat16]

Both sides generate the same prompt (x-vector voice, English, streaming text) with the
released sampling settings and EOS suppressed, so they produce the same number of frames.
ms/frame is the steady decode rate: the median time between consecutive frames, best of
interleaved runs; "first frame" is the latency until frame 0 is complete (prompt + prefill + one
frame). It runs in the reference environment
(qwen-tts + transformers), which provides the official model and its random weights.
Targets (issue 2): ours bfloat16 <= 0.5 x official float32; ours float32 <= official float32;
loading peak RSS <= 1.3 x the checkpoint's safetensors size.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from engine.config import TTSConfig
from engine.generation import iter_frames
from engine.layers import pack_linears_for_cpu
from engine.loader import load_code_predictor, load_talker
from engine.prompt import PromptBuilder
from engine.sampling import SamplingParams

ROOT = Path(__file__).resolve().parents[2]
LANGUAGES = dict(english=2050, german=2053, spanish=2054, chinese=2055, japanese=2058, french=2061, korean=2064,
                 russian=2069, italian=2070, portuguese=2071)
DECODER = dict(hidden_size=1024, intermediate_size=3072, num_attention_heads=16, num_key_value_heads=8,
               head_dim=128, hidden_act="silu", rms_norm_eps=1e-6, rope_theta=1_000_000)
FULL_CONFIG = {  # Qwen3-TTS-12Hz-0.6B-Base
    "architectures": ["Qwen3TTSForConditionalGeneration"], "model_type": "qwen3_tts",
    "tokenizer_type": "qwen3_tts_tokenizer_12hz", "tts_model_size": "0b6", "tts_model_type": "base",
    "im_start_token_id": 151644, "im_end_token_id": 151645, "tts_pad_token_id": 151671,
    "tts_bos_token_id": 151672, "tts_eos_token_id": 151673,
    "speaker_encoder_config": {"enc_dim": 1024, "sample_rate": 24000},
    "talker_config": dict(
        DECODER, num_hidden_layers=28, vocab_size=3072, text_vocab_size=151936, text_hidden_size=2048,
        num_code_groups=16, max_position_embeddings=32768, codec_pad_id=2148, codec_bos_id=2149,
        codec_eos_token_id=2150, codec_think_id=2154, codec_nothink_id=2155, codec_think_bos_id=2156,
        codec_think_eos_id=2157, codec_language_id=LANGUAGES, spk_id={}, spk_is_dialect={},
        rope_scaling={"interleaved": True, "mrope_section": [24, 20, 20], "rope_type": "default"},
        code_predictor_config=dict(DECODER, num_hidden_layers=5, vocab_size=2048, num_code_groups=16,
                                   max_position_embeddings=65536, layer_types=["full_attention"] * 5)),
}
# released generation_config.json
SAMPLING = dict(do_sample=True, top_k=50, top_p=1.0, temperature=0.9, repetition_penalty=1.05,
                subtalker_dosample=True, subtalker_top_k=50, subtalker_top_p=1.0, subtalker_temperature=0.9)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine.bench talker", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=24, help="frames generated per measurement")
    p.add_argument("--text-tokens", type=int, default=40, help="length of the (random) text")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: on a shared CPU, multi-threaded ops stall whenever one "
                        "of their threads is descheduled, which swamps the comparison)")
    p.add_argument("--repeats", type=int, default=2, help="interleaved runs per side; the best is reported")
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"])
    p.add_argument("--official-bf16-frames", type=int, default=8,
                   help="frames for the official bfloat16 run (slow on CPU: its bf16 matmuls re-pack weights)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-load", action="store_true", help="skip the checkpoint-loading memory measurement")
    return p


class StateSource:
    """A TensorSource over an in-memory state dict (ours then shares the official storage)."""

    def __init__(self, state: dict):
        self.state, self.files = state, ["<official state_dict>"]

    def keys(self):
        return list(self.state)

    def shape(self, key):
        return tuple(self.state[key].shape)

    def get(self, key):
        return self.state[key]


def official_model(seed: int):
    """The official model with random weights, or None outside the reference environment."""
    sys.path.insert(0, str(ROOT.parent / "shared" / "reference"))
    try:
        from qwen_reference import official
    except ImportError:
        return None
    torch.manual_seed(seed)
    config = official.Qwen3TTSConfig(**FULL_CONFIG)
    config._attn_implementation = "sdpa"  # what from_pretrained picks by default
    config.talker_config._attn_implementation = "sdpa"
    config.talker_config.code_predictor_config._attn_implementation = "sdpa"
    return official.Qwen3TTSForConditionalGeneration(config).eval()


def prompt_ids(cfg: dict, n_text: int, seed: int) -> list[int]:
    """<|im_start|> assistant \\n <random text> <|im_end|> \\n <|im_start|> assistant \\n."""
    gen = torch.Generator().manual_seed(seed)
    text = torch.randint(0, 151643, (n_text,), generator=gen).tolist()
    start, end, assistant, newline = cfg["im_start_token_id"], cfg["im_end_token_id"], 77091, 198
    return [start, assistant, newline] + text + [end, newline, start, assistant, newline]


def time_ours(cfg: TTSConfig, talker, predictor, ids, xvector, frames: int) -> tuple[float, float]:
    builder = PromptBuilder(cfg, talker, predictor)
    dtype = talker.codec_embedding.weight.dtype
    params = SamplingParams(**{("subtalker_do_sample" if k == "subtalker_dosample" else k): v
                               for k, v in SAMPLING.items()}, max_new_tokens=frames,
                            min_new_tokens=frames, seed=0)
    start = time.perf_counter()
    with torch.inference_mode():
        prompt = builder.build(ids, LANGUAGES["english"], xvector=xvector.to(dtype))
        stamps = [time.perf_counter() for _ in iter_frames(talker, predictor, prompt, params, cfg.talker.codec_eos_id)]
    return per_frame(stamps), 1000 * (stamps[0] - start)


def per_frame(stamps: list[float]) -> float:
    """Median ms between consecutive frames (robust to the other jobs of a shared CPU)."""
    gaps = sorted(b - a for a, b in zip(stamps, stamps[1:]))
    return 1000 * gaps[len(gaps) // 2]


def time_official(model, ids, xvector, frames: int) -> tuple[float, float]:
    stamps = []
    hook = model.talker.codec_head.register_forward_hook(lambda *_: stamps.append(time.perf_counter()))
    talker_cfg = model.config.talker_config
    real_eos = talker_cfg.codec_eos_token_id
    talker_cfg.codec_eos_token_id = talker_cfg.vocab_size + 1000  # EOS suppressed, as for ours
    prompt = dict(ref_code=[None], ref_spk_embedding=[xvector.to(model.dtype)], x_vector_only_mode=[True],
                  icl_mode=[False])
    start = time.perf_counter()
    try:
        with torch.inference_mode():
            model.generate(input_ids=[torch.tensor([ids])], voice_clone_prompt=prompt, languages=["english"],
                           non_streaming_mode=False, max_new_tokens=frames, **SAMPLING)
    finally:
        talker_cfg.codec_eos_token_id = real_eos
        hook.remove()
    # stamp i: codec logits of step i; step i >= 1 first runs the predictor of frame i - 1, so
    # frame 0 is complete at stamp 1 (ours yields a frame once it is complete)
    return per_frame(stamps), 1000 * (stamps[1] - start)


def ours_from(state: dict, cfg: TTSConfig, dtype):
    """Our talker + predictor on the official weights, prepared as load_model prepares them."""
    source = StateSource(state)
    talker = load_talker(source, cfg.talker, device="cpu", dtype=dtype)
    predictor = load_code_predictor(source, cfg.code_predictor, device="cpu", dtype=dtype)
    if dtype == torch.bfloat16:
        pack_linears_for_cpu(talker)
        pack_linears_for_cpu(predictor)
    return talker, predictor


def measure_load(state: dict, dtype) -> str:
    """Save a full-size checkpoint (talker + predictor + speaker encoder) and load it in a fresh
    process; returns a line with the file size, peak RSS and their ratio."""
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "config.json").write_text(json.dumps(FULL_CONFIG))
        save_file({k: v.to(dtype).contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
        size = (folder / "model.safetensors").stat().st_size
        script = ("import sys, torch\n"
                  "from engine.model import load_config, load_talker_parts\n"
                  "def hwm():  # peak RSS of this process (VmHWM: reset at exec, unlike ru_maxrss)\n"
                  "    for line in open('/proc/self/status'):\n"
                  "        if line.startswith('VmHWM:'):\n"
                  "            return int(line.split()[1]) * 1024\n"
                  "base = hwm()\n"
                  f"cfg = load_config(sys.argv[1]); parts = load_talker_parts(sys.argv[1], cfg, device='cpu', "
                  f"dtype=torch.{dtype_name(dtype)})\n"
                  "print(base, hwm())\n")
        out = subprocess.run([sys.executable, "-c", script, str(folder)], cwd=ROOT, capture_output=True, text=True)
        if out.returncode:
            return f"load measurement failed: {out.stderr[-2000:]}"
        base, peak = map(int, out.stdout.split()[-2:])
    gib = 1024 ** 3
    return (f"loading a saved {dtype_name(dtype)} checkpoint: safetensors {size / gib:.2f} GiB, peak RSS "
            f"{peak / gib:.2f} GiB (of which {base / gib:.2f} GiB python + torch before loading) -> "
            f"{peak / size:.2f} x the file size (target <= 1.3)")


def dtype_name(dtype) -> str:
    return str(dtype).replace("torch.", "")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # random weights must not time subnormal arithmetic
    cfg = TTSConfig.from_hf(FULL_CONFIG)
    official = official_model(args.seed)
    if official is None:
        raise SystemExit("the official implementation is not importable: run under /tmp/qwen-ref/bin/python")
    state = dict(official.state_dict())
    ids = prompt_ids(FULL_CONFIG, args.text_tokens, args.seed)
    xvector = torch.randn(cfg.talker.decoder.hidden_size, generator=torch.Generator().manual_seed(args.seed))
    print(f"talker + code predictor, 0.6B-Base size, CPU, torch {torch.__version__}, threads "
          f"{torch.get_num_threads()}, {args.frames} frames x {args.repeats} interleaved runs (best run's median "
          f"frame time), {len(ids)} prompt text ids, sampling as released, EOS suppressed")
    if not args.no_load:
        print(measure_load(state, torch.bfloat16), flush=True)
    rows = []
    for name in args.dtypes:
        dtype = getattr(torch, name)
        talker, predictor = ours_from(state, cfg, dtype)
        model = official if dtype == torch.float32 else official.to(dtype)
        ref_frames = args.frames if dtype == torch.float32 else args.official_bf16_frames
        time_ours(cfg, talker, predictor, ids, xvector, 4)  # warm-up
        time_official(model, ids, xvector, 3)
        ours, ref = [], []
        for _ in range(args.repeats):
            ours.append(time_ours(cfg, talker, predictor, ids, xvector, args.frames))
            ref.append(time_official(model, ids, xvector, ref_frames))
        del talker, predictor
        rows.append((name, min(ours), min(ref)))
        print(f"  {name}: ours {rows[-1][1][0]:.1f} ms/frame (first frame {rows[-1][1][1]:.0f} ms), official "
              f"{rows[-1][2][0]:.1f} ms/frame (first frame {rows[-1][2][1]:.0f} ms); runs: ours "
              f"{[round(o[0]) for o in ours]}, official {[round(r[0]) for r in ref]}", flush=True)
    official_fp32 = next((r[2][0] for r in rows if r[0] == "float32"), None)
    print("| dtype | ours ms/frame | official ms/frame | ours / official same dtype | ours / official float32 |")
    print("|---|---:|---:|---:|---:|")
    for name, ours, ref in rows:
        vs32 = f"{ours[0] / official_fp32:.2f}" if official_fp32 else "-"
        print(f"| {name} | {ours[0]:.1f} | {ref[0]:.1f} | {ours[0] / ref[0]:.2f} | {vs32} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
