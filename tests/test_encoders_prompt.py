"""Voice prompts (vs the official create_voice_clone_prompt), serialization, audio checks and
the band-limited resampler."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save

from engine.audio import load_reference, resample, to_mono
from engine.errors import AudioInputError, EngineError
from engine.voice_prompt import FORMAT, FORMAT_VERSION, VoicePrompt, VoicePromptError, build_voice_prompt
from test_encoders import AUDIO, codec_encoder, cosine, read_wav, speaker_encoder


def golden(golden_dir):
    g = load_file(str(golden_dir / "encoders.safetensors"))
    with open(golden_dir / "encoders.safetensors", "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    return g, json.loads(header["__metadata__"]["info"])["speech_text"]


def make_prompt(tiny_ckpt, transcript, **kw):
    wav, sr = read_wav(AUDIO / "speech_en_22k.wav")  # espeak's own 22.05 kHz: resampling included
    return build_voice_prompt(wav, sr, transcript, speaker_encoder=speaker_encoder(tiny_ckpt),
                              codec_encoder=codec_encoder(tiny_ckpt), model_id="tiny/" + tiny_ckpt.name, **kw)


def test_icl_prompt_matches_official(tiny_ckpt, golden_dir):
    g, text = golden(golden_dir)
    prompt = make_prompt(tiny_ckpt, text)
    assert prompt.mode == "icl" and prompt.is_icl and prompt.ref_text == text
    assert torch.equal(prompt.ref_codes, g["prompt_icl_codes"].long())
    assert cosine(prompt.xvector, g["prompt_icl_xvector"]) >= 0.9999
    assert prompt.ref_seconds == pytest.approx(3.09, abs=0.01)


def test_model_create_voice_prompt_matches_official(tiny_ckpt, golden_dir):
    """The public path: load_model(...).create_voice_prompt, with the silence padding off,
    is the official create_voice_clone_prompt; with it on, only codes are appended."""
    from engine import load_model

    g, text = golden(golden_dir)
    model = load_model(tiny_ckpt, device="cpu", dtype=torch.float32)
    wav, sr = read_wav(AUDIO / "speech_en_22k.wav")
    prompt = model.create_voice_prompt(wav, sr, text, reference_silence_s=0)
    assert torch.equal(prompt.ref_codes, g["prompt_icl_codes"].long())
    assert cosine(prompt.xvector, g["prompt_icl_xvector"]) >= 0.9999
    assert prompt.model_id == str(tiny_ckpt)
    padded = model.create_voice_prompt(wav, sr, text)
    assert torch.equal(padded.xvector, prompt.xvector) and padded.ref_codes.shape[0] > prompt.ref_codes.shape[0]
    xvec = model.create_voice_prompt(wav, sr, None)
    assert xvec.ref_codes is None and cosine(xvec.xvector, g["prompt_xvec_xvector"]) >= 0.9999


def test_xvector_only_prompt_matches_official(tiny_ckpt, golden_dir):
    g, _ = golden(golden_dir)
    prompt = make_prompt(tiny_ckpt, None)
    assert prompt.mode == "xvector" and prompt.ref_codes is None and prompt.ref_text is None
    assert cosine(prompt.xvector, g["prompt_xvec_xvector"]) >= 0.9999
    forced = make_prompt(tiny_ckpt, "kept as metadata", x_vector_only=True)
    assert forced.ref_codes is None and forced.ref_text == "kept as metadata"
    assert torch.equal(forced.xvector, prompt.xvector)


def test_icl_prompt_needs_a_transcript(tiny_ckpt):
    for bad in ("", "   \n"):
        with pytest.raises(VoicePromptError, match="transcript"):
            make_prompt(tiny_ckpt, bad)


def sample_prompts():
    gen = torch.Generator().manual_seed(0)
    icl = VoicePrompt(xvector=torch.randn(32, generator=gen), ref_codes=torch.randint(0, 2048, (37, 16), generator=gen),
                      ref_text="Grüße, 你好 — \"quoted\"\n", mode="icl", model_id="Qwen/Qwen3-TTS-12Hz-0.6B-Base",
                      revision="abc123", ref_seconds=2.96, meta={"audio_sha256": "00ff", "note": "é"})
    xvec = VoicePrompt(xvector=torch.randn(1024, generator=gen), ref_codes=None, ref_text=None, mode="xvector",
                       model_id="local/dir")
    return icl, xvec


def test_to_bytes_round_trip():
    for prompt in sample_prompts():
        data = prompt.to_bytes()
        assert isinstance(data, bytes) and data == prompt.to_bytes()
        back = VoicePrompt.from_bytes(data)
        assert torch.equal(back.xvector, prompt.xvector) and back.xvector.dtype == torch.float32
        if prompt.ref_codes is None:
            assert back.ref_codes is None
        else:
            assert torch.equal(back.ref_codes, prompt.ref_codes) and back.ref_codes.dtype == torch.long
        for name in ("ref_text", "mode", "model_id", "revision", "ref_seconds", "meta"):
            assert getattr(back, name) == getattr(prompt, name), name


def with_fields(data: bytes, **changes) -> bytes:
    """Valid prompt bytes with some header fields replaced."""
    prompt = VoicePrompt.from_bytes(data)
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "mode": prompt.mode, "model_id": prompt.model_id,
              "ref_text": prompt.ref_text, **changes}
    tensors = {"xvector": prompt.xvector, "ref_codes": prompt.ref_codes}
    return save({k: v for k, v in tensors.items() if v is not None}, metadata={FORMAT: json.dumps(header)})


def test_from_bytes_refuses_bad_data():
    icl, _ = sample_prompts()
    data = icl.to_bytes()
    cases = [b"", b"garbage", data[:20], data[: len(data) - 10],
             save({"xvector": torch.zeros(3)}, metadata={"format": "something-else"}),
             save({"xvector": torch.zeros(3)}, metadata={FORMAT: "not json"}),
             save({"xvector": torch.zeros(3)}, metadata={FORMAT: json.dumps({"format_version": FORMAT_VERSION + 1})}),
             save({"xvector": torch.zeros(3)}, metadata={FORMAT: json.dumps({"format_version": FORMAT_VERSION})}),
             with_fields(data, mode="zero-shot"), with_fields(data, model_id=None)]
    assert VoicePrompt.from_bytes(with_fields(data)).mode == "icl"  # the helper itself makes valid bytes
    for bad in cases:
        with pytest.raises(VoicePromptError):
            VoicePrompt.from_bytes(bad)


def test_prompt_validation():
    x, codes = torch.randn(8), torch.zeros(5, 16, dtype=torch.long)
    bad = [
        dict(xvector=x, ref_codes=None, ref_text="hi", mode="icl"),  # ICL without codes
        dict(xvector=x, ref_codes=codes, ref_text=None, mode="icl"),  # ICL without text
        dict(xvector=x, ref_codes=codes, ref_text="hi", mode="xvector"),  # x-vector mode with codes
        dict(xvector=x, ref_codes=torch.zeros(5, 8, dtype=torch.long), ref_text="hi", mode="icl"),
        dict(xvector=x, ref_codes=codes.float(), ref_text="hi", mode="icl"),
        dict(xvector=x, ref_codes=codes - 1, ref_text="hi", mode="icl"),
        dict(xvector=torch.full((8,), float("nan")), ref_codes=None, ref_text=None, mode="xvector"),
        dict(xvector=torch.randn(2, 8), ref_codes=None, ref_text=None, mode="xvector"),
        dict(xvector=x, ref_codes=None, ref_text=None, mode="zero-shot"),
    ]
    for kw in bad:
        with pytest.raises(VoicePromptError):
            VoicePrompt(model_id="m", **kw)
    with pytest.raises(VoicePromptError):
        VoicePrompt(xvector=x, ref_codes=None, ref_text=None, mode="xvector", model_id="")


def test_check_model():
    icl, _ = sample_prompts()
    icl.check_model("Qwen/Qwen3-TTS-12Hz-0.6B-Base", "abc123")
    icl.check_model("Qwen/Qwen3-TTS-12Hz-0.6B-Base")
    with pytest.raises(VoicePromptError, match="1.7B"):
        icl.check_model("Qwen/Qwen3-TTS-12Hz-1.7B-Base")
    with pytest.raises(VoicePromptError):
        icl.check_model("Qwen/Qwen3-TTS-12Hz-0.6B-Base", "def456")


# ---------------------------------------------------------------------------------------
# reference audio checks


def tone(freq: float, sr: int, seconds: float = 2.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("wav, sr, message", [
    (np.zeros(0, np.float32), 24000, "empty"),
    (np.full(48000, np.nan, np.float32), 24000, "NaN or infinite"),
    (np.concatenate([tone(440, 24000), [np.inf]]).astype(np.float32), 24000, "NaN or infinite"),
    (tone(440, 24000, seconds=0.5), 24000, "at least 1 s"),
    (tone(440, 16000, seconds=0.99), 16000, "at least 1 s"),
    (np.zeros(48000, np.float32), 24000, "silent"),
    (tone(440, 24000, amp=1e-4), 24000, "silent"),
    (tone(440, 24000, amp=20000.0), 24000, r"\[-1, 1\]"),
    (np.zeros((2, 2, 24000), np.float32), 24000, "shape"),
    (tone(440, 24000), 0, "sample rate"),
    (tone(440, 24000), 22050.5, "sample rate"),
    ("not audio", 24000, "numpy array"),
])
def test_bad_audio_is_refused(wav, sr, message):
    with pytest.raises(AudioInputError, match=message) as err:
        load_reference(wav, sr)
    assert isinstance(err.value, EngineError)


def test_bad_audio_refused_by_build_voice_prompt(tiny_ckpt):
    with pytest.raises(AudioInputError, match="silent"):
        build_voice_prompt(np.zeros(48000, np.float32), 24000, "hello", speaker_encoder=speaker_encoder(tiny_ckpt),
                           codec_encoder=codec_encoder(tiny_ckpt), model_id="m")


def test_to_mono_layouts_and_integer_pcm():
    left, right = tone(440, 24000), tone(660, 24000)
    want = (left + right) / 2
    assert np.allclose(to_mono(np.stack([left, right], axis=1)), want)  # [N, C] (soundfile)
    assert np.allclose(to_mono(torch.from_numpy(np.stack([left, right]))), want)  # [C, N] (torch)
    pcm = np.array([0, 16384, -32768, 32767], dtype=np.int16)
    assert np.allclose(to_mono(pcm), [0.0, 0.5, -1.0, 32767 / 32768])
    assert to_mono(pcm).dtype == np.float32


# ---------------------------------------------------------------------------------------
# band-limited resampling


def band_rms(wav: np.ndarray, sr: int, lo: float, hi: float) -> float:
    """RMS of the part of `wav` between lo and hi Hz (Hann-windowed spectrum, middle second)."""
    x = wav[len(wav) // 4: len(wav) // 4 + sr] * np.hanning(sr)
    spec = np.abs(np.fft.rfft(x)) / (sr / 4)
    freqs = np.fft.rfftfreq(sr, 1 / sr)
    return float(np.sqrt((spec[(freqs >= lo) & (freqs < hi)] ** 2).sum() / 2))


def test_resampler_removes_content_above_the_new_nyquist():
    high = tone(15000, 48000)  # above 12 kHz: must vanish, not fold back to 9 kHz
    out = resample(high, 48000, 24000)
    assert len(out) == 48000 and out.dtype == np.float32
    middle = out[len(out) // 4: 3 * len(out) // 4]  # away from the switch-on/off transients
    assert np.sqrt(np.mean(middle ** 2)) < 1e-3 * np.sqrt(np.mean(high ** 2))
    naive = high[::2]  # what naive decimation does: a loud 9 kHz alias
    assert band_rms(naive, 24000, 8900, 9100) > 0.1


def test_resampler_keeps_content_below_the_nyquist():
    for freq, sr in ((1000, 48000), (5000, 44100), (3000, 16000), (440, 22050)):
        wav = tone(freq, sr)
        out = resample(wav, sr, 24000)
        # librosa's length rule (float ratio), which the official pipeline uses: 88200 samples
        # at 44.1 kHz give 48001, not 48000
        assert len(out) == int(np.ceil(len(wav) * (24000 / sr)))
        assert band_rms(out, 24000, freq - 50, freq + 50) == pytest.approx(band_rms(wav, sr, freq - 50, freq + 50),
                                                                            rel=0.01)
        # nothing else: no images of the tone above the source Nyquist when upsampling
        assert band_rms(out, 24000, 0, freq - 200) + band_rms(out, 24000, freq + 200, 12000) < 1e-3


def test_resample_same_rate_is_identity():
    wav = tone(440, 24000)
    assert resample(wav, 24000, 24000) is wav
