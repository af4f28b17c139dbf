"""Errors the engine raises on purpose.

Every failure a user can cause (a wrong path, a broken download, a checkpoint of another
model family, bad audio, out-of-range options) surfaces as a subclass of `EngineError`
with a message a person can act on, never as a traceback from deep inside torch.
"""
from __future__ import annotations


class EngineError(Exception):
    """Base class of every error the engine raises deliberately."""


class CheckpointError(EngineError):
    """A checkpoint cannot be found, read, or does not match the model it claims to be
    (missing file, truncated/corrupt safetensors, missing/unexpected/mis-shaped tensors)."""


class UnsupportedModelError(CheckpointError):
    """A readable checkpoint of a model this engine does not run (e.g. a 25 Hz tokenizer,
    CustomVoice or VoiceDesign instead of a 12 Hz Base model)."""


class InvalidParameterError(EngineError, ValueError):
    """An option passed by the caller is out of range (sampling, language, voice, text)."""


class AudioInputError(EngineError, ValueError):
    """Audio given to the engine is unusable (empty, wrong shape, silent, bad rate)."""
