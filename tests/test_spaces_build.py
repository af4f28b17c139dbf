"""`python -m spaces build`: the folder is a complete Space repo and nothing else.

Front matter is read back with huggingface_hub's own card parser, the pins are checked
against pyproject.toml, tools/bootstrap.sh and the engine's checkpoint file list, and the
CPU requirements are resolved by pip against the package registry (slow).
"""
from __future__ import annotations

import json
import py_compile
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from huggingface_hub import SpaceCard, SpaceHardware, metadata_load
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the build tooling runs from the checkout, like `python -m spaces`

from spaces import metadata  # noqa: E402
from spaces.build import BuildError, BuildOptions, build, shipped_packages  # noqa: E402

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def run_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "spaces", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def space(tmp_path_factory) -> Path:
    """A ZeroGPU build made through the command line, as a user would."""
    out = tmp_path_factory.mktemp("space") / "zero"
    result = run_cli("build", str(out))
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def cpu_space(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("space") / "cpu", BuildOptions(hardware="cpu-basic"))


def test_the_folder_holds_the_space_and_nothing_else(space):
    top = sorted(p.name for p in space.iterdir())
    packages = shipped_packages(ROOT)
    expected = {"README.md", "requirements.txt", "packages.txt", metadata.APP_FILE, "space_config.json", "app.py",
                *packages}
    assert set(top) - {"LICENSE"} == expected
    assert "spaces" not in top  # never shadows Hugging Face's `spaces` package in the Space
    assert {"engine", "voices_db", "ingest", "space_runtime"} <= set(packages)
    for path in space.rglob("*"):
        rel = path.relative_to(space).as_posix()
        assert not re.search(r"(^|/)(tests?|tools|fixtures|__pycache__)(/|$)", rel), rel
        assert not re.search(r"(^|/)test_[^/]*\.py$|\.pyc$|(^|/)\.", rel), rel
    assert not (space / "engine" / "bench").exists()
    assert not (space / "ingest" / "bench.py").exists()


def test_every_source_file_of_the_packages_is_shipped(space):
    skipped = {"engine/bench", "ingest/bench.py"}
    for package in shipped_packages(ROOT):
        for path in (ROOT / package).rglob("*"):
            rel = path.relative_to(ROOT).as_posix()
            hidden = any(part.startswith(".") for part in path.relative_to(ROOT).parts)
            if path.is_file() and "__pycache__" not in rel and not hidden and not any(rel.startswith(s) for s in skipped):
                assert (space / rel).read_bytes() == path.read_bytes(), rel


def test_every_python_file_compiles(space, tmp_path):
    for path in space.rglob("*.py"):
        py_compile.compile(str(path), cfile=str(tmp_path / "x.pyc"), doraise=True)


def test_front_matter_parses_with_huggingface_hubs_parser(space):
    data = metadata_load(space / "README.md")
    card = SpaceCard.load(space / "README.md")
    assert card.data.to_dict() == data
    assert data["sdk"] == "gradio"
    assert data["sdk_version"] == metadata.GRADIO_SDK_VERSION
    assert data["python_version"] == metadata.PYTHON_VERSION == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert (space / data["app_file"]).is_file()
    assert data["suggested_hardware"] == "zero-a10g" and data["suggested_hardware"] in {h.value for h in SpaceHardware}
    assert data["models"] == [metadata.DEFAULT_MODEL]
    assert len(data["short_description"]) <= 60  # the Hub's limit
    assert f"https://huggingface.co/{metadata.DEFAULT_MODEL}" in card.text and "storage bucket" in card.text


def test_sdk_version_satisfies_pyproject():
    (spec,) = [Requirement(d) for d in PYPROJECT["project"]["dependencies"] if d.startswith("gradio")]
    assert spec.specifier.contains(metadata.GRADIO_SDK_VERSION)


def test_preload_names_exactly_the_checkpoint_files_the_engine_reads(space, fixtures_dir):
    from engine.checkpoint import CHECKPOINT_PATTERNS

    (entry,) = metadata_load(space / "README.md")["preload_from_hub"]
    repo, files = entry.split(" ")
    assert repo == metadata.DEFAULT_MODEL
    files = files.split(",")
    assert set(files) <= set(CHECKPOINT_PATTERNS)
    # every fixed name the loader fetches that a single-file checkpoint has (the tiny
    # fixture is in the official layout)
    present = {p for p in CHECKPOINT_PATTERNS if "*" not in p and (fixtures_dir / "tiny_a" / p).is_file()}
    assert set(files) == present


