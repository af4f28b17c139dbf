"""Golden outputs of the official codec decoder for the tiny speech tokenizers.

Run in the reference environment (through tools/make_parity_fixtures.py). Loads
`ckpt_dir/speech_tokenizer/` with the official `Qwen3TTSTokenizer.from_pretrained` (which
proves the layout) and writes `golden_dir/codec_decode.safetensors`:

  codes_{T}  int64 [T, 16]   random codes, T in LENGTHS (1; 50 and 130 are past the window)
  wav_{T}    float32 [T*hop] the official decoder's full pass (`decoder(codes)`), which is also
                             what the official `decode` returns for T <= 300 (checked here)
  chunked    float32 [130*hop] the official `chunked_decode(codes_130, chunk_size=40,
                             left_context_size=25)`: the re-decoding scheme the official code
                             (chunk 300, context 25) and community streaming forks use

Small on purpose: a few hundred KB per shape.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT.parent / "shared" / "reference"))

from tools.parity.shapes import CODEBOOK_SIZE, NUM_CODE_GROUPS  # noqa: E402

LENGTHS = (1, 50, 130)
CHUNKED = {"length": 130, "chunk_size": 40, "left_context_size": 25}
SEED = {"a": 3201, "b": 3202}


def record(ckpt_dir: Path, golden_dir: Path, shape: str) -> None:
    """Write golden_dir/codec_decode.safetensors for the checkpoint in ckpt_dir."""
    from qwen_reference import official  # noqa: F401  (torchaudio stubs before qwen_tts)
    from qwen_tts.inference.qwen3_tts_tokenizer import Qwen3TTSTokenizer
    from safetensors.torch import save_file

    tokenizer = Qwen3TTSTokenizer.from_pretrained(str(Path(ckpt_dir) / "speech_tokenizer"))
    decoder = tokenizer.model.decoder.eval()
    gen = torch.Generator().manual_seed(SEED[shape])
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for T in LENGTHS:
            codes = torch.randint(0, CODEBOOK_SIZE, (T, NUM_CODE_GROUPS), generator=gen)
            wav = decoder(codes.T[None])[0, 0]  # official layout [B, K, T] -> [B, 1, T * hop]
            api, _ = tokenizer.decode({"audio_codes": codes})
            assert torch.equal(torch.from_numpy(api[0]), wav), "official decode != full pass for T <= 300"
            out[f"codes_{T}"], out[f"wav_{T}"] = codes.contiguous(), wav.float().contiguous()
        codes = out[f"codes_{CHUNKED['length']}"]
        out["chunked"] = decoder.chunked_decode(
            codes.T[None], chunk_size=CHUNKED["chunk_size"], left_context_size=CHUNKED["left_context_size"]
        )[0, 0].float().contiguous()
    meta = {"chunked": json.dumps(CHUNKED), "hop": str(tokenizer.get_decode_upsample_rate())}
    save_file(out, str(Path(golden_dir) / "codec_decode.safetensors"), metadata=meta)
