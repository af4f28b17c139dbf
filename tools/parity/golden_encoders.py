"""Golden outputs of the official mel, speaker encoder, codec encoder and voice-clone prompt.

Run in the reference environment through tools/make_parity_fixtures.py. The test clips live
in tests/fixtures/audio/ (16-bit WAV, made here once if missing, then committed):
  speech_en_22k.wav  espeak-ng's own output (22.05 kHz), a real speech clip of a few seconds
  speech_en.wav      the same clip resampled to 24 kHz with soxr (HQ)
  noise.wav          seeded Gaussian noise, 24 kHz, a length that is not a whole frame
`record(ckpt_dir, golden_dir, shape)` loads the tiny checkpoint with the official loader
(`Qwen3TTSModel.from_pretrained`, float32, CPU) and writes golden_dir/encoders.safetensors:
  xvector_{speech,noise}  official `extract_speaker_embedding` of the 24 kHz clips
  codes_{speech,noise}    official `speech_tokenizer.encode` of the 24 kHz clips, [T, 16]
  prompt_icl_xvector, prompt_icl_codes, prompt_xvec_xvector
                          official `create_voice_clone_prompt` on the 22.05 kHz espeak clip
                          (ICL with its transcript, and x-vector only), resampling included
and, shape independent, golden/mel.safetensors: the official `mel_spectrogram` of both clips.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np
import torch

AUDIO_DIR = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "audio"
SPEECH_TEXT = "The quick brown fox jumps over the lazy dog."
NOISE_SEED = 1234
NOISE_SAMPLES = 24000 + 7321  # ~1.3 s, not a multiple of any hop


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """16-bit mono WAV -> float32 [N] in [-1, 1) (sample / 32768, as soundfile reads it), rate."""
    with wave.open(str(path), "rb") as f:
        assert f.getsampwidth() == 2 and f.getnchannels() == 1, path
        pcm = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")
        return pcm.astype(np.float32) / 32768.0, f.getframerate()


def write_wav(path: Path, wav: np.ndarray, sr: int) -> None:
    pcm = np.clip(np.round(wav * 32768.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sr)
        f.writeframes(pcm.tobytes())


def ensure_audio() -> None:
    """Make the committed test clips if they are missing (espeak-ng output varies by version,
    so existing clips are never regenerated)."""
    import soxr

    AUDIO_DIR.mkdir(parents=True, exist_ok=True)
    speech22 = AUDIO_DIR / "speech_en_22k.wav"
    if not speech22.exists():
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "espeak.wav"
            subprocess.run(["espeak-ng", "-v", "en-us", "-s", "165", "-w", str(raw), SPEECH_TEXT], check=True)
            wav, sr = read_wav(raw)
        write_wav(speech22, wav, sr)
    speech24 = AUDIO_DIR / "speech_en.wav"
    if not speech24.exists():
        wav, sr = read_wav(speech22)
        write_wav(speech24, soxr.resample(wav, sr, 24000, quality="HQ"), 24000)
    noise = AUDIO_DIR / "noise.wav"
    if not noise.exists():
        rng = np.random.default_rng(NOISE_SEED)
        write_wav(noise, (0.1 * rng.standard_normal(NOISE_SAMPLES)).astype(np.float32), 24000)


def _official_mel(wav: np.ndarray) -> torch.Tensor:
    from qwen_reference import official

    return official.mel_spectrogram(torch.from_numpy(wav)[None], n_fft=1024, num_mels=128, sampling_rate=24000,
                                    hop_size=256, win_size=1024, fmin=0, fmax=12000)[0].contiguous()


def record(ckpt_dir: Path, golden_dir: Path, shape: str) -> None:
    """Write golden_dir/encoders.safetensors (and golden/mel.safetensors) for one tiny shape."""
    import qwen_reference  # noqa: F401  (stubs torchaudio before qwen_tts imports)
    from qwen_tts.inference.qwen3_tts_model import Qwen3TTSModel
    from safetensors.torch import save_file

    ensure_audio()
    speech, sr = read_wav(AUDIO_DIR / "speech_en.wav")
    noise, _ = read_wav(AUDIO_DIR / "noise.wav")
    speech22, sr22 = read_wav(AUDIO_DIR / "speech_en_22k.wav")
    assert sr == 24000 and sr22 == 22050, (sr, sr22)

    wrapper = Qwen3TTSModel.from_pretrained(str(ckpt_dir), dtype=torch.float32)
    model = wrapper.model.eval()
    out = {}
    with torch.inference_mode():
        for name, wav in (("speech", speech), ("noise", noise)):
            out[f"xvector_{name}"] = model.extract_speaker_embedding(audio=wav, sr=24000).float()
            out[f"codes_{name}"] = model.speech_tokenizer.encode(wav, sr=24000).audio_codes[0].to(torch.int32)
        icl = wrapper.create_voice_clone_prompt((speech22, sr22), ref_text=SPEECH_TEXT, x_vector_only_mode=False)[0]
        xvec = wrapper.create_voice_clone_prompt((speech22, sr22), ref_text=None, x_vector_only_mode=True)[0]
    assert icl.icl_mode and xvec.x_vector_only_mode and xvec.ref_code is None
    out["prompt_icl_xvector"] = icl.ref_spk_embedding.float()
    out["prompt_icl_codes"] = icl.ref_code.to(torch.int32)
    out["prompt_xvec_xvector"] = xvec.ref_spk_embedding.float()
    # one metadata entry: safetensors writes several in a random order (bytes would churn)
    info = json.dumps({"speech_text": SPEECH_TEXT, "shape": shape}, sort_keys=True)
    save_file({k: v.contiguous() for k, v in out.items()}, str(Path(golden_dir) / "encoders.safetensors"),
              metadata={"info": info})

    mel_path = Path(golden_dir).parent / "mel.safetensors"
    save_file({"mel_speech": _official_mel(speech), "mel_noise": _official_mel(noise)}, str(mel_path))
