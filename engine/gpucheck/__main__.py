"""`python -m engine.gpucheck --out DIR [--device cuda|cpu] [--quick]` (see engine/gpucheck)."""
from __future__ import annotations

import argparse
import platform
import sys
import time
import traceback
from pathlib import Path

import torch

from engine.gpucheck import correctness, pytest_run, report, speed, streams

ROOT = Path(__file__).resolve().parents[2]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine.gpucheck", description=__doc__)
    p.add_argument("--out", type=Path, required=True, help="folder for report.json and report.md")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes: the tiny fixture for speed, few frames, one fixture shape (what the tests run)")
    p.add_argument("--fixtures", type=Path, default=ROOT / "tests" / "fixtures", help="golden fixtures folder")
    p.add_argument("--frames", type=int, default=None, help="frames per batch-1 speed run (default 50; quick 6)")
    p.add_argument("--streams", type=int, nargs="+", default=None,
                   help="concurrent streams (default 1 4 16 64 on cuda, 1 2 on cpu)")
    p.add_argument("--stream-frames", type=int, default=None, help="frames per stream (default 25; quick 4)")
    p.add_argument("--streams-budget-s", type=float, default=120.0,
                   help="wall time the streams section may take; larger N past it are skipped")
    p.add_argument("--pytest-timeout-s", type=float, default=150.0)
    p.add_argument("--no-pytest", action="store_true", help="do not run the cuda-marked pytest tests")
    return p


def guarded(name: str, fn, *args) -> dict:
    """A section's result, or an `error` section with the traceback's tail: one broken
    section must not cost the others on a rare GPU run."""
    started = time.perf_counter()
    try:
        result = fn(*args)
    except Exception as e:  # noqa: BLE001 - reported, and the run goes on
        result = {"status": "error", "reason": f"{type(e).__name__}: {e}",
                  "traceback": traceback.format_exc()[-4000:]}
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(f"gpucheck: {name}: {result['status']} ({result['seconds']} s)", flush=True)
    return result


def meta(args, device: torch.device, argv: list[str]) -> dict:
    cuda = device.type == "cuda"
    return {"device": str(device), "device_name": torch.cuda.get_device_name(device) if cuda else platform.processor()
            or platform.machine(), "torch": torch.__version__, "cuda": torch.version.cuda if cuda else None,
            "python": platform.python_version(), "threads": torch.get_num_threads(),
            "mode": "quick" if args.quick else "full", "command": " ".join(["python -m engine.gpucheck", *argv]),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %z")}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpucheck: --device cuda, but torch sees no CUDA GPU here", file=sys.stderr)
        return 2
    torch.set_flush_denormal(True)  # random weights must not time subnormal arithmetic on the CPU
    started = time.perf_counter()
    cuda = device.type == "cuda"
    frames = args.frames or (6 if args.quick else 50)
    stream_frames = args.stream_frames or (4 if args.quick else 25)
    counts = args.streams or ([1, 4, 16, 64] if cuda else [1, 2])
    from engine.device import default_dtype

    dtypes = [torch.bfloat16, torch.float32] if cuda else [default_dtype(device)]
    result = {"meta": meta(args, device, argv)}
    result["correctness"] = guarded("correctness", correctness.run, device, args.fixtures, args.quick)
    result["speed"] = guarded("speed", speed.run, device, dtypes, args.quick, args.fixtures, frames)
    result["streams"] = guarded("streams", run_streams, device, dtypes[0], args, stream_frames, counts)
    result["pytest"] = ({"status": "skipped", "reason": "--no-pytest"} if args.no_pytest else
                        guarded("pytest", pytest_run.run, ROOT, args.pytest_timeout_s))
    result["meta"]["seconds"] = time.perf_counter() - started
    result["ok"] = report.overall_ok(result)
    json_path, md_path = report.write(result, args.out)
    print(f"gpucheck: {'PASS' if result['ok'] else 'FAIL'} in {result['meta']['seconds']:.0f} s: {json_path}, {md_path}")
    return 0 if result["ok"] else 1


def run_streams(device, dtype, args, frames: int, counts: list[int]) -> dict:
    model, _ = speed.build(device, dtype, args.quick, args.fixtures)
    return streams.run(model, counts, frames, args.streams_budget_s)


if __name__ == "__main__":
    raise SystemExit(main())
