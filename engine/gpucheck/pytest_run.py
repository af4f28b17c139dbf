"""The `cuda`-marked pytest tests, in a subprocess (only the test files that hold such tests,
so nothing beyond the engine's own dependencies is imported). Skipped when pytest or the
tests/ folder is not there; on a machine without CUDA they all skip (conftest.py)."""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

MARK = "pytest.mark.cuda"


def cuda_test_files(tests: Path) -> list[Path]:
    return sorted(p for p in tests.glob("test_*.py") if MARK in p.read_text(encoding="utf-8"))


def run(root: Path, timeout_s: float) -> dict:
    if importlib.util.find_spec("pytest") is None:
        return {"status": "skipped", "reason": "pytest is not installed here"}
    files = cuda_test_files(root / "tests") if (root / "tests").is_dir() else []
    if not files:
        return {"status": "skipped", "reason": f"no tests with {MARK} under {root / 'tests'}"}
    relative = [str(p.relative_to(root)) for p in files]
    command = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", *relative]
    try:
        done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        return {"status": "failed", "reason": f"timed out after {timeout_s:.0f} s",
                "command": " ".join(["python"] + command[1:]), "tail": str(e.stdout or "")[-3000:]}
    out = done.stdout + done.stderr
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|skipped|error|errors|deselected)", out)}
    failed = counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0)
    lines = [ln for ln in out.strip().splitlines() if ln.strip()]
    summary = lines[-1].strip("= ") if lines else ""
    if done.returncode not in (0, 5) or failed:
        status = "failed"
    elif counts.get("passed", 0) == 0:
        status = "skipped"
    else:
        status = "ok"
    result = {"status": status, "command": " ".join(["python"] + command[1:]), "summary": summary,
              "passed": counts.get("passed", 0), "failed": failed, "skipped": counts.get("skipped", 0),
              "tail": out[-3000:] if status == "failed" else ""}
    if status == "skipped":
        result["reason"] = "every cuda test skipped (no CUDA GPU here)"
    return result
