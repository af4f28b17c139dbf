"""`python -m engine.gpucheck --out DIR [--device cuda|cpu] [--quick]`: one command that proves
the engine on a machine, GPU or not, and writes DIR/report.json and DIR/report.md.

A GPU machine is at hand only now and then, for a few minutes, so everything is measured in
one run of a few minutes, with nothing but torch, safetensors, tokenizers, numpy and
huggingface_hub at import (the rest, e.g. soxr, is imported only where a section needs it):

- correctness (`correctness.py`): on the device, against the committed golden fixtures of
  the official implementation (tests/fixtures): float32 greedy codes equal, decode within
  1e-4, streaming == one-shot; bfloat16 codes agreement and logits error against float32;
- speed (`speed.py`): at the released 0.6B-Base size with random weights: ms per frame at
  batch 1, time to first audio, RTF, codec ms per frame, peak GPU memory;
- streams (`streams.py`): N concurrent streams through the engine worker's sessions, as
  the app uses them: aggregate frames/s, per-stream RTF, first audio p50/p95;
- the `cuda`-marked pytest tests (`pytest_run.py`), when pytest is there.

`--device cpu --quick` runs the same sections on the tiny fixtures (the test suite does,
so the command cannot rot between GPU runs). Exit status 0 when every correctness check
and the pytest run passed, 1 otherwise.
"""
