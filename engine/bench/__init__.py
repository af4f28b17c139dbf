"""Benchmarks: `python -m engine.bench <name>` (see engine/bench/__main__.py)."""
