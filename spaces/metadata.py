"""What the Space declares about itself: the README front matter, and the hardware rules.

The values are kept here, beside the tooling, and pinned. `tests/test_spaces.py` checks that
they agree with pyproject.toml, tools/bootstrap.sh and the engine's checkpoint file list.
"""
from __future__ import annotations

from engine.checkpoint import CHECKPOINT_PATTERNS

GRADIO_SDK_VERSION = "6.31.0"  # the Gradio the Space runs (must satisfy pyproject's gradio spec)
PYTHON_VERSION = "3.11"
TORCH_VERSION = "2.13.0"  # the torch the tests run with (tools/bootstrap.sh installs the same)
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
APP_FILE = "space_app.py"
DEFAULT_MODEL = "Qwen/Qwen3-TTS-12Hz-0.6B-Base"
DEFAULT_HARDWARE = "zero-a10g"
SYSTEM_PACKAGES = ("ffmpeg",)  # packages.txt: pydub decodes uploads with ffmpeg

# Checkpoint files preloaded into the Space image at build time, so the first start does
# not download them: the fixed names among the files the engine's loader fetches (a
# single-file 12 Hz Base checkpoint has no shards or index).
CHECKPOINT_FILES = tuple(p for p in CHECKPOINT_PATTERNS if "*" not in p and not p.endswith(".index.json"))

CPU_HARDWARE = ("cpu-basic", "cpu-upgrade")


def known_hardware() -> tuple[str, ...]:
    """Hardware flavors the Hub accepts (huggingface_hub's SpaceHardware)."""
    from huggingface_hub import SpaceHardware

    return tuple(h.value for h in SpaceHardware)


def is_cpu(hardware: str) -> bool:
    return hardware in CPU_HARDWARE


def is_zero_gpu(hardware: str) -> bool:
    return hardware.startswith("zero-")


def front_matter(*, model: str, hardware: str, title: str = "Qwen3 Voice Studio") -> dict:
    """The Space's README metadata (https://huggingface.co/docs/hub/spaces-config-reference)."""
    return {
        "title": title,
        "emoji": "🎙️",
        "colorFrom": "indigo",
        "colorTo": "purple",
        "sdk": "gradio",
        "sdk_version": GRADIO_SDK_VERSION,
        "python_version": PYTHON_VERSION,
        "app_file": APP_FILE,
        "pinned": False,
        "license": "apache-2.0",
        "short_description": "Clone a voice from seconds of audio; streamed Qwen3-TTS",
        "suggested_hardware": hardware,
        "models": [model],
        "preload_from_hub": [f"{model} {','.join(CHECKPOINT_FILES)}"],
        "tags": ["text-to-speech", "voice-cloning", "qwen3-tts", "streaming"],
    }
