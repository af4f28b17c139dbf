"""`python -m engine make-tiny` and `python -m engine say`: a checkpoint written by our own code
in the official layout loads strictly with the engine and speaks; the CLI writes the WAV."""
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.__main__ import main, read_wav, write_wav
from engine.tiny import make_tiny
from runtime_helpers import reference_clip

ROOT = Path(__file__).resolve().parent.parent
LAYOUT = {"config.json", "generation_config.json", "model.safetensors", "vocab.json", "merges.txt",
          "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "speech_tokenizer"}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return make_tiny(tmp_path_factory.mktemp("tiny") / "ckpt", seed=0)


def test_layout_and_official_names(tiny_dir):
    from safetensors import safe_open

    assert {p.name for p in tiny_dir.iterdir()} == LAYOUT
    assert {p.name for p in (tiny_dir / "speech_tokenizer").iterdir()} == {
        "config.json", "model.safetensors", "preprocessor_config.json"}
    config = json.loads((tiny_dir / "config.json").read_text())
    assert config["model_type"] == "qwen3_tts" and config["tts_model_type"] == "base"
    with safe_open(str(tiny_dir / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "talker.model.layers.0.self_attn.q_proj.weight" in keys
    assert "talker.code_predictor.lm_head.14.weight" in keys
    assert "speaker_encoder.blocks.1.res2net_block.blocks.0.conv.weight" in keys
    with safe_open(str(tiny_dir / "speech_tokenizer" / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "decoder.decoder.5.alpha" in keys and "encoder.encoder.layers.0.conv.weight" in keys
    assert "decoder.quantizer.rvq_first.input_proj.weight" in keys  # stored as released, unused by us
    size = sum(p.stat().st_size for p in tiny_dir.rglob("*") if p.is_file())
    assert size < 4_000_000


def test_loads_strictly_and_speaks(tiny_dir):
    from engine import load_model
    from engine.sampling import SamplingParams

    model = load_model(tiny_dir, device="cpu")
    prompt = model.create_voice_prompt(reference_clip(2.0), 24000, "A reference clip.", reference_silence_s=0)
    assert prompt.ref_codes.shape == (25, 16)  # 12.5 frames per second, as released
    s = model.stream("Hello there, this is a tiny model.", voice=prompt, language="en",
               sampling=SamplingParams(seed=0, max_new_tokens=20))
    chunks = list(s)
    audio = np.concatenate([c.pcm for c in chunks])
    assert audio.shape[0] == 1920 * s.metrics.frames > 0
    assert np.isfinite(audio).all() and 0.01 < audio.std() < 0.9


def test_cli_make_tiny_and_say(tmp_path):
    ckpt, ref, out = tmp_path / "ckpt", tmp_path / "ref.wav", tmp_path / "out.wav"
    run = lambda *args: subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, capture_output=True,  # noqa: E731
                                       text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    made = run("make-tiny", str(ckpt))
    assert made.returncode == 0, made.stderr
    write_wav(ref, reference_clip(1.5), 24000)
    said = run("say", "Hello there. How are you?", "--ref-audio", str(ref), "--ref-text", "The reference.",
               "--model", str(ckpt), "--seed", "3", "--max-new-tokens", "15", "-o", str(out))
    assert said.returncode == 0, said.stderr
    assert "first audio" in said.stdout and "RTF" in said.stdout and "stop:" in said.stdout
    assert "[" in said.stderr and "done" in said.stderr  # the progress bar
    wav, sr = read_wav(out)
    assert sr == 24000 and wav.shape[0] > 1920 and np.abs(wav).max() > 0.01

    bad = run("say", "hi", "--ref-audio", str(ref), "--xvec", "--language", "klingon", "-o", str(out))
    assert bad.returncode == 1 and "unsupported language 'klingon'" in bad.stderr
    assert main(["say", "   ", "--ref-audio", str(ref), "--xvec", "-o", str(out)]) == 1


@pytest.mark.parametrize("tag, bits", [(1, 16), (1, 24), (1, 32), (3, 32), (1, 8)])
def test_read_wav_formats(tmp_path, tag, bits):
    x = np.linspace(-0.9, 0.9, 100).astype(np.float32)
    stereo = np.stack([x, -x], 1)
    if tag == 3:
        payload = stereo.astype("<f4").tobytes()
    elif bits == 8:
        payload = (stereo * 127 + 128).round().astype(np.uint8).tobytes()
    else:
        ints = (stereo * (2 ** (bits - 1) - 1)).round().astype("<i4")
        payload = b"".join(int(v).to_bytes(bits // 8, "little", signed=True) for v in ints.ravel())
    fmt = struct.pack("<HHIIHH", tag, 2, 16000, 16000 * 2 * bits // 8, 2 * bits // 8, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(payload)) + payload
    (tmp_path / "x.wav").write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    wav, sr = read_wav(tmp_path / "x.wav")
    assert sr == 16000 and wav.shape == (100, 2)
    np.testing.assert_allclose(wav, stereo, atol=2 / 2 ** (bits - 1))
