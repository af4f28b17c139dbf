"""The Space's entry point: `space_app.py` (the Space's app_file) calls `main()`.

It sets up what only a Space needs, then runs the app's own `main`:
1. defaults from `space_config.json`, which `python -m spaces build` writes (e.g. the model),
   for each variable the Space does not set itself;
2. the SpaceRuntime (`space_runtime.active()`): settings, storage, ZeroGPU options;
3. the voice library restored from the storage mount onto local disk;
4. `app.main(argv)`, which serves through `space_runtime.active().serve(api, blocks)`.
"""
from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from space_runtime import runtime

CONFIG_FILE = "space_config.json"
ROOT = Path(__file__).resolve().parent.parent  # the Space's folder


def load_defaults(root: Path = ROOT) -> dict[str, str]:
    """Environment defaults recorded at build time ({} without space_config.json)."""
    path = root / CONFIG_FILE
    if not path.is_file():
        return {}
    return {str(k): str(v) for k, v in json.loads(path.read_text()).get("env", {}).items()}


def main(argv: list[str] | None = None) -> int:
    """Start the studio as a Space; returns the app's exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for key, value in load_defaults().items():
        os.environ.setdefault(key, value)
    space = runtime.SpaceRuntime(runtime.SpaceSettings.from_env())
    runtime.install(space)
    space.prepare()
    sys.path.insert(0, str(ROOT))  # app.py sits beside space_app.py
    import app

    argv = list(sys.argv[1:] if argv is None else argv)
    for flag, value in (("--host", space.settings.host), ("--port", str(space.settings.port))):
        if not any(a == flag or a.startswith(flag + "=") for a in argv):
            argv += [flag, value]  # the Space's address, whichever way the app serves
    return int(app.main(argv) or 0)
