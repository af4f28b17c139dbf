"""Hugging Face Space entry point (the Space's app_file), made by `python -m spaces build`.

`space_runtime` comes first: on ZeroGPU it imports the `spaces` package before anything
imports torch.
"""
import space_runtime  # noqa: F401  (must be the first import)
from space_runtime.entry import main

if __name__ == "__main__":
    raise SystemExit(main())
