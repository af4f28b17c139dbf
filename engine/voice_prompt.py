"""Voice prompts: what a reference clip contributes to synthesis, computed once and stored.

A `VoicePrompt` holds the speaker x-vector, and in ICL mode the reference clip's codec codes
and transcript (the model continues the reference speech), plus the model id and revision
it was made with: codes and x-vectors of one checkpoint mean nothing to another. It
serializes to safetensors bytes (tensors + string metadata) for the voice library's cache.

`build_voice_prompt` is the engine side of `model.create_voice_prompt(wav, sr, transcript)`,
equal to the official `Qwen3TTSModel.create_voice_clone_prompt` (same resampler, x-vector and
codes), with the input checks the official code lacks.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from engine.audio import append_silence, load_reference, resample, to_mono
from engine.errors import InvalidParameterError

FORMAT = "qwen3-tts-voice-prompt"
FORMAT_VERSION = 1
NUM_CODE_GROUPS = 16  # codebooks per 12 Hz frame
MODES = ("icl", "xvector")


class VoicePromptError(InvalidParameterError):
    """A voice prompt (or its serialized bytes) is malformed or belongs to another model."""


@dataclass
class VoicePrompt:
    """x-vector [D] float32; ref_codes [T, 16] int64 in ICL mode, None in x-vector mode.

    mode: "icl" (x-vector + reference codes + transcript) or "xvector" (x-vector only).
    model_id / revision: the checkpoint that computed it. meta: free-form string metadata
    (e.g. hashes of the audio and transcript), carried through to_bytes/from_bytes.
    """

    xvector: torch.Tensor
    ref_codes: torch.Tensor | None
    ref_text: str | None
    mode: str
    model_id: str
    revision: str | None = None
    ref_seconds: float | None = None  # duration of the reference clip
    meta: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        self.xvector = _checked_xvector(self.xvector)
        if self.mode not in MODES:
            raise VoicePromptError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not isinstance(self.model_id, str) or not self.model_id:
            raise VoicePromptError("a voice prompt needs the id of the model that made it")
        if self.ref_text is not None and not isinstance(self.ref_text, str):
            raise VoicePromptError(f"ref_text must be a string or None, got {type(self.ref_text).__name__}")
        if self.mode == "icl":
            self.ref_codes = _checked_codes(self.ref_codes)
            if not self.ref_text or not self.ref_text.strip():
                raise VoicePromptError("an ICL voice prompt needs the reference transcript")
        elif self.ref_codes is not None:
            raise VoicePromptError("an x-vector-only voice prompt carries no reference codes")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.meta.items()):
            raise VoicePromptError("meta must map strings to strings")

    @property
    def is_icl(self) -> bool:
        return self.mode == "icl"

    def check_model(self, model_id: str, revision: str | None = None) -> None:
        """Raise VoicePromptError unless this prompt was made by `model_id` (and `revision`)."""
        if model_id != self.model_id or (revision is not None and self.revision not in (None, revision)):
            made = self.model_id + (f"@{self.revision}" if self.revision else "")
            want = model_id + (f"@{revision}" if revision else "")
            raise VoicePromptError(f"this voice prompt was made with {made}, not {want}; "
                                   "create it again with the loaded model")

    def to_bytes(self) -> bytes:
        """safetensors bytes: tensors `xvector` (+ `ref_codes`); the other fields as JSON in the
        metadata entry named FORMAT."""
        tensors = {"xvector": self.xvector.detach().cpu().contiguous()}
        if self.ref_codes is not None:
            tensors["ref_codes"] = self.ref_codes.detach().cpu().contiguous()
        header = {"format": FORMAT, "format_version": FORMAT_VERSION, "mode": self.mode,
                  "model_id": self.model_id, "revision": self.revision, "ref_text": self.ref_text,
                  "ref_seconds": self.ref_seconds, "meta": self.meta}
        # one metadata entry (sorted JSON): safetensors orders several at random, and equal
        # prompts should give equal bytes
        return st_save(tensors, metadata={FORMAT: json.dumps(header, ensure_ascii=False, sort_keys=True)})

    @classmethod
    def from_bytes(cls, data: bytes) -> "VoicePrompt":
        """Inverse of `to_bytes`; VoicePromptError for anything that is not a valid prompt."""
        try:
            f = json.loads(_safetensors_metadata(data)[FORMAT])
        except (KeyError, TypeError, json.JSONDecodeError):
            raise VoicePromptError("these bytes are not a serialized voice prompt") from None
        version = f.get("format_version") if isinstance(f, dict) else None
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise VoicePromptError(f"voice prompt format version {version!r} is not one this engine reads "
                                   f"(<= {FORMAT_VERSION}); upgrade the engine")
        try:
            tensors = st_load(bytes(data))
            return cls(xvector=tensors["xvector"], ref_codes=tensors.get("ref_codes"), ref_text=f["ref_text"],
                       mode=f["mode"], model_id=f["model_id"], revision=f.get("revision"),
                       ref_seconds=f.get("ref_seconds"), meta=dict(f.get("meta") or {}))
        except VoicePromptError:
            raise
        except Exception as e:  # corrupt payload of any kind
            raise VoicePromptError(f"corrupt voice prompt bytes: {e}") from e


def _checked_xvector(x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 1 or x.numel() == 0 or not x.is_floating_point():
        raise VoicePromptError(f"xvector must be a non-empty 1-D float tensor, got "
                               f"{getattr(x, 'shape', type(x).__name__)}")
    x = x.detach().to(torch.float32)
    if not torch.isfinite(x).all():
        raise VoicePromptError("xvector contains NaN or infinite values")
    return x


def _checked_codes(codes) -> torch.Tensor:
    if not isinstance(codes, torch.Tensor) or codes.dim() != 2 or codes.shape[1] != NUM_CODE_GROUPS \
            or codes.shape[0] == 0 or codes.is_floating_point() or codes.is_complex():
        raise VoicePromptError(f"ref_codes must be an integer tensor [frames >= 1, {NUM_CODE_GROUPS}], "
                               f"got {getattr(codes, 'shape', type(codes).__name__)}")
    if codes.min() < 0:
        raise VoicePromptError("ref_codes contain negative codes")
    return codes.detach().to(torch.long)


def _safetensors_metadata(data: bytes) -> dict:
    """The `__metadata__` of safetensors bytes, read from the header without the tensors."""
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) < 8:
        raise VoicePromptError("voice prompt bytes are empty or truncated")
    n = int.from_bytes(bytes(data[:8]), "little")
    if n > len(data) - 8:
        raise VoicePromptError("voice prompt bytes are truncated")
    try:
        header = json.loads(bytes(data[8:8 + n]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise VoicePromptError("voice prompt bytes have a corrupt header") from e
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else {}


def build_voice_prompt(wav, sr: int, transcript: str | None = None, *, speaker_encoder, codec_encoder,
                       model_id: str, revision: str | None = None, x_vector_only: bool | None = None,
                       reference_silence_s: float = 0.0, meta: dict[str, str] | None = None) -> VoicePrompt:
    """Reference clip -> VoicePrompt (what `model.create_voice_prompt` does).

    wav: numpy array or tensor, mono [N] or [N, C] / [C, N], any rate `sr` (resampled
        band-limited to the encoders' 24 kHz). Raises AudioInputError when unusable.
    transcript: what is said in the clip. Given: an ICL prompt (x-vector + codes + text);
        None: an x-vector-only prompt. `x_vector_only=True` forces x-vector mode (the text
        is kept as metadata); codec_encoder may then be None.
    speaker_encoder / codec_encoder: `SpeakerEncoder` / `CodecEncoder` of the loaded model.
    reference_silence_s: silence appended to the clip before it is encoded into reference
        codes (engine.audio.REFERENCE_SILENCE_S explains why); the x-vector is computed on
        the clip as given, as the official pipeline does. 0 (the default) is the official
        behaviour.
    """
    if x_vector_only is None:
        x_vector_only = transcript is None
    if not x_vector_only and (not isinstance(transcript, str) or not transcript.strip()):
        raise VoicePromptError("an ICL voice prompt needs the transcript of the reference clip "
                               "(or pass transcript=None for an x-vector-only prompt)")
    if not x_vector_only and codec_encoder is None:
        raise VoicePromptError("an ICL voice prompt needs the codec encoder")
    spk_rate = speaker_encoder.cfg.sample_rate
    wav_spk = load_reference(wav, sr, spk_rate)  # checked; raises AudioInputError
    xvector = speaker_encoder.embed(torch.from_numpy(wav_spk)).cpu()
    codes = None
    if not x_vector_only:
        codec_rate = codec_encoder.cfg.sampling_rate
        wav_codec = wav_spk if codec_rate == spk_rate else resample(to_mono(wav), int(sr), codec_rate)
        wav_codec = append_silence(wav_codec, codec_rate, reference_silence_s)
        codes = codec_encoder.encode(torch.from_numpy(wav_codec)).cpu()
    return VoicePrompt(xvector=xvector, ref_codes=codes, ref_text=transcript,
                       mode="xvector" if x_vector_only else "icl", model_id=model_id, revision=revision,
                       ref_seconds=round(wav_spk.shape[0] / spk_rate, 3), meta=dict(meta or {}))
