"""The Space's settings and the one object the app talks to when it runs as a Space.

Settings come from the Space's variables and secrets (both are environment variables):
    VOICE_PERSIST_DIR   where a storage bucket is mounted (default /data when it exists;
                        "off" disables persistence)
    VOICE_DATA_DIR      the live library on local disk (default ./data; never on the mount)
    TTS_MODEL_ID        the model (default: the one the Space was built for)
    GRADIO_SERVER_PORT  the port (set by Spaces; 7860), bound on GRADIO_SERVER_NAME or 0.0.0.0
    API_TOKEN           read by the app itself (webapp.auth), set it as a secret
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from space_runtime import zerogpu
from space_runtime.launch import server_address, serve
from space_runtime.persistence import Persistence

log = logging.getLogger(__name__)

PERSIST_ENV = "VOICE_PERSIST_DIR"
DEFAULT_MOUNT = "/data"
DATA_DIR_ENV = "VOICE_DATA_DIR"  # the rule of voices_db.paths.resolve_data_dir
OFF = ("", "0", "off", "none", "false")


@dataclass
class SpaceSettings:
    """Where things go on this Space (see the module docstring)."""

    data_dir: Path
    mount: Path | None
    host: str
    port: int
    problems: list[str] = field(default_factory=list)  # configuration mistakes, logged at startup

    @classmethod
    def from_env(cls, environ=None) -> "SpaceSettings":
        environ = os.environ if environ is None else environ
        problems: list[str] = []
        mount = find_mount(environ, problems)
        data_dir = Path(environ.get(DATA_DIR_ENV) or "data").expanduser().resolve()
        if mount is not None and _inside(data_dir, mount):
            local = Path.home() / "voice-data"
            problems.append(f"{DATA_DIR_ENV}={data_dir} is on the storage mount {mount}, where SQLite "
                            f"cannot run safely; using {local} and snapshots on the mount instead")
            data_dir = local
        host, port = server_address(environ)
        return cls(data_dir=data_dir, mount=mount, host=host, port=port, problems=problems)


def find_mount(environ, problems: list[str]) -> Path | None:
    """The mounted storage folder, or None (no persistent storage)."""
    value = environ.get(PERSIST_ENV)
    if value is not None and value.strip().lower() in OFF:
        return None
    path = Path(value or DEFAULT_MOUNT).expanduser()
    if path.is_dir() and os.access(path, os.W_OK):
        return path.resolve()
    if value:  # asked for explicitly but unusable: say so
        problems.append(f"{PERSIST_ENV}={value} is not a writable folder; voices will not be persisted")
    return None


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


class SpaceRuntime:
    """What the app uses on a Space: storage, the notice, ZeroGPU options and `serve`."""

    def __init__(self, settings: SpaceSettings):
        self.settings = settings
        self.storage = Persistence(settings.data_dir, settings.mount)

    @property
    def notice(self) -> str | None:
        """Markdown for the UI when voices will not survive a restart, else None."""
        return self.storage.notice

    def prepare(self) -> None:
        """Startup, before the app opens the library: point it at local disk, restore the
        last snapshot there."""
        for problem in self.settings.problems:
            log.warning("%s", problem)
        os.environ[DATA_DIR_ENV] = str(self.settings.data_dir)
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.storage.restore()

    def attach_library(self, store):
        """Snapshot the library after every change to `store` (a voices_db.VoiceStore)."""
        return self.storage.watch(store)

    def worker_options(self) -> dict:
        """Extra ModelHost/EngineWorker arguments (ZeroGPU: keep the model on the CPU)."""
        return zerogpu.worker_options()

    def serve(self, api, blocks, **launch_kwargs):
        """Serve the app through `Blocks.launch()` on this Space's host and port."""
        try:
            return serve(api, blocks, host=self.settings.host, port=self.settings.port, **launch_kwargs)
        finally:
            self.storage.flush()


_current: SpaceRuntime | None = None


def install(runtime: SpaceRuntime | None) -> None:
    """Make `runtime` the one `space_runtime.active()` returns (the entry point does this)."""
    global _current
    _current = runtime


def current() -> SpaceRuntime | None:
    return _current
