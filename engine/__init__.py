"""Qwen3-TTS inference in plain PyTorch (no transformers at run time).

    from engine import load_model, SamplingParams
    model = load_model("Qwen/Qwen3-TTS-12Hz-0.6B-Base")   # or a local directory
    codes = model.generate_codes("Hello!", voice=prompt, language="english",
                                 sampling=SamplingParams(seed=1))
"""
from engine.errors import (AudioInputError, CheckpointError, EngineError, InvalidParameterError,
                           UnsupportedModelError)
from engine.model import TTSModel, load_model
from engine.sampling import SamplingParams
from engine.voice_prompt import VoicePrompt

__all__ = ["load_model", "TTSModel", "SamplingParams", "VoicePrompt", "EngineError", "CheckpointError",
           "UnsupportedModelError", "InvalidParameterError", "AudioInputError"]
