"""What every part of the app shares: the model host, the voice library, the access guard
and the synthesis options common to the WebSocket, the OpenAI endpoint and the UI."""
from __future__ import annotations

from dataclasses import dataclass

from engine.errors import InvalidParameterError
from engine.languages import AUTO, LANGUAGES, normalize_language
from engine.sampling import SamplingParams
from webapp.auth import Guard
from webapp.model_host import ModelHost
from webapp.voices import VoiceService

# The seed's capability list: display names, "Auto" first.
LANGUAGE_NAMES = ["Auto"] + [name.title() for name in LANGUAGES]

# Client-facing sampling option names -> SamplingParams fields.
SAMPLING_FIELDS = {
    "temperature": "temperature", "topK": "top_k", "topP": "top_p",
    "repetitionPenalty": "repetition_penalty", "seed": "seed", "maxFrames": "max_new_tokens",
    "top_k": "top_k", "top_p": "top_p", "repetition_penalty": "repetition_penalty",
    "max_frames": "max_new_tokens", "max_new_tokens": "max_new_tokens",
}
MAX_FRAMES = 4096  # about 5.5 minutes of audio per segment, far above the length guard


@dataclass
class AppContext:
    """The shared objects, plus request limits in seconds."""

    host: ModelHost
    voices: VoiceService
    guard: Guard
    request_timeout_s: float = 600.0  # a whole request, queue wait included

    def language(self, value) -> str:
        """Canonical language name ("english", ..., "auto"); raises InvalidParameterError."""
        if value is None or value == "":
            return AUTO
        return normalize_language(value)

    def sampling(self, overrides: dict | None):
        """SamplingParams from the model's defaults and client options (see SAMPLING_FIELDS).

        Raises InvalidParameterError with the offending option named."""
        model = self.host.require_ready()
        return model.default_sampling(**sampling_changes(overrides))


def sampling_changes(overrides: dict | None) -> dict:
    """Client sampling options -> SamplingParams keyword changes (validated types and ranges
    are checked by SamplingParams itself; unknown keys are refused here)."""
    if overrides is None:
        return {}
    if not isinstance(overrides, dict):
        raise InvalidParameterError("sampling must be an object such as {\"temperature\": 0.8, \"seed\": 1}")
    changes = {}
    for key, value in overrides.items():
        field = SAMPLING_FIELDS.get(key)
        if field is None:
            raise InvalidParameterError(f"unknown sampling option {key!r}; use {', '.join(list(SAMPLING_FIELDS)[:6])}")
        if value is None:
            continue
        if field == "seed" and isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            continue  # a negative seed means "random"
        if field in ("top_k", "seed", "max_new_tokens") and isinstance(value, float) and value.is_integer():
            value = int(value)
        if field == "max_new_tokens" and isinstance(value, int) and not isinstance(value, bool) and value > MAX_FRAMES:
            raise InvalidParameterError(f"maxFrames must be at most {MAX_FRAMES}, got {value}")
        changes[field] = value
    SamplingParams(**changes)  # types and ranges, checked now rather than at the first speak
    return changes
