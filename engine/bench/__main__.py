"""`python -m engine.bench <name> [options]`: run the benchmark engine/bench/<name>.py.

    python -m engine.bench talker      # talker + code predictor ms/frame, ours vs official
    python -m engine.bench codec       # codec decoder ms/frame, streaming vs chunked
    python -m engine.bench e2e         # streaming first audio / RTF, 1-2-4 streams, vs official full audio
    python -m engine.bench batch       # 1-8 concurrent streams: batched step vs round-robin, join, ICL reuse
    python -m engine.bench <name> -h   # the options of one benchmark

Benchmarks that compare with the official implementation need the reference environment
(/tmp/qwen-ref/bin/python); the engine itself never imports it.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def available() -> list[str]:
    folder = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(folder)]) if not m.name.startswith("_"))


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    names = available()
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in names:
        print(__doc__)
        print("available:", ", ".join(names))
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(f"engine.bench.{argv[0]}")
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
