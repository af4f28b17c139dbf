"""What the app needs when it runs as a Hugging Face Space. This package ships inside the Space.

The build and push tooling lives in `spaces/` at the repo root and never ships. The names
differ on purpose: inside a Space, `import spaces` must find Hugging Face's ZeroGPU package.
Gradio and this package both import it, and a folder of ours with that name would shadow it.

Import this package first in the Space's entry point (`space_app.py` does). On ZeroGPU
(`SPACES_ZERO_GPU` set) it imports the real `spaces` package at once, before anything
imports torch. ZeroGPU needs that order: `spaces` patches torch so that CUDA is initialised
only inside `@spaces.GPU` functions.

    import space_runtime                  # first line of the entry point
    space = space_runtime.active()        # the SpaceRuntime set up by space_app.py, or None
"""
from __future__ import annotations

import os
import sys

ZERO_GPU_ENV = "SPACES_ZERO_GPU"


def zero_gpu_enabled(environ=None) -> bool:
    """True on a ZeroGPU Space. This is the rule `spaces` itself applies to SPACES_ZERO_GPU."""
    value = (os.environ if environ is None else environ).get(ZERO_GPU_ENV)
    return value is not None and value.lower() in ("1", "t", "true")


def _import_zero_gpu_package():
    """Import Hugging Face's `spaces` package and check that it is the real one."""
    if "torch" in sys.modules:
        # Importing torch does not initialise CUDA, so this can still work. But a CUDA call
        # made before this import would break ZeroGPU, so say where the import order went wrong.
        print("space_runtime: torch was imported before the `spaces` package; import "
              "space_runtime first in the entry point", file=sys.stderr)
    import spaces

    if not callable(getattr(spaces, "GPU", None)):
        raise ImportError(
            f"`import spaces` found {getattr(spaces, '__file__', spaces)!r}, not Hugging Face's "
            "ZeroGPU package. Run the Space from the folder that `python -m spaces build` "
            "makes: it has no `spaces/` folder of ours to shadow the real package.")
    # Gradio wraps every UI event in spaces.GPU when SPACES_GRADIO_AUTO_WRAP is set. A forked
    # handler would not find the app's engine worker, so only our own GPU functions
    # (space_runtime.zerogpu) are decorated.
    spaces.disable_gradio_auto_wrap()
    return spaces


if zero_gpu_enabled():
    _import_zero_gpu_package()


def active():
    """The SpaceRuntime when this process was started by the Space entry point, else None."""
    from space_runtime import runtime

    return runtime.current()


__all__ = ["active", "zero_gpu_enabled", "ZERO_GPU_ENV"]