def test_model_option_changes_models_preload_and_default(tmp_path):
    other = "Qwen/Qwen3-TTS-12Hz-1.7B-Base"
    out = build(tmp_path / "s", BuildOptions(model=other, hardware="a10g-small"))
    data = metadata_load(out / "README.md")
    assert data["models"] == [other] and data["preload_from_hub"][0].startswith(other + " ")
    assert data["suggested_hardware"] == "a10g-small"
    assert json.loads((out / "space_config.json").read_text()) == {"env": {"TTS_MODEL_ID": other}}


def _requirements(path: Path) -> dict[str, Requirement]:
    lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith(("#", "--"))]
    return {canonicalize_name(Requirement(ln).name): Requirement(ln) for ln in lines}


def test_requirements_follow_pyproject_with_torch_for_the_hardware(space, cpu_space):
    deps = {canonicalize_name(Requirement(d).name): Requirement(d) for d in PYPROJECT["project"]["dependencies"]}
    for folder in (space, cpu_space):
        reqs = _requirements(folder / "requirements.txt")
        assert set(reqs) == set(deps) - {"gradio"}  # gradio comes from sdk_version
        for name, req in reqs.items():
            if name != "torch":
                assert str(req) == str(deps[name])  # specifiers, extras and markers kept
        assert str(reqs["torch"].specifier) == f"=={metadata.TORCH_VERSION}"
    assert metadata.TORCH_CPU_INDEX not in (space / "requirements.txt").read_text()  # CUDA wheel from PyPI
    assert f"--extra-index-url {metadata.TORCH_CPU_INDEX}" in (cpu_space / "requirements.txt").read_text()
    assert (space / "packages.txt").read_text().split() == ["ffmpeg"]


def test_torch_pin_is_the_one_the_project_installs():
    bootstrap = (ROOT / "tools" / "bootstrap.sh").read_text()
    assert f'"torch=={metadata.TORCH_VERSION}"' in bootstrap
    (spec,) = [Requirement(d) for d in PYPROJECT["project"]["dependencies"] if d.startswith("torch")]
    assert spec.specifier.contains(metadata.TORCH_VERSION)


def test_bad_options_and_unsafe_folders_are_refused(tmp_path):
    with pytest.raises(BuildError, match="unknown hardware"):
        build(tmp_path / "a", BuildOptions(hardware="gpu-9000"))
    with pytest.raises(BuildError, match="Hub repo id"):
        build(tmp_path / "b", BuildOptions(model="not-a-repo-id"))
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    result = run_cli("build", str(precious))
    assert result.returncode == 2 and "not an earlier Space build" in result.stderr
    assert (precious / "notes.txt").read_text() == "keep me"
    result = run_cli("build", str(ROOT))
    assert result.returncode == 2 and (ROOT / "pyproject.toml").is_file()


def test_an_earlier_build_is_replaced(tmp_path):
    out = build(tmp_path / "s", BuildOptions())
    (out / "stale.py").write_text("x = 1\n")
    build(out, BuildOptions(hardware="cpu-basic"))
    assert not (out / "stale.py").exists()
    assert metadata_load(out / "README.md")["suggested_hardware"] == "cpu-basic"


@pytest.mark.slow
def test_cpu_requirements_resolve_with_pip_to_the_cpu_torch(cpu_space, tmp_path):
    """A real resolution against the registry. torch comes from the CPU index
    (on this machine: the CPU wheel pip's find-links hold), so no CUDA wheels are pulled."""
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--retries", "0",
         "--report", str(report), "-r", str(cpu_space / "requirements.txt"),
         f"gradio=={metadata.GRADIO_SDK_VERSION}"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    installed = {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"]
                 for i in json.loads(report.read_text())["install"]}
    assert installed["torch"].split("+")[0] == metadata.TORCH_VERSION
    assert installed["gradio"] == metadata.GRADIO_SDK_VERSION
    assert not [name for name in installed if name.startswith("nvidia-")]
    for name in _requirements(cpu_space / "requirements.txt"):
        assert name in installed
