"""Mel, speaker encoder and codec encoder against the official implementation.

Goldens come from tools/parity/golden_encoders.py (official qwen-tts 0.1.1 on the tiny
checkpoints in tests/fixtures/tiny_{a,b}); the clips are tests/fixtures/audio/*.wav.
"""
import json
import math
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from engine.codec_config import CodecEncoderConfig
from engine.config import SpeakerEncoderConfig
from engine.errors import CheckpointError
from engine.loader import load_codec_encoder, load_speaker_encoder
from engine.mel import log_mel_spectrogram, mel_filterbank, num_frames

AUDIO = Path(__file__).parent / "fixtures" / "audio"


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """16-bit mono WAV -> float32 samples / 32768 (what the recorder fed the official code)."""
    with wave.open(str(path), "rb") as f:
        pcm = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")
        return pcm.astype(np.float32) / 32768.0, f.getframerate()


_CACHE: dict = {}


def speaker_encoder(ckpt: Path):
    key = ("spk", ckpt)
    if key not in _CACHE:
        cfg = json.loads((ckpt / "config.json").read_text())["speaker_encoder_config"]
        _CACHE[key] = load_speaker_encoder(ckpt, SpeakerEncoderConfig.from_hf(cfg))
    return _CACHE[key]


def codec_encoder(ckpt: Path):
    key = ("codec", ckpt)
    if key not in _CACHE:
        _CACHE[key] = load_codec_encoder(ckpt / "speech_tokenizer")
    return _CACHE[key]


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=0).item()


@pytest.mark.parametrize("clip", ["speech", "noise"])
def test_mel_matches_official(fixtures_dir, clip):
    want = load_file(str(fixtures_dir / "golden" / "mel.safetensors"))[f"mel_{clip}"]  # [128, frames]
    wav, sr = read_wav(AUDIO / ("speech_en.wav" if clip == "speech" else "noise.wav"))
    got = log_mel_spectrogram(torch.from_numpy(wav))[0]
    assert sr == 24000 and got.shape == want.shape == (128, num_frames(len(wav)))
    assert (got - want).abs().max().item() <= 1e-5


def test_mel_filterbank_is_slaney():
    fb = mel_filterbank(24000, 1024, 128, 0.0, 12000.0)
    assert fb.shape == (128, 513) and fb.dtype == np.float32
    # Slaney normalization: each triangle has area 1 in Hz (height 2 / width, base width); the
    # sum over FFT bins approximates it once bands span several bins (the upper half).
    area = fb.sum(axis=1) * (24000 / 1024)
    assert np.allclose(area[64:], 1.0, rtol=0.05)
    assert (fb.argmax(axis=1)[1:] >= fb.argmax(axis=1)[:-1]).all()  # centres rise with the band index


@pytest.mark.parametrize("clip", ["speech", "noise"])
def test_xvector_matches_official(tiny_ckpt, golden_dir, clip):
    want = load_file(str(golden_dir / "encoders.safetensors"))[f"xvector_{clip}"]
    wav, _ = read_wav(AUDIO / ("speech_en.wav" if clip == "speech" else "noise.wav"))
    got = speaker_encoder(tiny_ckpt).embed(torch.from_numpy(wav))
    assert got.shape == want.shape and got.dtype == torch.float32
    assert cosine(got, want) >= 0.9999
    assert (got - want).abs().max().item() <= 1e-4 * want.abs().max().item()


def test_xvectors_tell_clips_apart(tiny_ckpt, golden_dir):
    """Guards the parity test against a degenerate encoder that maps everything alike."""
    g = load_file(str(golden_dir / "encoders.safetensors"))
    assert cosine(g["xvector_speech"], g["xvector_noise"]) < 0.99


@pytest.mark.parametrize("clip", ["speech", "noise"])
def test_codec_encoder_codes_identical(tiny_ckpt, golden_dir, clip):
    want = load_file(str(golden_dir / "encoders.safetensors"))[f"codes_{clip}"].long()  # [T, 16]
    wav, _ = read_wav(AUDIO / ("speech_en.wav" if clip == "speech" else "noise.wav"))
    enc = codec_encoder(tiny_ckpt)
    got = enc.encode(torch.from_numpy(wav))
    assert got.dtype == torch.long and got.shape == want.shape
    assert got.shape[0] == math.ceil(len(wav) / enc.cfg.encode_downsample_rate)
    assert torch.equal(got, want)
    assert len(torch.unique(want[:, 0])) > 4  # codes vary: the comparison is not trivial


