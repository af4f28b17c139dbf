"""Checkpoint files: finding them (local folder or Hub), reading safetensors headers and
tensors with clear errors, and strict loading of a module from them.

`load_strict` builds the module on the meta device (so the weights are never held twice),
checks every tensor name and shape before reading any data, and raises one
`CheckpointError` listing every missing, unexpected and mis-shaped tensor. The name maps
themselves live in engine/loader.py, one per component.

Convention for modules loaded here: buffers that are computed rather than stored (rotary
tables, mel filterbanks, KV caches) are non-persistent and created by a method
`init_buffers(device)`, which `load_strict` calls on every submodule after the weights are
assigned (a module built on the meta device has no real storage for them otherwise).
"""
from __future__ import annotations

import json
import os
import re
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Iterable, Mapping

import torch
from torch import nn

from engine.errors import CheckpointError

# Files a 12 Hz Base checkpoint needs; nothing else is fetched from the Hub.
CHECKPOINT_PATTERNS = (
    "config.json",
    "generation_config.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "model.safetensors",
    "model-*.safetensors",
    "model.safetensors.index.json",
    "speech_tokenizer/config.json",
    "speech_tokenizer/model.safetensors",
    "speech_tokenizer/model-*.safetensors",
    "speech_tokenizer/model.safetensors.index.json",
)

# ---------------------------------------------------------------------------------------
# resolving a local directory or a Hub id


def resolve_checkpoint(repo_id_or_dir: str | os.PathLike, revision: str | None = None,
                       patterns: Iterable[str] = CHECKPOINT_PATTERNS) -> Path:
    """Return a local directory holding the checkpoint.

    An existing directory is used as is. Anything else is taken as a Hugging Face Hub repo
    id and resolved with `huggingface_hub.snapshot_download`, fetching only `patterns` and
    honouring the Hub cache and `HF_HUB_OFFLINE` (offline: the cached snapshot or an error).
    """
    path = Path(repo_id_or_dir).expanduser()
    if path.is_dir():
        if revision is not None:
            raise CheckpointError(f"revision={revision!r} was given for a local directory {path}; "
                                  "revisions apply to Hub repo ids only")
        return path
    name = str(repo_id_or_dir)
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", name):
        raise CheckpointError(f"{name!r} is neither an existing directory nor a Hub repo id "
                              "of the form 'owner/name'")
    return _snapshot(name, revision, list(patterns))


def _snapshot(repo_id: str, revision: str | None, patterns: list[str]) -> Path:
    import huggingface_hub
    from huggingface_hub import constants, errors as hf_errors

    try:
        folder = huggingface_hub.snapshot_download(repo_id, revision=revision, allow_patterns=patterns)
    except hf_errors.RevisionNotFoundError as e:
        raise CheckpointError(f"revision {revision!r} of {repo_id!r} does not exist on the Hub") from e
    except (hf_errors.RepositoryNotFoundError, hf_errors.GatedRepoError) as e:
        raise CheckpointError(f"Hub repo {repo_id!r} not found or not accessible "
                              f"(private or gated repos need a token): {e}") from e
    except hf_errors.LocalEntryNotFoundError as e:
        offline = " (HF_HUB_OFFLINE is set)" if constants.HF_HUB_OFFLINE else ""
        raise CheckpointError(f"{repo_id!r} (revision {revision or 'main'}) is not in the Hugging Face "
                              f"cache and cannot be downloaded{offline}: {e}") from e
    except (hf_errors.HfHubHTTPError, OSError, ValueError) as e:
        raise CheckpointError(f"could not fetch {repo_id!r} from the Hub: {e}") from e
    return Path(folder)


def require_file(folder: Path, name: str) -> Path:
    """`folder / name`, or a CheckpointError naming the missing file."""
    path = Path(folder) / name
    if not path.is_file():
        raise CheckpointError(f"checkpoint file missing: {path}")
    return path


def read_json(folder: Path, name: str) -> dict:
    """Parse a JSON file of the checkpoint with a clear error for a missing or broken file."""
    path = require_file(folder, name)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from e


