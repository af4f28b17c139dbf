"""Command line: speak a text, make a tiny offline checkpoint, run the benchmarks.

    python -m engine say "Hello there." --ref-audio clip.wav --ref-text "what the clip says" -o out.wav
    python -m engine say "Hello there." --ref-audio clip.wav --xvec --language en -o out.wav
    python -m engine make-tiny /tmp/tiny-tts          # a tiny random checkpoint (official layout)
    python -m engine bench {talker,codec,e2e} ...      # see `python -m engine bench -h`

`say` streams: a progress bar follows the generated audio, and the request's metrics (time
to first audio, real-time factor, frames, stop reason) are printed at the end.
"""
from __future__ import annotations

import argparse
import struct
import sys
import time
import wave
from pathlib import Path

import numpy as np

_WAVE_PCM, _WAVE_FLOAT, _WAVE_EXTENSIBLE = 1, 3, 0xFFFE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    say = sub.add_parser("say", help="synthesize text in the voice of a reference clip")
    say.add_argument("text", help="text to speak (use - to read it from stdin)")
    say.add_argument("--ref-audio", required=True, type=Path, help="reference clip (WAV)")
    mode = say.add_mutually_exclusive_group(required=True)
    mode.add_argument("--ref-text", help="transcript of the reference clip (ICL voice cloning)")
    mode.add_argument("--xvec", action="store_true", help="use the speaker embedding only (no transcript)")
    say.add_argument("--language", default="auto", help="language name or ISO code, or auto (default)")
    say.add_argument("--model", default=None, help="Hub id or local checkpoint (default: $TTS_MODEL_ID "
                     "or Qwen/Qwen3-TTS-12Hz-0.6B-Base)")
    say.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: $TTS_DEVICE or auto)")
    say.add_argument("--dtype", default=None, help="float32, bfloat16, float16 (default: $TTS_DTYPE or auto)")
    say.add_argument("--seed", type=int, default=None, help="sampling seed (reproducible output)")
    say.add_argument("--max-new-tokens", type=int, default=None, help="most frames per segment")
    say.add_argument("--chunk-frames", type=int, default=4, help="frames per streamed chunk (12.5 per second)")
    say.add_argument("-o", "--output", required=True, type=Path, help="output WAV file (16-bit, 24 kHz)")
    say.add_argument("--quiet", action="store_true", help="no progress bar")

    tiny = sub.add_parser("make-tiny", help="write a tiny random checkpoint in the official layout")
    tiny.add_argument("dir", type=Path, help="output directory (created)")
    tiny.add_argument("--seed", type=int, default=0)

    sub.add_parser("bench", help="benchmarks (talker, codec, e2e); arguments follow", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":  # the bench package has its own parser
        from engine.bench.__main__ import main as bench_main

        return bench_main(argv[1:])
    args = build_parser().parse_args(argv)
    from engine.errors import EngineError

    try:
        if args.command == "say":
            return cmd_say(args)
        if args.command == "make-tiny":
            from engine.tiny import make_tiny

            path = make_tiny(args.dir, seed=args.seed)
            print(f"wrote a tiny random checkpoint to {path}")
            return 0
    except (EngineError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 2


def cmd_say(args) -> int:
    import torch

    from engine.sampling import SamplingParams
    from engine.streaming import plan_request
    from engine.device import resolve_device, resolve_dtype, resolve_model_id

    text = sys.stdin.read() if args.text == "-" else args.text
    plan_request(text, language=args.language)  # bad text or language: fail before loading
    wav, sr = read_wav(args.ref_audio)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    model_id = resolve_model_id(args.model)
    t0 = time.perf_counter()
    model = _load(model_id, device, dtype)
    transcript = None if args.xvec else args.ref_text
    voice = model.create_voice_prompt(wav, sr, transcript=transcript)
    print(f"loaded {model_id} on {device} ({str(dtype).removeprefix('torch.')}) and the voice in "
          f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
    overrides = {k: v for k, v in (("seed", args.seed), ("max_new_tokens", args.max_new_tokens)) if v is not None}
    sampling = model.default_sampling(**overrides) if hasattr(model, "default_sampling") else SamplingParams(**overrides)
    stream = model.stream(text, voice=voice, language=args.language, sampling=sampling,
                     chunk_frames=args.chunk_frames)
    bar = None if args.quiet else ProgressBar(stream.plan.segments)
    pieces, sample_rate = [], 24000
    with torch.inference_mode():
        for chunk in stream:
            pieces.append(chunk.pcm)
            sample_rate = chunk.sample_rate
            if bar:
                bar.update(chunk, stream.metrics)
    if bar:
        bar.close()
    audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    write_wav(args.output, audio, sample_rate)
    print(f"wrote {args.output} ({audio.shape[0] / sample_rate:.2f} s)", file=sys.stderr)
    print(stream.metrics.summary())
    return 0


def _load(model_id, device, dtype):
    from engine import load_model

    return load_model(model_id, device=device, dtype=dtype)


class ProgressBar:
    """One stderr line: segments done, audio so far, speed. The length of speech is unknown
    in advance, so a segment's share advances with its frames against a normal speaking rate."""

    WIDTH = 30

    def __init__(self, segments, out=sys.stderr):
        from engine.text_split import text_units

        self.out = out
        self.weights = [max(text_units(s), 1) for s in segments]
        self.expected = [0.85 * w for w in self.weights]  # ~frames at a normal speaking rate
        self.frames = [0] * len(segments)

    def update(self, chunk, metrics) -> None:
        self.frames[chunk.segment_index] += chunk.num_frames
        if chunk.segment_index:
            for i in range(chunk.segment_index):
                self.frames[i] = max(self.frames[i], self.expected[i])
        done = sum(w * min(f / e, 0.99) for w, f, e in zip(self.weights, self.frames, self.expected))
        fraction = done / sum(self.weights)
        filled = int(self.WIDTH * fraction)
        rtf = f"{metrics.rtf:.2f}" if metrics.rtf else "-"
        self.out.write(f"\r[{'#' * filled}{'.' * (self.WIDTH - filled)}] segment {chunk.segment_index + 1}/"
                       f"{len(self.weights)}  {metrics.audio_s:6.2f} s audio  RTF {rtf} ")
        self.out.flush()

    def close(self) -> None:
        self.out.write(f"\r[{'#' * self.WIDTH}] done{' ' * 40}\n")
        self.out.flush()


# ---------------------------------------------------------------------------------------
# WAV files (stdlib only: PCM 8/16/24/32-bit and 32/64-bit float, mono or multichannel)


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """A WAV file -> (samples float32 [N] or [N, C], sample rate)."""
    data = Path(path).read_bytes()
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"{path} is not a WAV file (convert it first, e.g. ffmpeg -i in.mp3 out.wav)")
    fmt, samples, pos = None, None, 12
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        body = data[pos + 8:pos + 8 + size]
        if cid == b"fmt ":
            fmt = struct.unpack("<HHIIHH", body[:16])
            if fmt[0] == _WAVE_EXTENSIBLE and len(body) >= 26:
                fmt = (struct.unpack("<H", body[24:26])[0],) + fmt[1:]
        elif cid == b"data":
            samples = body
        pos += 8 + size + (size & 1)
    if fmt is None or samples is None:
        raise ValueError(f"{path}: a WAV file needs 'fmt ' and 'data' chunks")
    tag, channels, rate, _, _, bits = fmt
    kinds = {(_WAVE_PCM, 8): np.uint8, (_WAVE_PCM, 16): np.int16, (_WAVE_PCM, 32): np.int32,
             (_WAVE_FLOAT, 32): np.float32, (_WAVE_FLOAT, 64): np.float64}
    if (tag, bits) == (_WAVE_PCM, 24):
        raw = np.frombuffer(samples[:len(samples) // 3 * 3], np.uint8).reshape(-1, 3)
        wav = (raw[:, 0].astype(np.int32) | raw[:, 1].astype(np.int32) << 8 | raw[:, 2].astype(np.int32) << 16)
        wav = np.where(wav >= 1 << 23, wav - (1 << 24), wav).astype(np.float32) / (1 << 23)
    elif (tag, bits) in kinds:
        wav = np.frombuffer(samples[:len(samples) // (bits // 8) * (bits // 8)], kinds[(tag, bits)])
        if tag == _WAVE_PCM:
            wav = (wav.astype(np.float32) - (128 if bits == 8 else 0)) / float(1 << (bits - 1))
    else:
        raise ValueError(f"{path}: unsupported WAV encoding (format {tag}, {bits} bits)")
    wav = wav.astype(np.float32)
    return (wav.reshape(-1, channels) if channels > 1 else wav), int(rate)


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Mono float32 [-1, 1] -> 16-bit PCM WAV."""
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())


if __name__ == "__main__":
    raise SystemExit(main())
