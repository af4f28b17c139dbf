"""The report: one JSON document (`report.json`) and the same as Markdown (`report.md`).

Layout of the JSON (every section has a `status`: ok | failed | skipped | error):
    {"meta": {...}, "ok": bool,
     "correctness": {"status", "checks": [{"name", "ok", "value", "limit", "detail"}], "info": {...}},
     "speed": {"status", "model", "runs": [{"dtype", "ms_per_frame", "first_audio_ms", "rtf",
               "codec_ms_per_frame": {chunk: ms}, "peak_gpu_memory_gib", ...}], "cuda_graphs"},
     "streams": {"status", "rows": [{"streams", "frames_per_stream", "aggregate_frames_per_s",
                 "rtf_mean", "rtf_max", "first_audio_p50_ms", "first_audio_p95_ms"} | {"streams", "skipped"}]},
     "pytest": {"status", "passed", "failed", "skipped", "summary", "tail"}}
"""
from __future__ import annotations

import json
from pathlib import Path

PEAK_MEMORY_TARGET_GIB = 4


def overall_ok(report: dict) -> bool:
    """Every correctness check passed and the pytest run did not fail (skipped is fine)."""
    return (report["correctness"]["status"] == "ok"
            and report["pytest"]["status"] in ("ok", "skipped"))


def write(report: dict, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "report.json", out / "report.md"
    json_path.write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    md_path.write_text(markdown(report), encoding="utf-8")
    return json_path, md_path


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 0.01 else f"{value:.3f}".rstrip("0").rstrip(".")
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
    return str(value)


def _table(headers: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_fmt(cell).replace("|", "/") for cell in row) + " |" for row in rows]
    return lines


def markdown(report: dict) -> str:
    meta = report["meta"]
    lines = [f"# GPU check: {'PASS' if report['ok'] else 'FAIL'}", "",
             f"device **{meta['device']}** ({meta['device_name']}), torch {meta['torch']}"
             f"{', CUDA ' + meta['cuda'] if meta.get('cuda') else ''}, {meta['mode']} mode, "
             f"{meta['seconds']:.0f} s in all, command `{meta['command']}`", ""]
    c = report["correctness"]
    lines += [f"## Correctness ({c['status']})", ""]
    if c.get("checks"):
        lines += _table(["check", "ok", "value", "limit", "detail"],
                        [[k["name"], k["ok"], k["value"], k["limit"], k.get("detail")] for k in c["checks"]])
    lines += _reason(c)
    for key, value in c.get("info", {}).items():
        lines.append(f"- {key}: {_fmt(value)}")
    s = report["speed"]
    lines += ["", f"## Speed at batch 1 ({s['status']})", ""]
    if s.get("model"):
        lines += [f"model: {s['model']}", ""]
    if s.get("runs"):
        lines += _table(["dtype", "ms/frame (generation)", "first audio ms", "RTF", "codec ms/frame by chunk",
                         "peak GPU memory GiB", "frames"],
                        [[r["dtype"], r["ms_per_frame"], r["first_audio_ms"], r["rtf"], r["codec_ms_per_frame"],
                          r["peak_gpu_memory_gib"], r["frames"]] for r in s["runs"]])
    if any(r.get("peak_gpu_memory_gib") is not None for r in s.get("runs", [])):
        lines += ["", f"peak GPU memory target at batch 1 (spec): < {PEAK_MEMORY_TARGET_GIB} GiB"]
    if s.get("cuda_graphs"):
        lines += ["", f"CUDA graphs: {s['cuda_graphs']}"]
    lines += _reason(s)
    st = report["streams"]
    lines += ["", f"## Concurrent streams through the worker ({st['status']})", ""]
    if st.get("rows"):
        lines += [f"dtype {st.get('dtype')}, {st.get('frames_per_stream')} frames per stream, "
                  f"max_active = streams", ""]
        lines += _table(["streams", "aggregate frames/s", "RTF per stream mean / max", "first audio p50 / p95 ms",
                         "wall s"],
                        [[r["streams"], r.get("aggregate_frames_per_s", r.get("skipped")),
                          _pair(r, "rtf_mean", "rtf_max"), _pair(r, "first_audio_p50_ms", "first_audio_p95_ms"),
                          r.get("wall_s")] for r in st["rows"]])
    lines += _reason(st)
    p = report["pytest"]
    lines += ["", f"## cuda-marked pytest tests ({p['status']})", ""]
    if p.get("summary"):
        lines.append(f"`{p['command']}`: {p['summary']}")
    lines += _reason(p)
    return "\n".join(lines).rstrip() + "\n"


def _pair(row: dict, a: str, b: str):
    return None if row.get(a) is None else f"{_fmt(row[a])} / {_fmt(row[b])}"


def _reason(section: dict) -> list[str]:
    return [f"", f"{section['status']}: {section['reason']}"] if section.get("reason") else []
