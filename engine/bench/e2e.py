"""End-to-end streaming benchmark: text in, first audio out, at the released 0.6B-Base size.

    /tmp/qwen-ref/bin/python -m engine.bench e2e [--seconds 10] [--streams 1 2 4] [--dtypes float32 bfloat16]

Ours: `stream()` through the device worker (x-vector voice, English, the released sampling
settings, frame count forced by banning EOS, length guard off), first chunk after 1 frame,
then every 4; 1, 2 and 4 sessions submitted at once and served round-robin. Reported per
concurrency: time to first audio (submission -> first chunk; mean and worst over the
streams), real-time factor per stream (compute time / audio seconds) and ms per frame
(per stream, and the worker's aggregate: wall time / all frames).

Official: `Qwen3TTSForConditionalGeneration.generate` for the same prompt ids and frame count,
then the official speech-tokenizer decoder (`chunked_decode`): the time to the full audio,
which is when the official implementation can play its first sample.

Both sides hold the same random weights (the official random init, mapped through our
loader's key maps). Outside the reference environment (no qwen-tts) ours runs alone, with
random weights. Target (issue 4): ours time to first audio <= 5% of the official time to
full audio for 10 s of audio.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from engine.bench import codec as codec_bench
from engine.bench import talker as talker_bench
from engine.codec_config import CodecDecoderConfig
from engine.config import TTSConfig
from engine.model import TTSModel
from engine.sampling import SamplingParams
from engine.text_tokenizer import TextTokenizer
from engine.voice_prompt import VoicePrompt
from engine.worker import EngineWorker

TEXT = ("The morning train was late again, so Anna walked along the river instead, watching the fog "
        "lift slowly from the water while the city woke up around her.")  # about 10 s of speech
FRAME_RATE = 12.5


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine.bench e2e", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0, help="audio per stream (frames forced)")
    p.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4], help="concurrent sessions")
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"],
                   help="our dtypes (the official side runs float32)")
    p.add_argument("--compare-streams", type=int, nargs="+", default=None,
                   help="concurrency for the dtypes after the first (default: --streams)")
    p.add_argument("--chunk-frames", type=int, default=4)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-official", action="store_true", help="skip the official implementation")
    return p


def build_official(seed: int):
    """(official model, official codec decoder), random init; (None, None) outside the
    reference environment."""
    official = talker_bench.official_model(seed)
    if official is None:
        return None, None
    return official, codec_bench._official(CodecDecoderConfig(), seed)


def build_ours(official, official_decoder, dtype: torch.dtype, seed: int) -> TTSModel:
    """Our TTSModel holding the official weights (random weights without them), as
    load_model prepares it (bfloat16 linears packed for CPU)."""
    cfg = TTSConfig.from_hf(talker_bench.FULL_CONFIG)
    if official is not None:
        talker, predictor = talker_bench.ours_from(official.state_dict(), cfg, dtype)
        decoder = codec_bench._ours_from(official_decoder, CodecDecoderConfig())
    else:
        from engine.code_predictor import CodePredictor
        from engine.talker import Talker

        torch.manual_seed(seed)
        talker, predictor = Talker(cfg.talker).eval().to(dtype), CodePredictor(cfg.code_predictor).eval().to(dtype)
        decoder = codec_bench._random_ours(CodecDecoderConfig(), seed)
    model = TTSModel(config=cfg, tokenizer=_tokenizer(), talker=talker, predictor=predictor, model_id="bench")
    model.codec_decoder = decoder.to(dtype)
    return model


def _tokenizer() -> TextTokenizer:
    """A small real BPE vocabulary (engine/tiny.py): random weights make any ids equivalent."""
    from engine.tiny import write_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        write_tokenizer(Path(tmp))
        return TextTokenizer.from_dir(Path(tmp))


def sampling(frames: int, seed: int) -> SamplingParams:
    released = {("subtalker_do_sample" if k == "subtalker_dosample" else k): v
                for k, v in talker_bench.SAMPLING.items()}
    return SamplingParams(**released, min_new_tokens=frames, max_new_tokens=frames, seed=seed)


def speak_at_once(model, requests: list[dict]) -> tuple[list, float]:
    """One worker, one session per request (`Session.speak` keyword arguments), all submitted
    before the worker starts (max_active = their number): (the handles, done, and the wall
    time from the start until the last one ended)."""
    worker = EngineWorker(model, device=model.device, dtype=model.dtype, max_active=len(requests),
                          max_waiting=max(32, len(requests)))
    handles = [worker.session(f"stream-{i}").speak(TEXT, **kwargs) for i, kwargs in enumerate(requests)]
    start = time.perf_counter()
    with worker:
        for h in handles:
            h.result()
    return handles, time.perf_counter() - start


def run_ours(model, voice, streams: int, frames: int, chunk_frames: int, seed: int) -> dict:
    """`streams` sessions submitted at once to one worker; their metrics and the wall time."""
    kwargs = dict(voice=voice, language="english", chunk_frames=chunk_frames, first_chunk_frames=1,
                  split=False, length_guard=False)
    handles, wall = speak_at_once(model, [dict(kwargs, sampling=sampling(frames, seed + i)) for i in range(streams)])
    metrics = [h.metrics for h in handles]
    assert all(m.frames == frames for m in metrics), [m.frames for m in metrics]
    return dict(streams=streams, wall=wall, metrics=metrics,
                ttfa=[m.time_to_first_audio_s for m in metrics], rtf=[m.rtf for m in metrics],
                ms_frame=[m.ms_per_frame for m in metrics], aggregate=1000 * wall / (streams * frames))


@torch.inference_mode()
def run_official(official, decoder, ids: list[int], xvector: torch.Tensor, frames: int) -> tuple[float, int]:
    """Seconds from the call to the decoded waveform of `frames` frames, and the frames made."""
    talker_cfg = official.config.talker_config
    real_eos = talker_cfg.codec_eos_token_id
    talker_cfg.codec_eos_token_id = talker_cfg.vocab_size + 1000  # EOS banned, as for ours
    prompt = dict(ref_code=[None], ref_spk_embedding=[xvector], x_vector_only_mode=[True], icl_mode=[False])
    start = time.perf_counter()
    try:
        # the official generate returns max_new_tokens - 1 frames when it hits the limit
        codes, _ = official.generate(input_ids=[torch.tensor([ids])], voice_clone_prompt=prompt,
                                     languages=["english"], non_streaming_mode=False,
                                     max_new_tokens=frames + 1, **talker_bench.SAMPLING)
        wav = decoder.chunked_decode(codes[0].transpose(0, 1)[None])
    finally:
        talker_cfg.codec_eos_token_id = real_eos
    elapsed = time.perf_counter() - start
    assert wav.shape[-1] == codes[0].shape[0] * 1920
    return elapsed, codes[0].shape[0]


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # random weights must not time subnormal arithmetic
    frames = round(args.seconds * FRAME_RATE)
    official, official_decoder = (None, None) if args.no_official else build_official(args.seed)
    print(f"end-to-end, 0.6B-Base size (random weights), CPU, torch {torch.__version__}, threads "
          f"{torch.get_num_threads()}, {frames} frames = {frames / FRAME_RATE:.1f} s per stream, x-vector voice, "
          f"chunks: first after 1 frame, then every {args.chunk_frames}", flush=True)
    rows = []
    for name in args.dtypes:
        model = build_ours(official, official_decoder, getattr(torch, name), args.seed)
        xvector = torch.randn(model.config.talker.decoder.hidden_size, generator=torch.Generator().manual_seed(args.seed))
        voice = VoicePrompt(xvector=xvector, ref_codes=None, ref_text=None, mode="xvector", model_id="bench")
        run_ours(model, voice, 1, 3, args.chunk_frames, args.seed)  # warm-up
        for n in args.streams if name == args.dtypes[0] else (args.compare_streams or args.streams):
            row = dict(run_ours(model, voice, n, frames, args.chunk_frames, args.seed), dtype=name)
            rows.append(row)
            print(f"  ours {name}, {n} stream(s): first audio {1000 * statistics.mean(row['ttfa']):.0f} ms (worst "
                  f"{1000 * max(row['ttfa']):.0f}), RTF {statistics.mean(row['rtf']):.2f}, "
                  f"{statistics.mean(row['ms_frame']):.1f} ms/frame per stream, {row['aggregate']:.1f} ms/frame "
                  f"aggregate, wall {row['wall']:.1f} s", flush=True)
        ids = model.tokenizer.assistant_ids(TEXT)
        del model
    official_s = None
    if official is not None:
        run_official(official, official_decoder, ids, xvector, 3)  # warm-up
        official_s, made = run_official(official, official_decoder, ids, xvector, frames)
        print(f"  official float32: full audio of {made} frames after {official_s:.2f} s "
              f"({1000 * official_s / made:.1f} ms/frame, RTF {official_s / (made / FRAME_RATE):.2f})", flush=True)
    print("\n| ours dtype | streams | first audio mean / worst (ms) | RTF per stream | ms/frame per stream "
          "| ms/frame aggregate | first audio / official full audio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        ratio = f"{100 * statistics.mean(row['ttfa']) / official_s:.1f}%" if official_s else "-"
        print(f"| {row['dtype']} | {row['streams']} | {1000 * statistics.mean(row['ttfa']):.0f} / "
              f"{1000 * max(row['ttfa']):.0f} | {statistics.mean(row['rtf']):.2f} | "
              f"{statistics.mean(row['ms_frame']):.1f} | {row['aggregate']:.1f} | {ratio} |")
    if official_s:
        print(f"\nofficial (float32) time to full audio for {frames / FRAME_RATE:.0f} s of audio: {official_s:.2f} s; "
              f"target: ours first audio <= 5% of it = {50 * official_s:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
