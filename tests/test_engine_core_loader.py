"""Loading: clear errors for missing, truncated, corrupt and mismatched checkpoints and for
other model families; Hub ids resolved offline from a Hugging Face cache; meta-device loading."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine import CheckpointError, UnsupportedModelError, load_model
from engine.errors import InvalidParameterError
from engine.layers import PackedLinear, cpu_bf16_packing_available

ROOT = Path(__file__).resolve().parent.parent
CKPT_FILES = ("config.json", "generation_config.json", "model.safetensors", "vocab.json", "merges.txt",
              "tokenizer_config.json", "speech_tokenizer/config.json", "speech_tokenizer/model.safetensors")


def copy_checkpoint(source: Path, dst: Path) -> None:
    for name in CKPT_FILES:
        (dst / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / name, dst / name)


@pytest.fixture
def ckpt(tmp_path, fixtures_dir) -> Path:
    """A writable copy of tiny checkpoint a (the files load_model reads)."""
    dst = tmp_path / "ckpt"
    copy_checkpoint(fixtures_dir / "tiny_a", dst)
    return dst


def edit_config(folder: Path, **changes) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(changes)
    (folder / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "vocab.json", "merges.txt",
                                  "tokenizer_config.json"])
def test_missing_file_is_named(ckpt, name):
    (ckpt / name).unlink()
    with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
        load_model(ckpt, device="cpu")


def test_truncated_safetensors(ckpt):
    data = (ckpt / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(data[: len(data) - 1000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model(ckpt, device="cpu")


@pytest.mark.parametrize("content", [b"", b"not a safetensors file at all" * 4, b"\x10\x00\x00\x00\x00\x00\x00\x00{bad json"])
def test_corrupt_safetensors(ckpt, content):
    (ckpt / "model.safetensors").write_bytes(content)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_model(ckpt, device="cpu")


def test_corrupt_config_json(ckpt):
    (ckpt / "config.json").write_text("{ not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model(ckpt, device="cpu")


def test_every_mismatched_tensor_is_listed_in_one_error(ckpt):
    tensors = load_file(str(ckpt / "model.safetensors"))
    del tensors["talker.model.layers.1.mlp.up_proj.weight"]  # missing
    del tensors["talker.code_predictor.lm_head.3.weight"]  # missing, in the predictor
    tensors["talker.model.layers.0.self_attn.q_proj.weight"] = torch.zeros(3, 3)  # wrong shape
    tensors["talker.model.extra_table.weight"] = torch.zeros(2)  # unexpected
    save_file(tensors, str(ckpt / "model.safetensors"))
    with pytest.raises(CheckpointError) as err:
        load_model(ckpt, device="cpu")
    message = str(err.value)
    assert "missing: decoder.layers.1.mlp.w_up.weight" in message
    assert "unexpected: talker.model.extra_table.weight" in message
    assert "wrong shape: talker.model.layers.0.self_attn.q_proj.weight: checkpoint [3, 3]" in message


def test_predictor_mismatch_is_listed(ckpt):
    tensors = load_file(str(ckpt / "model.safetensors"))
    del tensors["talker.code_predictor.lm_head.3.weight"]
    tensors["talker.code_predictor.model.norm.weight"] = torch.zeros(5)
    save_file(tensors, str(ckpt / "model.safetensors"))
    with pytest.raises(CheckpointError) as err:
        load_model(ckpt, device="cpu")
    assert "missing: heads.3.weight" in str(err.value) and "wrong shape: talker.code_predictor.model.norm" in str(err.value)


def test_stray_component_is_reported(ckpt):
    tensors = load_file(str(ckpt / "model.safetensors"))
    tensors["thinker.lm_head.weight"] = torch.zeros(2, 2)
    save_file(tensors, str(ckpt / "model.safetensors"))
    with pytest.raises(CheckpointError, match="unexpected: thinker.lm_head.weight"):
        load_model(ckpt, device="cpu")


@pytest.mark.parametrize("changes, words", [
    (dict(tts_model_type="custom_voice"), ["custom_voice", "CustomVoice", "base"]),
    (dict(tts_model_type="voice_design"), ["voice_design", "base"]),
    (dict(tokenizer_type="qwen3_tts_tokenizer_25hz"), ["25hz", "12 Hz"]),
    (dict(model_type="qwen2"), ["qwen2", "qwen3_tts"]),
])
def test_other_models_are_refused_by_name(ckpt, changes, words):
    edit_config(ckpt, **changes)
    with pytest.raises(UnsupportedModelError) as err:
        load_model(ckpt, device="cpu")
    for word in words:
        assert word in str(err.value)


def test_unsupported_architecture_options_are_refused(ckpt):
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["talker_config"]["rope_scaling"]["rope_type"] = "yarn"
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedModelError, match="yarn"):
        load_model(ckpt, device="cpu")


def test_not_a_path_nor_repo_id():
    with pytest.raises(CheckpointError, match="neither an existing directory nor a Hub repo id"):
        load_model("/no/such/dir/anywhere", device="cpu")


def test_meta_build_loads_every_tensor_in_the_requested_dtype(ckpt):
    model = load_model(ckpt, device="cpu", dtype=torch.bfloat16)
    for module in (model.talker, model.predictor):
        tensors = list(module.parameters()) + list(module.buffers())
        assert not any(t.is_meta for t in tensors)
        assert {p.dtype for p in module.parameters()} == {torch.bfloat16}
    assert model.talker.decoder.inv_freq.dtype == torch.float32  # RoPE tables stay float32
    stored = load_file(str(ckpt / "model.safetensors"))
    assert torch.equal(model.talker.text_embedding.weight, stored["talker.model.text_embedding.weight"].to(torch.bfloat16))
    gate = model.talker.decoder.layers[0].mlp.w_gate
    assert isinstance(gate, PackedLinear) == cpu_bf16_packing_available()  # CPU bf16: oneDNN-packed
    x = torch.randn(3, gate.in_features, dtype=torch.bfloat16)
    ref = torch.nn.functional.linear(x.float(), stored["talker.model.layers.0.mlp.gate_proj.weight"].to(torch.bfloat16).float())
    assert torch.allclose(gate(x).float(), ref, rtol=2e-2, atol=2e-2)
    codes = model.generate_codes("bf16 runs too", sampling=model.default_sampling(max_new_tokens=4, seed=0))
    assert codes.shape[1] == 16 and codes.shape[0] <= 4


def test_bad_voice_and_language_are_refused(ckpt):
    from types import SimpleNamespace

    model = load_model(ckpt, device="cpu")
    width = model.config.talker.decoder.hidden_size
    with pytest.raises(InvalidParameterError, match="xvector"):
        model.generate_codes("hi", voice=SimpleNamespace(mode="xvector", xvector=torch.zeros(width + 1),
                                                         ref_codes=None, ref_text=None))
    with pytest.raises(InvalidParameterError, match="ref_codes"):
        model.generate_codes("hi", voice=SimpleNamespace(mode="icl", xvector=torch.zeros(width),
                                                         ref_codes=None, ref_text="hello"))
    with pytest.raises(InvalidParameterError, match="language"):
        model.generate_codes("hi", language="klingon")
    with pytest.raises(InvalidParameterError, match="text"):
        model.generate_codes("   ")


def make_hub_cache(cache: Path, repo_id: str, source: Path, commit: str = "0123456789abcdef0123456789abcdef01234567"):
    """The huggingface_hub cache layout: models--owner--name/{refs/main, snapshots/<commit>/...}."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    copy_checkpoint(source, snapshot)
    return commit


def test_hub_id_resolves_offline_from_the_cache(tmp_path, fixtures_dir):
    cache = tmp_path / "hub"
    commit = make_hub_cache(cache, "tiny-org/qwen3-tts-tiny", fixtures_dir / "tiny_a")
    script = (
        "import torch, engine\n"
        "m = engine.load_model('tiny-org/qwen3-tts-tiny', device='cpu')\n"
        "print('revision', m.revision, m.model_id)\n"
        "m2 = engine.load_model('tiny-org/qwen3-tts-tiny', revision=m.revision, device='cpu')\n"
        "try:\n"
        "    engine.load_model('tiny-org/not-cached', device='cpu')\n"
        "except engine.CheckpointError as e:\n"
        "    print('missing repo:', e)\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache), HF_HOME=str(tmp_path / "home"))
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"revision {commit} tiny-org/qwen3-tts-tiny" in out.stdout
    assert "missing repo: 'tiny-org/not-cached'" in out.stdout and "HF_HUB_OFFLINE" in out.stdout
