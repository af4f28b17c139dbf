"""`load_model` and `TTSModel`: the engine's public entry points.

Loading is one function per component (config, generation defaults, text tokenizer, talker +
code predictor, speaker encoder), so the codec parts (speech_tokenizer/) can be attached to
the same `TTSModel` by their own loaders (`model.codec_decoder`, `model.codec_encoder`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import torch

import numpy as np

from engine import streaming
from engine.audio import REFERENCE_SILENCE_S
from engine.codec_config import CodecConfig
from engine.codec_decoder import StreamingDecoder
from engine.config import GenerationDefaults, TTSConfig
from engine.errors import InvalidParameterError
from engine.generation import generate, iter_frames
from engine.languages import AUTO, normalize_language
from engine.device import resolve_device, resolve_dtype
from engine.layers import pack_linears_for_cpu
from engine.checkpoint import TensorSource, read_json, resolve_checkpoint
from engine.loader import (check_components, load_code_predictor, load_codec_decoder, load_codec_encoder,
                           load_speaker_encoder, load_talker)
from engine.prompt import PromptBuilder, TalkerPrompt
from engine.sampling import SamplingParams
from engine.text_tokenizer import TextTokenizer
from engine.voice_prompt import VoicePrompt, build_voice_prompt


def load_config(folder: Path) -> TTSConfig:
    """config.json -> TTSConfig; refuses checkpoints that are not 12 Hz Base models."""
    return TTSConfig.from_hf(read_json(folder, "config.json"))


def load_generation_defaults(folder: Path) -> GenerationDefaults:
    """generation_config.json -> GenerationDefaults (the released defaults if the file is absent)."""
    if not (Path(folder) / "generation_config.json").is_file():
        return GenerationDefaults()
    return GenerationDefaults.from_hf(read_json(folder, "generation_config.json"))


def load_talker_parts(folder: Path, config: TTSConfig, *, device, dtype):
    """(talker, code predictor) from model.safetensors, checked strictly, ready for inference
    (bfloat16 on CPU: linears pre-packed for oneDNN, see engine.layers.PackedLinear)."""
    device = torch.device(device)
    with TensorSource.from_dir(folder) as source:
        check_components(source)
        talker = load_talker(source, config.talker, device=device, dtype=dtype)
        predictor = load_code_predictor(source, config.code_predictor, device=device, dtype=dtype)
    if device.type == "cpu" and dtype == torch.bfloat16:
        pack_linears_for_cpu(talker)
        pack_linears_for_cpu(predictor)
    return talker, predictor


def load_codec_parts(folder: Path, *, device, dtype):
    """(codec config, codec decoder, codec encoder) from speech_tokenizer/.

    The decoder runs in the model's dtype (it runs every frame); the encoder stays float32:
    it runs once per voice, and its nearest-codebook search must match the official codes.
    """
    codec_dir = Path(folder) / "speech_tokenizer"
    codec = CodecConfig.from_hf(read_json(codec_dir, "config.json"))
    decoder = load_codec_decoder(codec_dir, codec, device=device, dtype=dtype)
    encoder = load_codec_encoder(codec_dir, device=device, dtype=torch.float32)
    return codec, decoder, encoder


def load_model(repo_id_or_dir: str | Path, revision: str | None = None, device=None,
               dtype: torch.dtype | None = None) -> "TTSModel":
    """Load a Qwen3-TTS 12 Hz Base checkpoint from a local directory or a Hub repo id.

    Hub ids resolve through huggingface_hub (only the needed files; the cache and
    HF_HUB_OFFLINE are honoured). device, dtype: torch values or names ("cuda", "bf16");
    default from TTS_DEVICE / TTS_DTYPE, else CUDA + bfloat16 when available, else the
    fastest CPU dtype (engine.device). Raises CheckpointError / UnsupportedModelError.
    """
    folder = resolve_checkpoint(repo_id_or_dir, revision)
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    config = load_config(folder)
    tokenizer = TextTokenizer.from_dir(folder)
    talker, predictor = load_talker_parts(folder, config, device=device, dtype=dtype)
    speaker_encoder = load_speaker_encoder(folder, config.speaker_encoder, device=device, dtype=dtype)
    codec, codec_decoder, codec_encoder = load_codec_parts(folder, device=device, dtype=dtype)
    is_local = Path(repo_id_or_dir).expanduser().is_dir()
    model = TTSModel(config=config, tokenizer=tokenizer, talker=talker, predictor=predictor,
                     speaker_encoder=speaker_encoder, generation_defaults=load_generation_defaults(folder),
                     folder=folder, model_id=str(repo_id_or_dir), revision=None if is_local else folder.name)
    model.codec_config, model.codec_decoder, model.codec_encoder = codec, codec_decoder, codec_encoder
    return model


class TTSModel:
    """A loaded model. Sub-model handles are public attributes so the codec decoder/encoder
    (and the methods using them: decode, create_voice_prompt, stream) can be attached."""

    def __init__(self, *, config: TTSConfig, tokenizer: TextTokenizer, talker, predictor, speaker_encoder=None,
                 generation_defaults: GenerationDefaults | None = None, folder: Path | None = None,
                 model_id: str = "", revision: str | None = None):
        self.config = config
        self.tokenizer = tokenizer
        self.talker = talker
        self.predictor = predictor
        self.speaker_encoder = speaker_encoder
        self.codec_config: CodecConfig | None = None  # attached by load_model (speech_tokenizer/)
        self.codec_decoder = None
        self.codec_encoder = None
        self.generation_defaults = generation_defaults or GenerationDefaults()
        self.folder = folder
        self.model_id = model_id
        self.revision = revision  # the Hub commit for a Hub id, None for a local directory
        self.prompts = PromptBuilder(config, talker, predictor)

    @property
    def device(self) -> torch.device:
        return self.talker.codec_embedding.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.talker.codec_embedding.weight.dtype

    @property
    def languages(self) -> list[str]:
        """Languages this checkpoint accepts, "auto" first."""
        return [AUTO] + self.config.talker.languages

    def default_sampling(self, **overrides) -> SamplingParams:
        """SamplingParams from the checkpoint's generation_config.json, with overrides."""
        return self.generation_defaults.sampling(**overrides)

    def language_id(self, language: str | None) -> int | None:
        """Codec id of a language name/code, None for "auto"; raises for unsupported ones."""
        name = normalize_language(language, supported=self.config.talker.language_ids)
        return None if name == AUTO else self.config.talker.language_ids[name]

    def build_prompt(self, text: str, voice=None, language: str | None = AUTO,
                     non_streaming_mode: bool = False) -> TalkerPrompt:
        """The talker prefill for `text` (voice: an object with xvector, ref_codes, ref_text, mode)."""
        if not isinstance(text, str) or not text.strip():
            raise InvalidParameterError("text to speak must be a non-empty string")
        language_id = self.language_id(language)
        xvector, ref_ids, ref_codes = self._voice_inputs(voice)
        with torch.inference_mode():
            return self.prompts.build(self.tokenizer.assistant_ids(text), language_id, xvector=xvector,
                                      ref_ids=ref_ids, ref_codes=ref_codes,
                                      non_streaming_mode=bool(non_streaming_mode))

    def _voice_inputs(self, voice):
        if voice is None:
            return None, None, None
        mode = getattr(voice, "mode", None)
        if mode not in ("icl", "xvector"):
            raise InvalidParameterError(f"voice.mode must be 'icl' or 'xvector', got {mode!r}")
        xvector = torch.as_tensor(voice.xvector)
        width = self.config.talker.decoder.hidden_size
        if xvector.shape != (width,) or not xvector.is_floating_point():
            raise InvalidParameterError(f"voice.xvector must be a float tensor [{width}] for this model, "
                                        f"got {tuple(xvector.shape)} {xvector.dtype}")
        if mode == "xvector":
            return xvector.to(self.device, self.dtype), None, None
        codes, ref_text = voice.ref_codes, voice.ref_text
        groups = self.config.talker.num_code_groups
        if codes is None or codes.dim() != 2 or codes.shape[1] != groups or codes.shape[0] < 1:
            raise InvalidParameterError(f"an ICL voice needs ref_codes [frames, {groups}], got "
                                        f"{None if codes is None else tuple(codes.shape)}")
        if int(codes.min()) < 0 or int(codes.max()) >= self.config.code_predictor.vocab_size:
            raise InvalidParameterError("voice.ref_codes hold ids outside the codebook")
        if not isinstance(ref_text, str) or not ref_text.strip():
            raise InvalidParameterError("an ICL voice needs its reference transcript (ref_text)")
        return xvector.to(self.device, self.dtype), self.tokenizer.reference_ids(ref_text), codes

    def iter_codes(self, text: str, voice=None, language: str | None = AUTO, sampling: SamplingParams | None = None,
                   non_streaming_mode: bool = False) -> Iterator[torch.Tensor]:
        """Frames as they are generated: codes [16] (long) each."""
        sampling = sampling or self.default_sampling()
        prompt = self.build_prompt(text, voice, language, non_streaming_mode)
        return iter_frames(self.talker, self.predictor, prompt, sampling, self.config.talker.codec_eos_id)

    def generate_codes(self, text: str, voice=None, language: str | None = AUTO,
                       sampling: SamplingParams | None = None, non_streaming_mode: bool = False) -> torch.Tensor:
        """Codec codes [frames, 16] (long) for `text`.

        voice: a VoicePrompt (x-vector, or x-vector + reference codes + transcript for ICL),
            or None for no speaker conditioning.
        language: a language name or code, or "auto".
        sampling: SamplingParams (default: the checkpoint's generation_config.json).
        non_streaming_mode: feed all text before the first frame instead of one token per frame.
        """
        sampling = sampling or self.default_sampling()
        prompt = self.build_prompt(text, voice, language, non_streaming_mode)
        return generate(self.talker, self.predictor, prompt, sampling, self.config.talker.codec_eos_id)

    # --- audio: the codec (speech_tokenizer/) -------------------------------------------

    @property
    def sample_rate(self) -> int:
        """Output sample rate of the codec decoder (24 kHz for the released models)."""
        self._require_codec()
        return self.codec_config.output_sample_rate

    def _require_codec(self):
        if self.codec_decoder is None:
            raise InvalidParameterError("this model was loaded without its codec decoder (speech_tokenizer/)")
        return self.codec_decoder

    def decode(self, codes: torch.Tensor, voice: VoicePrompt | None = None) -> np.ndarray:
        """Codes [frames, 16] -> float32 mono waveform in [-1, 1] at `sample_rate`.

        With an ICL `voice` the decoder is first primed with its reference codes, so the
        first frames have their acoustic context; the reference's own samples are not returned.
        """
        decoder = StreamingDecoder(self._require_codec())
        if voice is not None and voice.mode == "icl" and voice.ref_codes is not None:
            decoder.prime(voice.ref_codes)
        return decoder.push(codes).cpu().numpy()

    def create_voice_prompt(self, wav, sr: int, transcript: str | None = None, *,
                            x_vector_only: bool | None = None,
                            reference_silence_s: float = REFERENCE_SILENCE_S) -> VoicePrompt:
        """A reference clip -> VoicePrompt for `voice=`.

        wav: mono or multi-channel audio (numpy or torch) at any rate `sr`; it is resampled
            band-limited to 24 kHz and refused (AudioInputError) when empty, silent,
            non-finite or shorter than 1 s.
        transcript: what the clip says -> an ICL prompt (x-vector + reference codes + text);
            None -> an x-vector-only prompt (no codes).
        reference_silence_s: silence appended before the clip is encoded (ICL only; see
            engine.audio.REFERENCE_SILENCE_S); 0 reproduces the official prompt exactly.
        """
        with torch.inference_mode():
            return build_voice_prompt(wav, sr, transcript, speaker_encoder=self.speaker_encoder,
                                      codec_encoder=self.codec_encoder, model_id=self.model_id,
                                      revision=self.revision, x_vector_only=x_vector_only,
                                      reference_silence_s=reference_silence_s)

    stream = streaming.stream
