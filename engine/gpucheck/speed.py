"""Speed at batch 1: ms per generated frame, time to first audio, RTF, codec ms per frame and
peak GPU memory, per dtype, on a model of the released 0.6B-Base size with random weights
(engine/bench: the released config, our random init), or on the tiny fixture with --quick.

Every run speaks the same English text with an x-vector voice and the released sampling
settings, its frame count forced (EOS banned, length guard off), so all runs do equal work.
ms/frame is the median time between frames of `model.iter_codes` (generation only, no
codec); first audio and RTF come from `model.stream` (first chunk after one frame, then
every 4); codec ms/frame is the streaming decoder's time per emitted frame, primed with 25
frames, by chunk size.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from engine.bench import codec as codec_bench
from engine.bench import e2e
from engine.bench.talker import per_frame

CUDA_GRAPHS = ("on CUDA each dtype runs twice: the decode step replayed as a CUDA graph per bucket "
               "(graphs on) and eagerly (TTS_CUDA_GRAPHS=0); on CPU the step is always eager")
REAL_CONFIG = Path(__file__).resolve().parents[2].parent / "shared" / "real-checkpoint" / "Qwen3-TTS-12Hz-0.6B-Base"


def build(device: torch.device, dtype: torch.dtype, quick: bool, fixtures: Path, seed: int = 0):
    """(model, description): the tiny fixture (quick) or the 0.6B-Base size, random weights,
    made directly on the device (no full-size copy on the host)."""
    if quick:
        from engine import load_model

        return load_model(fixtures / "tiny_a", device=device, dtype=dtype), "tiny fixture tiny_a (quick)"
    with torch.device(device):
        model = e2e.build_ours(None, None, dtype, seed)
    if device.type == "cpu" and dtype == torch.bfloat16:  # as load_model prepares a CPU bf16 model
        from engine.layers import pack_linears_for_cpu

        pack_linears_for_cpu(model.talker)
        pack_linears_for_cpu(model.predictor)
    return model, f"released 0.6B-Base size, random weights ({_config_note()})"


def _config_note() -> str:
    import json

    from engine.bench.talker import FULL_CONFIG
    from engine.config import TTSConfig

    path = REAL_CONFIG / "config.json"
    if not path.is_file():
        return "config: engine/bench/talker.FULL_CONFIG"
    same = TTSConfig.from_hf(json.loads(path.read_text())) == TTSConfig.from_hf(FULL_CONFIG)
    return f"config: engine/bench/talker.FULL_CONFIG, {'equal to' if same else 'DIFFERS from'} the released config.json"


def voice_for(model, seed: int = 0):
    from engine.voice_prompt import VoicePrompt

    width = model.config.talker.decoder.hidden_size
    xvector = torch.randn(width, generator=torch.Generator().manual_seed(seed))
    return VoicePrompt(xvector=xvector, ref_codes=None, ref_text=None, mode="xvector", model_id=model.model_id)


def speech_options(model, frames: int, seed: int) -> dict:
    """The keyword arguments of `stream` / `Session.speak` for one forced-length request."""
    return dict(voice=voice_for(model), language="english", sampling=e2e.sampling(frames, seed), split=False,
                length_guard=False, chunk_frames=4, first_chunk_frames=1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(model, frames: int, codec_frames: int, repeats: int, seed: int = 0) -> dict:
    device = model.device
    options = speech_options(model, frames, seed)
    warm = speech_options(model, 3, seed)
    list(model.stream(e2e.TEXT, **warm))  # allocator, kernels, oneDNN primitives
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    generation = {k: options[k] for k in ("voice", "language", "sampling")}
    _sync(device)
    start = time.perf_counter()
    stamps = [time.perf_counter() for _ in model.iter_codes(e2e.TEXT, **generation)]
    stream = model.stream(e2e.TEXT, **options)
    for _ in stream:
        pass
    _sync(device)
    metrics = stream.metrics
    groups = model.config.talker.num_code_groups
    codes = torch.randint(0, model.codec_decoder.config.codebook_size, (codec_bench.CONTEXT + codec_frames, groups),
                          generator=torch.Generator().manual_seed(seed)).to(device)
    with torch.inference_mode():
        codec = {chunk: codec_bench.time_ours(model.codec_decoder, codes, chunk, codec_frames, repeats)
                 for chunk in (1, 4)}
    weights = sum(t.numel() * t.element_size() for part in (model.talker, model.predictor, model.codec_decoder)
                  for t in [*part.parameters(), *part.buffers()] if t is not None)
    return {"dtype": str(model.dtype).removeprefix("torch."), "frames": len(stamps),
            "ms_per_frame": per_frame(stamps), "first_frame_ms": 1000 * (stamps[0] - start),
            "first_audio_ms": 1000 * metrics.time_to_first_audio_s, "rtf": metrics.rtf,
            "stream_ms_per_frame": metrics.ms_per_frame, "codec_ms_per_frame": codec,
            "weights_gib": weights / 2**30,
            "peak_gpu_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None}


def run(device: torch.device, dtypes: list[torch.dtype], quick: bool, fixtures: Path, frames: int) -> dict:
    runs, description = [], None
    for dtype in dtypes:
        model, description = build(device, dtype, quick, fixtures)
        for graphs in ((True, False) if device.type == "cuda" else (False,)):
            previous = os.environ.get("TTS_CUDA_GRAPHS")
            os.environ["TTS_CUDA_GRAPHS"] = "1" if graphs else "0"  # read by each new StepRunner
            try:
                result = measure(model, frames, codec_frames=4 if quick else 16, repeats=1 if quick else 3)
            finally:
                if previous is None:
                    os.environ.pop("TTS_CUDA_GRAPHS")
                else:
                    os.environ["TTS_CUDA_GRAPHS"] = previous
            result["dtype"] += " (graphs)" if graphs else ""
            runs.append(result)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {"status": "ok", "model": description, "runs": runs, "cuda_graphs": CUDA_GRAPHS}
