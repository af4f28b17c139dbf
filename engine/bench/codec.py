"""Codec decoder benchmark: ms of decoder compute per emitted frame (80 ms of audio).

Ours: the exact streaming decoder (each push decodes only its frames). Official: the
`chunked_decode` scheme with a 25-frame left context (each chunk re-decodes 25 past frames),
timed on the official decoder with the same random weights at the released size
(Qwen3-TTS-Tokenizer-12Hz: hidden 512, 8 layers, window 72, latent 1024, decoder_dim 1536).

    /tmp/qwen-ref/bin/python -m engine.bench codec [--chunks 1 4 8] [--frames 16] [--device cpu]

The official side needs the reference environment (tools/parity/tiny_codec.official_decoder);
elsewhere the same windowing scheme is timed on our own decoder instead ("window" column), so
the comparison still runs. The official import happens only here, never in the engine.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from engine.codec_config import CodecDecoderConfig
from engine.codec_decoder import CodecDecoder, StreamingDecoder

CONTEXT = 25  # frames of left context the official scheme re-decodes per chunk
TARGETS = {1: 0.1, 4: 0.3}  # ours / official per emitted frame (issue 3)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine.bench codec", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chunks", type=int, nargs="+", default=[1, 4, 8], help="frames per chunk")
    p.add_argument("--frames", type=int, default=16, help="frames emitted per measurement")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=3, help="measurements per cell; the fastest is kept "
                   "(the least disturbed by other processes)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-official", action="store_true", help="skip the official decoder")
    return p


def _official(cfg: CodecDecoderConfig, seed: int):
    """The official decoder (random init) or None outside the reference environment."""
    root = Path(__file__).resolve().parents[2]
    for path in (str(root), str(root.parent / "shared" / "reference")):
        if path not in sys.path:
            sys.path.insert(0, path)
    try:
        from tools.parity.tiny_codec import official_decoder
    except ImportError:
        return None
    official = official_decoder(_hf_decoder_config(cfg), seed)
    _unsaturate(official)
    return official


@torch.no_grad()
def _unsaturate(official) -> None:
    """Scale the random decoder's last conv so its output is not clamped flat at +-1: timing is
    the same either way, but the ours-vs-official check is only meaningful on a live signal."""
    last, seen = official.decoder[-1].conv, []
    hook = last.register_forward_hook(lambda m, args, out: seen.append(out))
    official(torch.randint(0, official.config.codebook_size, (1, official.config.num_quantizers, 8)))
    hook.remove()
    scale = 0.25 / float(seen[0].std())
    last.weight.mul_(scale)
    last.bias.mul_(scale)


def _hf_decoder_config(cfg: CodecDecoderConfig) -> dict:
    keep = ("codebook_size", "codebook_dim", "num_quantizers", "latent_dim", "hidden_size", "num_attention_heads",
            "num_key_value_heads", "head_dim", "intermediate_size", "num_hidden_layers", "sliding_window",
            "rope_theta", "rms_norm_eps", "layer_scale_initial_scale", "hidden_act", "attention_bias",
            "upsampling_ratios", "upsample_rates", "decoder_dim", "max_position_embeddings")
    return {k: getattr(cfg, k) for k in keep}


def _ours_from(official, cfg: CodecDecoderConfig) -> CodecDecoder:
    """Our decoder holding the official decoder's weights (through the checkpoint key map)."""
    from engine.loader import _codec_decoder_unused, codec_decoder_key_map

    key_map = codec_decoder_key_map(cfg)
    state = {key_map("decoder." + k): v for k, v in official.state_dict().items()
             if not _codec_decoder_unused("decoder." + k)}
    ours = CodecDecoder(cfg)
    ours.load_state_dict(state, strict=True)
    _refresh(ours)
    return ours.eval()


def _random_ours(cfg: CodecDecoderConfig, seed: int) -> CodecDecoder:
    torch.manual_seed(seed)
    ours = CodecDecoder(cfg).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(0.02 * torch.randn_like(p))
    _refresh(ours)
    return ours


def _refresh(model) -> None:
    for m in model.modules():
        if hasattr(m, "init_buffers"):
            m.init_buffers(None)


def _timed(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t


def time_ours(decoder: CodecDecoder, codes: torch.Tensor, chunk: int, frames: int, repeats: int) -> float:
    """ms per emitted frame: prime with the context, then push `frames` frames in chunks."""
    dev, best = codes.device, float("inf")
    stream = StreamingDecoder(decoder)
    stream.prime(codes[:CONTEXT])
    stream.push(codes[CONTEXT:CONTEXT + chunk])  # warm-up (allocator, oneDNN primitives)
    for _ in range(repeats):
        stream.reset()
        stream.prime(codes[:CONTEXT])
        best = min(best, sum(_timed(lambda s=s: stream.push(codes[s:s + chunk]), dev)
                             for s in range(CONTEXT, CONTEXT + frames, chunk)))
    return 1000 * best / frames


@torch.inference_mode()
def time_windows(forward, codes: torch.Tensor, chunk: int, frames: int, repeats: int) -> float:
    """ms per emitted frame of the chunked_decode scheme: each chunk decodes CONTEXT + chunk frames."""
    dev, best = codes.device, float("inf")
    forward(codes[:CONTEXT + chunk])  # warm-up
    for _ in range(repeats):
        best = min(best, sum(_timed(lambda s=s: forward(codes[s - CONTEXT:s + chunk]), dev)
                             for s in range(CONTEXT, CONTEXT + frames, chunk)))
    return 1000 * best / frames


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # random weights must not time subnormal arithmetic
    device = torch.device(args.device)
    cfg = CodecDecoderConfig()  # the released decoder
    official = None if args.no_official else _official(cfg, args.seed)
    ours = (_ours_from(official, cfg) if official is not None else _random_ours(cfg, args.seed)).to(device)
    gen = torch.Generator().manual_seed(args.seed)
    n = CONTEXT + args.frames + 2 * max(args.chunks)
    codes = torch.randint(0, cfg.codebook_size, (n, cfg.num_quantizers), generator=gen).to(device)

    print(f"codec decoder, released size, {device}, torch threads {torch.get_num_threads()}, "
          f"{args.frames} frames per measurement, left context {CONTEXT}")
    if official is not None:
        official = official.to(device)
        with torch.inference_mode():
            want = official(codes[:40].T[None])[0, 0].float()
            diff = (ours.decode(codes[:40]) - want).abs().max().item()
        print(f"same weights check: max |ours - official| over 40 frames = {diff:.2e} "
              f"(output std {want.std():.3f}, {(want.abs() >= 1).float().mean():.1%} clipped)")
        forward = lambda c: official(c.T[None])  # noqa: E731  official layout [B, K, T]
        name = "official"
    else:
        forward = lambda c: ours(c[None])  # noqa: E731
        name = "window(ours)"
    print(f"| chunk | ours streaming ms/frame | {name} chunked_decode ms/frame | ratio | target |")
    print("|---:|---:|---:|---:|---:|")
    for chunk in args.chunks:
        frames = -(-args.frames // chunk) * chunk  # whole chunks only
        t_ours = time_ours(ours, codes, chunk, frames, args.repeats)
        t_ref = time_windows(forward, codes, chunk, frames, args.repeats)
        target = f"<= {TARGETS[chunk]}" if chunk in TARGETS else "-"
        print(f"| {chunk} | {t_ours:.1f} | {t_ref:.1f} | {t_ours / t_ref:.3f} | {target} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
