"""`python -m spaces build OUT_DIR`: assemble a complete Space repo from this checkout.

The folder holds:
    README.md         the Spaces front matter (spaces.metadata) + a short description
    requirements.txt  from pyproject.toml, torch to suit the hardware (spaces.requirements)
    packages.txt      apt packages (ffmpeg)
    space_app.py      the entry point (app_file): space_runtime first, then the app
    space_config.json defaults recorded at build time (the model)
    app.py + the packages pyproject installs (engine, voices_db, ingest, webapp, space_runtime)

It holds nothing else: no tests, fixtures, tools, benchmarks, caches, and no `spaces/`, so
Hugging Face's `spaces` package is never shadowed inside the Space.
"""
from __future__ import annotations

import ast
import fnmatch
import json
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path

from spaces import metadata, requirements

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = Path(__file__).resolve().parent / "templates"
TOP_LEVEL_FILES = ("app.py", "LICENSE")  # copied when present
TOOLING = "spaces"  # this package: never shipped
# Developer tools that live inside shipped packages (they need the reference environment,
# espeak-ng or a benchmark corpus, and nothing at run time imports them).
TOOL_PATHS = ("engine/bench", "ingest/bench.py")
IGNORED = ("__pycache__", "*.pyc", "*.pyo", ".*", "*.egg-info", "tests", "test_*.py")


class BuildError(Exception):
    """The Space cannot be built (bad option, unsafe output folder, inconsistent pins)."""


@dataclass(frozen=True)
class BuildOptions:
    """What to build: the default model and the hardware it is meant for."""

    model: str = metadata.DEFAULT_MODEL
    hardware: str = metadata.DEFAULT_HARDWARE

    def check(self) -> None:
        known = metadata.known_hardware()
        if self.hardware not in known:
            raise BuildError(f"unknown hardware {self.hardware!r}; use one of: {', '.join(known)}")
        if "/" not in self.model or self.model.count("/") != 1:
            raise BuildError(f"--model must be a Hub repo id such as {metadata.DEFAULT_MODEL}, got {self.model!r}")


def shipped_packages(root: Path = ROOT) -> list[str]:
    """Top-level packages the Space needs: those pyproject installs, plus any other package
    of the checkout that app.py or those packages import. The build tooling is never one."""
    data = tomllib.loads((root / "pyproject.toml").read_text())
    patterns = data["tool"]["setuptools"]["packages"]["find"]["include"]
    local = {p.name for p in root.iterdir() if (p / "__init__.py").is_file()} - {TOOLING, "tests", "tools"}
    chosen = {n for n in local if any(fnmatch.fnmatch(n, pat) for pat in patterns)}
    if "space_runtime" not in chosen:
        raise BuildError("pyproject's packages.find include must list space_runtime*")
    todo = [root / "app.py", *(root / n for n in chosen)]
    while todo:
        found = _imported_names(todo.pop()) & local - chosen
        chosen |= found
        todo += [root / n for n in found]
    return sorted(chosen)


def _imported_names(path: Path) -> set[str]:
    """Top-level module names imported anywhere in a file or a package folder."""
    files = [path] if path.is_file() else sorted(path.rglob("*.py")) if path.is_dir() else []
    names = set()
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"), str(file))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def build(out_dir: str | Path, options: BuildOptions = BuildOptions(), root: Path = ROOT) -> Path:
    """Write the Space into `out_dir` (empty, new, or an earlier build, which is replaced)."""
    options.check()
    out = Path(out_dir).resolve()
    _prepare(out)
    for package in shipped_packages(root):
        _copy_package(root / package, out / package, root)
    for name in TOP_LEVEL_FILES:
        if (root / name).is_file():
            shutil.copy2(root / name, out / name)
    shutil.copy2(TEMPLATES / "space_app.py", out / metadata.APP_FILE)
    (out / "requirements.txt").write_text(requirements.render(root / "pyproject.toml", options.hardware))
    (out / "packages.txt").write_text("\n".join(metadata.SYSTEM_PACKAGES) + "\n")
    (out / "space_config.json").write_text(json.dumps({"env": {"TTS_MODEL_ID": options.model}}, indent=1) + "\n")
    (out / "README.md").write_text(readme(options), encoding="utf-8")
    return out


def _prepare(out: Path) -> None:
    """Make `out` an empty folder, refusing to wipe anything but an earlier build (the
    checkout itself, or any folder holding it, is non-empty and has no build marker)."""
    if out.exists():
        if not out.is_dir():
            raise BuildError(f"{out} exists and is not a folder")
        if any(out.iterdir()) and not (out / "space_config.json").is_file():
            raise BuildError(f"{out} is not empty and is not an earlier Space build; give a new folder")
        shutil.rmtree(out)
    out.mkdir(parents=True)


def _copy_package(src: Path, dest: Path, root: Path) -> None:
    def ignore(folder: str, names: list[str]) -> set[str]:
        rel = Path(folder).resolve().relative_to(root)
        skipped = {n for n in names if any(fnmatch.fnmatch(n, pat) for pat in IGNORED)}
        return skipped | {n for n in names if (rel / n).as_posix() in TOOL_PATHS}

    shutil.copytree(src, dest, ignore=ignore)


def readme(options: BuildOptions) -> str:
    """README.md: front matter (YAML via huggingface_hub's own card code) + the template."""
    from huggingface_hub import SpaceCardData

    data = SpaceCardData(**metadata.front_matter(model=options.model, hardware=options.hardware))
    body = (TEMPLATES / "README.md").read_text(encoding="utf-8").format(
        model=options.model, hardware=options.hardware, sdk_version=metadata.GRADIO_SDK_VERSION)
    return f"---\n{data.to_yaml()}\n---\n\n{body}"
