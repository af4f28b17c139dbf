"""N concurrent streams through the engine worker, as the app runs them: one EngineWorker
owning the model, one Session per client, each speaking one forced-length request; all are
submitted at once (max_active = N). Only the worker's public session API is used, so this
measures whatever scheduling the worker does (round-robin today, batched later).

Per N: aggregate frames/s (all frames / wall time), RTF per stream (mean, worst) and time
to first audio per stream (p50, p95; submission -> first chunk, queueing included). A
larger N is skipped when the rate measured so far says it would not end within the budget.
"""
from __future__ import annotations

import statistics

from engine.bench import e2e
from engine.gpucheck.speed import speech_options


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def measure(model, streams: int, frames: int, seed: int = 0) -> dict:
    handles, wall = e2e.speak_at_once(model, [speech_options(model, frames, seed + i) for i in range(streams)])
    metrics = [h.metrics for h in handles]
    made = sum(m.frames for m in metrics)
    if made != streams * frames:
        raise RuntimeError(f"expected {frames} frames per stream, got {[m.frames for m in metrics]}")
    first = [1000 * m.time_to_first_audio_s for m in metrics]
    rtf = [m.rtf for m in metrics]
    return {"streams": streams, "frames_per_stream": frames, "wall_s": wall, "aggregate_frames_per_s": made / wall,
            "rtf_mean": statistics.mean(rtf), "rtf_max": max(rtf),
            "first_audio_p50_ms": percentile(first, 0.5), "first_audio_p95_ms": percentile(first, 0.95)}


def run(model, counts: list[int], frames: int, budget_s: float) -> dict:
    measure(model, 1, 2)  # warm-up
    rows, spent, rate = [], 0.0, None
    for n in counts:
        estimate = n * frames / rate if rate else 0.0
        if rate and spent + estimate > budget_s:
            rows.append({"streams": n, "skipped": f"about {estimate:.0f} s at {rate:.1f} frames/s: over the "
                                                  f"{budget_s:.0f} s budget"})
            continue
        row = measure(model, n, frames)
        rows.append(row)
        spent += row["wall_s"]
        rate = row["aggregate_frames_per_s"]
    return {"status": "ok", "dtype": str(model.dtype).removeprefix("torch."), "frames_per_stream": frames,
            "rows": rows, "budget_s": budget_s}
