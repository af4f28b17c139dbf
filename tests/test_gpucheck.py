"""`python -m engine.gpucheck` runs here too (--device cpu --quick), so it cannot rot between
the rare GPU runs; its report format and its import rule are checked."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from engine.gpucheck import report, streams

ROOT = Path(__file__).resolve().parent.parent
ALLOWED_AT_IMPORT = {"torch", "numpy", "safetensors", "tokenizers", "huggingface_hub"}


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpucheck")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "engine.gpucheck", "--device", "cpu", "--quick", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((out / "report.json").read_text()), (out / "report.md").read_text(), done.stdout


@pytest.mark.slow
def test_the_cpu_run_passes_every_correctness_check(cpu_run):
    data, _, stdout = cpu_run
    assert data["ok"] is True and "PASS" in stdout
    assert data["meta"]["device"] == "cpu" and data["meta"]["mode"] == "quick"
    checks = data["correctness"]["checks"]
    names = " ".join(c["name"] for c in checks)
    for kind in ("fp32 greedy codes", "fp32 decode", "stream == one-shot", "bf16 prefill logits"):
        assert kind in names
    assert all(c["ok"] for c in checks) and data["correctness"]["status"] == "ok"
    agreement = next(v for k, v in data["correctness"]["info"].items() if "agreement" in k)
    assert 0 < agreement["entries"] <= 1


@pytest.mark.slow
def test_the_cpu_run_measures_speed_streams_and_runs_the_cuda_tests(cpu_run):
    data, _, _ = cpu_run
    run = data["speed"]["runs"][0]
    assert data["speed"]["status"] == "ok" and run["frames"] == 6
    for key in ("ms_per_frame", "first_audio_ms", "rtf", "first_frame_ms"):
        assert run[key] > 0, key
    assert set(run["codec_ms_per_frame"]) == {"1", "4"} and run["peak_gpu_memory_gib"] is None  # JSON keys
    rows = data["streams"]["rows"]
    assert [r["streams"] for r in rows] == [1, 2] and all(r["aggregate_frames_per_s"] > 0 for r in rows)
    assert all(r["first_audio_p50_ms"] <= r["first_audio_p95_ms"] for r in rows)
    pytest_part = data["pytest"]
    assert pytest_part["status"] == "skipped" and pytest_part["skipped"] >= 4 and pytest_part["failed"] == 0
    assert "tests/test_cuda_engine.py" in pytest_part["command"]


@pytest.mark.slow
def test_the_markdown_report_has_every_section(cpu_run):
    data, md, _ = cpu_run
    assert md.startswith("# GPU check: PASS")
    for heading in ("## Correctness (ok)", "## Speed at batch 1 (ok)", "## Concurrent streams through the worker (ok)",
                    "## cuda-marked pytest tests (skipped)"):
        assert heading in md
    assert md.count("| yes |") == len(data["correctness"]["checks"])
    assert re.search(r"^\| 2 \| [0-9.]+ \|", md, re.M)  # the two-stream row


def test_a_failed_check_or_section_fails_the_report(tmp_path):
    data = {"meta": {"device": "cuda:0", "device_name": "GPU", "torch": "2.x", "cuda": "12.8", "mode": "full",
                     "seconds": 12.0, "command": "python -m engine.gpucheck --out x"},
            "correctness": {"status": "failed", "checks": [
                {"name": "fp32 greedy codes == official (a)", "ok": False, "value": "7/8 cases", "limit": "all"}]},
            "speed": {"status": "error", "reason": "RuntimeError: out of memory"},
            "streams": {"status": "ok", "rows": [{"streams": 64, "skipped": "over the budget"}]},
            "pytest": {"status": "skipped", "reason": "pytest is not installed here"}}
    data["ok"] = report.overall_ok(data)
    json_path, md_path = report.write(data, tmp_path / "out")
    md = md_path.read_text()
    assert data["ok"] is False and json.loads(json_path.read_text())["ok"] is False
    assert md.startswith("# GPU check: FAIL") and "| fp32 greedy codes == official (a) | no | 7/8 cases |" in md
    assert "error: RuntimeError: out of memory" in md and "| 64 | over the budget |" in md
    assert "skipped: pytest is not installed here" in md


def test_streams_past_the_budget_are_skipped_not_run():
    from runtime_helpers import tiny_model

    result = streams.run(tiny_model("a"), [1, 2], frames=2, budget_s=0.0)
    assert result["rows"][0]["streams"] == 1 and result["rows"][0]["aggregate_frames_per_s"] > 0
    assert result["rows"][1] == {"streams": 2, "skipped": result["rows"][1]["skipped"]}
    assert "budget" in result["rows"][1]["skipped"]


def test_the_check_imports_no_other_dependency_of_the_project():
    """A GPU machine may have only torch and the engine's light dependencies: the project's
    other dependencies (soxr, gradio, ...) must not be imported by the check itself."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=\[ ;]", d, maxsplit=1)[0].lower().replace("-", "_") for d in deps}
    others = names - ALLOWED_AT_IMPORT
    assert "soxr" in others and "gradio" in others
    code = ("import sys, json; import engine.gpucheck.__main__; "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    imported = set(json.loads(done.stdout))
    assert imported & others == set()