def test_codec_encoder_length_rule(tiny_ckpt):
    enc = codec_encoder(tiny_ckpt)
    hop = enc.cfg.encode_downsample_rate
    assert enc.cfg.hop_length == hop
    gen = torch.Generator().manual_seed(0)
    for n in (1, hop - 1, hop, hop + 1, 7 * hop + 3):
        codes = enc.encode(0.1 * torch.randn(n, generator=gen))
        assert codes.shape == (math.ceil(n / hop), 16)
        assert 0 <= codes.min() and codes.max() < enc.cfg.codebook_size


def test_codec_encoder_is_causal(tiny_ckpt):
    """Appending audio never changes the codes of frames already complete."""
    enc = codec_encoder(tiny_ckpt)
    hop = enc.cfg.encode_downsample_rate
    wav = 0.1 * torch.randn(20 * hop, generator=torch.Generator().manual_seed(1))
    assert torch.equal(enc.encode(wav[: 12 * hop]), enc.encode(wav)[:12])


def test_codec_encoder_config_from_hf(tiny_ckpt):
    top = json.loads((tiny_ckpt / "speech_tokenizer" / "config.json").read_text())
    cfg = CodecEncoderConfig.from_hf(top)
    assert cfg.valid_num_quantizers == 16 and cfg.encode_downsample_rate == top["encode_downsample_rate"]
    assert cfg.frame_rate == top["encoder_config"]["_frame_rate"]
    assert CodecEncoderConfig.from_hf(top["encoder_config"]).hidden_size == cfg.hidden_size
    released = CodecEncoderConfig()  # defaults: the released 12 Hz tokenizer
    assert (released.hop_length, released.frame_rate, released.downsample_kernel) == (1920, 12.5, 4)


def test_codec_encoder_wrong_config_lists_mismatches(tiny_ckpt):
    top = json.loads((tiny_ckpt / "speech_tokenizer" / "config.json").read_text())
    top["encoder_config"]["hidden_size"] += 8
    with pytest.raises(CheckpointError) as err:
        load_codec_encoder(tiny_ckpt / "speech_tokenizer", CodecEncoderConfig.from_hf(top))
    assert "wrong shape" in str(err.value) and "encoder.downsample.conv.weight" in str(err.value)


@pytest.mark.cuda
def test_encoders_run_on_cuda(tiny_ckpt, golden_dir):
    """Device placement end to end. GPU kernels (TF32 convs, other reductions) are not bitwise
    the CPU ones, so near-tie codes may flip: agreement, not identity, is checked here."""
    g = load_file(str(golden_dir / "encoders.safetensors"))
    wav = torch.from_numpy(read_wav(AUDIO / "speech_en.wav")[0])
    cfg = json.loads((tiny_ckpt / "config.json").read_text())["speaker_encoder_config"]
    spk = load_speaker_encoder(tiny_ckpt, SpeakerEncoderConfig.from_hf(cfg), device="cuda")
    assert cosine(spk.embed(wav).cpu(), g["xvector_speech"]) >= 0.999
    codes = load_codec_encoder(tiny_ckpt / "speech_tokenizer", device="cuda").encode(wav)
    assert codes.is_cuda and codes.shape == g["codes_speech"].shape
    assert (codes.cpu() == g["codes_speech"].long()).float().mean().item() >= 0.95


def test_speaker_encoder_loads_from_an_open_source(tiny_ckpt):
    from engine.checkpoint import TensorSource

    cfg = SpeakerEncoderConfig.from_hf(json.loads((tiny_ckpt / "config.json").read_text())["speaker_encoder_config"])
    with TensorSource.from_dir(tiny_ckpt) as source:
        enc = load_speaker_encoder(source, cfg)
    wav = torch.from_numpy(read_wav(AUDIO / "noise.wav")[0])
    assert torch.equal(enc.embed(wav), speaker_encoder(tiny_ckpt).embed(wav))
    bad = SpeakerEncoderConfig.from_hf({**cfg.__dict__, "enc_attention_channels": cfg.enc_attention_channels + 1})
    with pytest.raises(CheckpointError, match="asp.tdnn.conv.weight"):
        load_speaker_encoder(tiny_ckpt, bad)