# ---------------------------------------------------------------------------------------
# reading safetensors


# safetensors dtype names -> torch dtypes
_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}


class TensorSource:
    """Read-only view of the tensors in one or more safetensors files.

    Names, shapes and dtypes come from the headers alone (validated by the safetensors
    library: a truncated or corrupt file is refused before anything is read), so a checkpoint
    can be checked completely before any tensor data is read. `get` reads one tensor into
    fresh memory with a plain file read, not through a memory map: mapped pages of the file
    would count as resident on top of the copies made from them (dtype casts, packed
    weights), doubling the peak. Use as a context manager (closes the files).
    """

    def __init__(self, files: list[Path]):
        from safetensors import SafetensorError, safe_open

        self._stack = ExitStack()
        self._where: dict[str, tuple] = {}  # key -> (file object, absolute offset, size, dtype, shape)
        self.files = files
        for file in files:
            try:
                with safe_open(str(file), framework="pt", device="cpu"):
                    pass  # validation only: header, offsets, file length
                fh = self._stack.enter_context(open(file, "rb"))
                header_len = int.from_bytes(fh.read(8), "little")
                header = json.loads(fh.read(header_len))
            except (SafetensorError, OSError, ValueError) as e:
                self._stack.close()
                raise CheckpointError(f"cannot read {file}: {e} (truncated or corrupt download? "
                                      "delete it and fetch it again)") from e
            for key, info in header.items():
                if key == "__metadata__":
                    continue
                if info["dtype"] not in _DTYPES:
                    self._stack.close()
                    raise CheckpointError(f"{file}: tensor {key!r} has unsupported dtype {info['dtype']}")
                begin, end = info["data_offsets"]
                self._where[key] = (fh, 8 + header_len + begin, end - begin, _DTYPES[info["dtype"]],
                                    tuple(info["shape"]))

    @classmethod
    def from_dir(cls, folder: Path, stem: str = "model") -> "TensorSource":
        """Open `stem.safetensors`, or every shard listed in `stem.safetensors.index.json`."""
        folder = Path(folder)
        single = folder / f"{stem}.safetensors"
        index = folder / f"{stem}.safetensors.index.json"
        if single.is_file():
            return cls([single])
        if index.is_file():
            weight_map = read_json(folder, index.name).get("weight_map", {})
            return cls([require_file(folder, name) for name in sorted(set(weight_map.values()))])
        raise CheckpointError(f"checkpoint file missing: {single}")

    def __enter__(self) -> "TensorSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()

    def keys(self) -> list[str]:
        return list(self._where)

    def __contains__(self, key: str) -> bool:
        return key in self._where

    def shape(self, key: str) -> tuple[int, ...]:
        return self._where[key][4]

    def get(self, key: str) -> torch.Tensor:
        fh, offset, size, dtype, shape = self._where[key]
        tensor = torch.empty(shape, dtype=dtype)
        if size:
            buffer = memoryview(tensor.reshape(-1).view(torch.uint8).numpy())
            try:
                fh.seek(offset)
                got = fh.readinto(buffer)
            except OSError as e:
                raise CheckpointError(f"cannot read tensor {key!r} from {fh.name}: {e}") from e
            if got != size or buffer.nbytes != size:
                raise CheckpointError(f"{fh.name}: tensor {key!r} is truncated or corrupt "
                                      f"({got} of {size} bytes, {buffer.nbytes} expected from its shape)")
        return tensor


# ---------------------------------------------------------------------------------------
# strict loading

KeyMap = Callable[[str], "str | None"]


def prefix_map(rules: Mapping[str, str]) -> KeyMap:
    """A key map from an ordered table of checkpoint-prefix -> module-prefix rewrites.

    A key matching no rule maps to None (reported as unexpected by `load_strict`).
    Rules are tried in order, so put longer prefixes first.
    """
    items = list(rules.items())

    def key_map(key: str) -> str | None:
        for src, dst in items:
            if key.startswith(src):
                return dst + key[len(src):]
        return None

    return key_map


