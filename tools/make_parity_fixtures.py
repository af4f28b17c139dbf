"""Builds the tiny official Qwen3-TTS checkpoints and the golden outputs the tests compare against.

Run in the reference environment only (it imports the official qwen-tts 0.1.1 code):

    bash ../shared/reference/setup-reference-env.sh          # once: /tmp/qwen-ref
    /tmp/qwen-ref/bin/python tools/make_parity_fixtures.py   # rewrites tests/fixtures/

Two shapes, so that shape bugs cannot hide behind equal widths:
  a: talker width == code-predictor width; codec decoder/encoder of one shape
  b: talker width != code-predictor width (exercises the projection); another codec shape

Stages (each a module in tools/parity/, each deterministic from its own seed):
  1. tiny_model.build(ckpt_dir, shape)   -> config.json, generation_config.json,
     model.safetensors (talker + speaker encoder), tokenizer files (tiny byte-level BPE)
  2. tiny_codec.build(ckpt_dir, shape)   -> speech_tokenizer/{config.json, model.safetensors, ...}
  3. golden_*.record(ckpt_dir, golden_dir, shape): each loads the saved checkpoint with the
     official loaders (which proves the layout is the official one) and records outputs.
The official random init is perturbed (N(0, 0.15) added to every weight) so that outputs
depend on text, voice and language rather than collapsing to one argmax.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent / "shared" / "reference"))

FIXTURES = ROOT / "tests" / "fixtures"
SHAPES = ("a", "b")
BUILDERS = ("tiny_model", "tiny_codec")
RECORDERS = ("golden_talker", "golden_codec", "golden_encoders")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="stage modules to run (default: all)")
    parser.add_argument("--shapes", nargs="*", default=list(SHAPES))
    parser.add_argument("--out", type=Path, default=FIXTURES)
    args = parser.parse_args(argv)
    stages = [s for s in BUILDERS + RECORDERS if not args.only or s in args.only]
    for shape in args.shapes:
        ckpt_dir = args.out / f"tiny_{shape}"
        golden_dir = args.out / "golden" / shape
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        golden_dir.mkdir(parents=True, exist_ok=True)
        for stage in stages:
            module = importlib.import_module(f"tools.parity.{stage}")
            print(f"[{shape}] {stage}", flush=True)
            if stage in BUILDERS:
                module.build(ckpt_dir, shape)
            else:
                module.record(ckpt_dir, golden_dir, shape)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
