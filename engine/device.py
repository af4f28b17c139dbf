"""Where and how the model runs: device, dtype and model id.

Each comes from an explicit argument, else the environment variables of the seed spec
(TTS_DEVICE, TTS_DTYPE, TTS_MODEL_ID), else the defaults: CUDA + bfloat16 when a GPU is
present, else CPU + bfloat16 where oneDNN has packed bf16 linears (2-3x faster than float32
per frame in engine/bench/talker.py and e2e.py), else CPU + float32.
"""
from __future__ import annotations

import os

import torch

from engine.errors import InvalidParameterError
from engine.layers import cpu_bf16_packing_available

DEFAULT_MODEL_ID = "Qwen/Qwen3-TTS-12Hz-0.6B-Base"
_DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
           "float16": torch.float16, "half": torch.float16, "fp32": torch.float32,
           "float32": torch.float32, "float": torch.float32}


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """`device`, else $TTS_DEVICE, else "cuda" when available, else "cpu"."""
    device = device or os.environ.get("TTS_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except RuntimeError as e:
        raise InvalidParameterError(f"bad device {device!r}: {e}") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidParameterError(f"device {device} was asked for but no CUDA GPU is available")
    return device


def default_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on CUDA and on CPUs where oneDNN runs packed bf16 linears, else float32."""
    if device.type == "cuda" or (device.type == "cpu" and cpu_bf16_packing_available()):
        return torch.bfloat16
    return torch.float32


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """`dtype`, else $TTS_DTYPE, else `default_dtype(device)`."""
    dtype = dtype or os.environ.get("TTS_DTYPE") or default_dtype(device)
    if isinstance(dtype, torch.dtype):
        return dtype
    key = str(dtype).lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise InvalidParameterError(f"bad dtype {dtype!r}; use one of {sorted(_DTYPES)}")
    return _DTYPES[key]


def resolve_model_id(model_id: str | None = None) -> str:
    """`model_id`, else $TTS_MODEL_ID, else the 0.6B Base model on the Hub."""
    return model_id or os.environ.get("TTS_MODEL_ID") or DEFAULT_MODEL_ID
