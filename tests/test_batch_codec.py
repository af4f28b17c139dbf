"""The batched codec decoder (engine.batch.codec.CodecRows): many streams at different
positions, decoded together, each equal to that stream decoded alone; ICL references are
decoded once and reused."""
import torch

from engine.batch.codec import CodecRows
from engine.codec_decoder import StreamingDecoder
from engine.loader import load_codec_decoder

TOL = 1e-5


def random_codes(decoder, frames: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, decoder.config.codebook_size, (frames, 16), generator=gen)


def test_rows_at_different_positions_decode_as_alone(tiny_ckpt):
    decoder = load_codec_decoder(tiny_ckpt / "speech_tokenizer")
    rows = CodecRows(decoder, slots=4)
    ref = random_codes(decoder, 23, seed=7)
    streams = {0: random_codes(decoder, 30, 1), 2: random_codes(decoder, 30, 2), 3: random_codes(decoder, 30, 3)}
    alone = {}
    for slot, codes in streams.items():
        dec = StreamingDecoder(decoder)
        if slot == 2:
            dec.prime(ref)
        alone[slot] = dec.push(codes)
    # slot 0 starts first; slot 2 (ICL) joins 3 frames later, slot 3 after 5; chunk sizes differ
    got = {s: [] for s in streams}
    rows.start(0)
    t = {s: 0 for s in streams}
    for tick in range(40):
        if tick == 3:
            rows.start(2, ref)
        if tick == 5:
            rows.start(3)
        due = {}
        for slot, start in ((0, 0), (2, 3), (3, 5)):
            size = 1 if t[slot] == 0 else (4 if slot != 3 else 3)
            if tick >= start and t[slot] < 30 and (tick - start + 1) % size == 0 or (t[slot] == 0 and tick == start):
                n = min(size, 30 - t[slot])
                due[slot] = list(streams[slot][t[slot]:t[slot] + n])
                t[slot] += n
        for slot, pcm in rows.decode(due).items():
            got[slot].append(torch.from_numpy(pcm))
    for slot in streams:
        assert t[slot] == 30
        assert (torch.cat(got[slot]) - alone[slot]).abs().max().item() <= TOL, slot


def test_reference_is_decoded_once_per_voice(tiny_ckpt):
    decoder = load_codec_decoder(tiny_ckpt / "speech_tokenizer")
    rows = CodecRows(decoder, slots=2)
    ref = random_codes(decoder, 23, seed=7)
    rows.start(0, ref)
    rows.start(1, ref.clone())
    rows.start(0, ref)
    assert rows.primings == 1
    gen = random_codes(decoder, 4, 9)
    out = rows.decode({0: list(gen), 1: list(gen)})
    assert (torch.from_numpy(out[0]) - torch.from_numpy(out[1])).abs().max() == 0
    dec = StreamingDecoder(decoder)
    dec.prime(ref)
    assert (dec.push(gen) - torch.from_numpy(out[0])).abs().max().item() <= TOL
