"""Concurrent streams: the batched worker against round-robin of batch-1 steps, one run.

    python -m engine.bench batch [--frames 24] [--streams 1 2 4 8] [--dtype bfloat16]

Full-size random 0.6B-Base (the released config), on this machine, through the worker as the
app uses it (x-vector voice, EOS banned so every stream makes `--frames` frames, first chunk
after 1 frame then every 4):
- after: `Session.speak`: every live stream is a row of one batched step per frame;
- before: the previous design, each request a private one-slot engine stepped in turn
  (`Session.submit` of `engine.streaming.stream_steps`), i.e. round-robin of batch-1 steps.
Reported per concurrency: aggregate frames/s, per-stream real-time factor, first audio.
Then: a request that joins a running batch of 3, against the same request on an idle worker;
and an ICL voice (8.7 s reference and its transcript): first audio on its first and second use.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from engine.bench.e2e import TEXT, build_ours, sampling
from engine.layers import cpu_bf16_packing_available, pack_linears_for_cpu
from engine.streaming import plan_request, stream_steps
from engine.voice_prompt import VoicePrompt
from engine.worker import EngineWorker

FRAME_RATE = 12.5


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine.bench batch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=24, help="frames per stream")
    p.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    p.add_argument("--seed", type=int, default=0)
    return p


def run(worker, requests: list[dict], batched: bool) -> tuple[list, float]:
    """Submit every request to its own session, wait for all: (handles, wall seconds)."""
    start = time.perf_counter()
    handles = []
    for i, kw in enumerate(requests):
        session = worker.session(f"s{i}")
        if batched:
            handles.append(session.speak(TEXT, **kw))
        else:
            plan = plan_request(TEXT, **kw)
            handles.append(session.submit(lambda cancel, metrics, plan=plan: stream_steps(
                worker.model, plan, cancel=cancel, metrics=metrics)))
    for h in handles:
        h.result()
    return handles, time.perf_counter() - start


def summary(handles, wall: float, frames: int) -> dict:
    m = [h.metrics for h in handles]
    return dict(fps=len(m) * frames / wall, rtf=statistics.mean(x.rtf for x in m),
                ttfa=statistics.mean(x.time_to_first_audio_s for x in m),
                ttfa_max=max(x.time_to_first_audio_s for x in m))


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    dtype = getattr(torch, args.dtype)
    model = build_ours(None, None, dtype, args.seed)
    if dtype == torch.bfloat16 and cpu_bf16_packing_available():
        pack_linears_for_cpu(model.talker)
        pack_linears_for_cpu(model.predictor)
    width = model.config.talker.decoder.hidden_size
    xvector = VoicePrompt(xvector=torch.randn(width).to(dtype) * 0.05, ref_codes=None, ref_text=None,
                          mode="xvector", model_id="bench")
    kw = lambda i, frames=args.frames: dict(voice=xvector, language="english", split=False,  # noqa: E731
                                            length_guard=False, sampling=sampling(frames, args.seed + i))
    top = max(args.streams)
    print(f"# batch benchmark: random 0.6B-Base, {args.dtype}, {torch.get_num_threads()} threads, "
          f"{args.frames} frames per stream")
    print("| streams | before: agg frames/s | after: agg frames/s | speed-up | after / 1 stream | "
          "RTF per stream before / after | first audio before / after (mean, max) |")
    print("|---|---|---|---|---|---|---|")
    with EngineWorker(model, device="cpu", max_active=top, max_waiting=64, capacity=512) as worker:
        run(worker, [kw(0, 2)], True)  # warm-up: kernels, the pool
        base = None
        for n in args.streams:
            before = summary(*run(worker, [kw(i) for i in range(n)], False), args.frames)
            after = summary(*run(worker, [kw(i) for i in range(n)], True), args.frames)
            base = base or after["fps"]
            print(f"| {n} | {before['fps']:.2f} | {after['fps']:.2f} | {after['fps'] / before['fps']:.2f}x | "
                  f"{after['fps'] / base:.2f}x | {before['rtf']:.2f} / {after['rtf']:.2f} | "
                  f"{before['ttfa']:.2f}, {before['ttfa_max']:.2f} s / {after['ttfa']:.2f}, {after['ttfa_max']:.2f} s |")

        # joining a running batch vs an idle worker
        idle = worker.session("idle").speak(TEXT, **kw(50, 8))
        idle.result()
        running = [worker.session(f"r{i}").speak(TEXT, **kw(60 + i, 60)) for i in range(3)]
        while not all(h.metrics.time_to_first_audio_s for h in running):
            time.sleep(0.01)
        joiner = worker.session("join").speak(TEXT, **kw(50, 8))
        joiner.result()
        for h in running:
            h.cancel()
        t_idle, t_join = idle.metrics.time_to_first_audio_s, joiner.metrics.time_to_first_audio_s
        print(f"\njoin a running batch of 3: first audio {t_join:.3f} s vs idle {t_idle:.3f} s "
              f"({t_join / t_idle:.2f}x; target <= 1.5x)")

        # ICL: 8.7 s reference (109 frames) and its transcript
        gen = torch.Generator().manual_seed(args.seed)
        ref_codes = torch.randint(0, model.config.code_predictor.vocab_size, (109, 16), generator=gen)
        icl = VoicePrompt(xvector=xvector.xvector, ref_codes=ref_codes, mode="icl", model_id="bench",
                          ref_text="The reference clip says this sentence, which takes almost nine seconds "
                                   "when it is read at an easy pace by the speaker.")
        times = []
        for i in range(2):
            h = worker.session(f"icl{i}").speak(TEXT, **dict(kw(70 + i, 4), voice=icl))
            h.result()
            times.append(h.metrics.time_to_first_audio_s)
        print(f"ICL voice, first audio: first use {times[0]:.3f} s, second use {times[1]:.3f} s (target <= 1.0 s)")
    return 0
