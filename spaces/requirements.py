"""requirements.txt for the Space, made from pyproject.toml's runtime dependencies.

- torch is pinned to the tested version, in the build that fits the hardware. GPU and
  ZeroGPU get PyPI's wheel, which is the CUDA build on Linux. CPU Spaces get the CPU build
  from PyTorch's index, without gigabytes of CUDA libraries.
- gradio is left out. The Space installs the one its `sdk_version` names, and the build
  checks that this version satisfies pyproject's gradio requirement.
- everything else keeps pyproject's specifiers, extras and markers as they are.
"""
from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from spaces import metadata

PROVIDED_BY_SDK = {"gradio"}


def project_dependencies(pyproject: Path) -> list[Requirement]:
    """The `[project] dependencies` of a pyproject.toml."""
    data = tomllib.loads(Path(pyproject).read_text())
    return [Requirement(spec) for spec in data["project"]["dependencies"]]


def check_sdk_version(deps: list[Requirement]) -> None:
    """Refuse to build when the pinned Gradio does not satisfy pyproject's requirement."""
    for req in deps:
        if canonicalize_name(req.name) == "gradio" and not req.specifier.contains(metadata.GRADIO_SDK_VERSION):
            raise ValueError(f"sdk_version {metadata.GRADIO_SDK_VERSION} does not satisfy pyproject's "
                             f"'{req}': update GRADIO_SDK_VERSION in spaces/metadata.py")


def torch_line(req: Requirement) -> str:
    """torch pinned to the tested version, keeping any extras and markers."""
    pinned = Requirement(str(req))
    if not pinned.specifier.contains(metadata.TORCH_VERSION):
        raise ValueError(f"TORCH_VERSION {metadata.TORCH_VERSION} does not satisfy pyproject's '{req}'")
    extras = f"[{','.join(sorted(pinned.extras))}]" if pinned.extras else ""
    marker = f"; {pinned.marker}" if pinned.marker else ""
    return f"{pinned.name}{extras}=={metadata.TORCH_VERSION}{marker}"


def render(pyproject: Path, hardware: str) -> str:
    """The text of requirements.txt for `hardware`."""
    deps = project_dependencies(pyproject)
    check_sdk_version(deps)
    lines = [f"# Made by `python -m spaces build` from pyproject.toml for {hardware} hardware.",
             f"# gradio=={metadata.GRADIO_SDK_VERSION} comes from the README's sdk_version."]
    if metadata.is_cpu(hardware):
        lines.append(f"--extra-index-url {metadata.TORCH_CPU_INDEX}")
    for req in deps:
        name = canonicalize_name(req.name)
        if name in PROVIDED_BY_SDK:
            continue
        lines.append(torch_line(req) if name == "torch" else str(req))
    return "\n".join(lines) + "\n"