def regex_map(rules: Iterable[tuple[str, str]]) -> KeyMap:
    """A key map from ordered (regex, replacement) rules; the first full match wins."""
    compiled = [(re.compile(pattern), repl) for pattern, repl in rules]

    def key_map(key: str) -> str | None:
        for pattern, repl in compiled:
            if pattern.fullmatch(key):
                return pattern.sub(repl, key)
        return None

    return key_map


def load_strict(build: Callable[[], nn.Module], source: TensorSource, key_map: KeyMap, *,
                prefix: str, component: str, device=None, dtype: torch.dtype | None = None,
                keep_dtype: Callable[[str], bool] | None = None) -> nn.Module:
    """Build a module on the meta device and fill it from the checkpoint, strictly.

    build: constructs the module (called under `torch.device("meta")`).
    source: the checkpoint's tensors; only keys starting with `prefix` belong to this
        component, and every one of them must map (via `key_map`) to a module key.
    component: a human name for messages ("talker", "speaker encoder", ...).
    dtype: floating tensors are cast to it (None keeps the stored dtype), except module
        keys for which `keep_dtype(key)` is true (kept in float32 if stored so).
    Raises CheckpointError listing every missing, unexpected and mis-shaped tensor.
    """
    device = torch.device(device or "cpu")
    with torch.device("meta"):
        module = build()
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    pairs = _check_names_and_shapes(source, key_map, expected, prefix=prefix, component=component)
    state = {}
    for ckpt_key, module_key in pairs.items():
        tensor = source.get(ckpt_key)
        if tensor.is_floating_point() and dtype is not None and not (keep_dtype and keep_dtype(module_key)):
            tensor = tensor.to(dtype)
        state[module_key] = tensor.to(device)
        del tensor
    module.load_state_dict(state, strict=True, assign=True)
    del state
    _init_buffers(module, device)
    return module.eval()


def _check_names_and_shapes(source: TensorSource, key_map: KeyMap, expected: dict[str, tuple], *,
                            prefix: str, component: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    unexpected, misshaped = [], []
    for ckpt_key in source.keys():
        if not ckpt_key.startswith(prefix):
            continue
        module_key = key_map(ckpt_key)
        if module_key is None or module_key not in expected:
            unexpected.append(ckpt_key)
            continue
        found = source.shape(ckpt_key)
        if found != expected[module_key]:
            misshaped.append(f"{ckpt_key}: checkpoint {list(found)}, model expects {list(expected[module_key])}")
        pairs[ckpt_key] = module_key
    missing = sorted(set(expected) - set(pairs.values()))
    if missing or unexpected or misshaped:
        lines = [f"the {component} weights in {', '.join(str(f) for f in source.files)} do not match the model:"]
        lines += [f"  missing: {k}" for k in missing]
        lines += [f"  unexpected: {k}" for k in unexpected]
        lines += [f"  wrong shape: {k}" for k in misshaped]
        raise CheckpointError("\n".join(lines))
    return pairs


def _init_buffers(module: nn.Module, device: torch.device) -> None:
    for sub in module.modules():
        init = getattr(sub, "init_buffers", None)
        if callable(init):
            init(device)
    left = [name for name, t in list(module.named_parameters()) + list(module.named_buffers()) if t.is_meta]
    if left:
        raise CheckpointError(f"internal: tensors left uninitialised after loading: {left[:10]}")


class TensorSubset:
    """A TensorSource view hiding the keys `drop(key)` is true for (same read interface)."""

    def __init__(self, source: TensorSource, drop: Callable[[str], bool]):
        self._source, self.files = source, source.files
        self._keys = [k for k in source.keys() if not drop(k)]

    def keys(self) -> list[str]:
        return list(self._keys)

    def shape(self, key: str) -> tuple[int, ...]:
        return self._source.shape(key)

    def get(self, key: str) -> torch.Tensor:
        return self._source.get(key)
