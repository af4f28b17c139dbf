"""Streaming decode is the offline decode, frame by frame: per module (chunked == full pass,
moshi conv_test style) and for the whole decoder (chunk sizes, ICL priming, constant state)."""
import pytest
import torch

from engine.codec_config import CodecDecoderConfig
from engine.codec_decoder import (CausalConv1d, CausalConvTranspose1d, ConvNeXtBlock, DecoderBlock,
                                  DecoderTransformer, ResidualUnit, StreamingDecoder, StreamState, UpsampleStage)
from engine.loader import load_codec_decoder

TOL = 1e-5
CHUNKS = [1, 2, 3, 7, 25]


@pytest.fixture(scope="module")
def decoder(tiny_ckpt):
    return load_codec_decoder(tiny_ckpt / "speech_tokenizer")


def random_codes(decoder, frames: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, decoder.config.codebook_size, (frames, 16), generator=gen)


def stream(dec: StreamingDecoder, codes: torch.Tensor, chunk: int) -> torch.Tensor:
    return torch.cat([dec.push(codes[i:i + chunk]) for i in range(0, codes.shape[0], chunk)])


# ---------------------------------------------------------------------------------------
# whole decoder


@pytest.mark.parametrize("frames", [1, 50, 320])
@pytest.mark.parametrize("chunk", CHUNKS)
def test_streaming_equals_offline(decoder, frames, chunk):
    codes = random_codes(decoder, frames, seed=frames)
    offline = decoder.decode(codes, max_chunk=None)
    streamed = stream(StreamingDecoder(decoder), codes, chunk)
    assert streamed.shape == offline.shape == (frames * decoder.config.hop,)
    assert (streamed - offline).abs().max().item() <= TOL


@pytest.mark.parametrize("frames", [1, 50, 320])
@pytest.mark.parametrize("chunk", CHUNKS)
def test_icl_priming_equals_offline_of_reference_plus_generated(decoder, frames, chunk):
    """prime(ref) then push(gen) gives the samples of decode(ref + gen) after the reference."""
    ref, gen = random_codes(decoder, 37, seed=1000), random_codes(decoder, frames, seed=frames + 1)
    offline = decoder.decode(torch.cat([ref, gen]), max_chunk=None)[ref.shape[0] * decoder.config.hop:]
    dec = StreamingDecoder(decoder)
    dec.prime(ref)
    streamed = stream(dec, gen, chunk)
    assert streamed.shape == offline.shape
    assert (streamed - offline).abs().max().item() <= TOL
    assert dec.frames == ref.shape[0] + frames
    # priming changes the output: the reference's acoustic context is really used
    assert (streamed[:decoder.config.hop] - decoder.decode(gen[:1])).abs().max().item() > 1e-3


def test_state_does_not_grow_with_length(decoder):
    dec = StreamingDecoder(decoder)
    codes = random_codes(decoder, 400, seed=7)
    dec.push(codes[:3])
    shapes = [tuple(t.shape) for t in dec.state.tensors()]
    size = dec.state.nbytes()
    assert size > 0
    for i in range(3, 400, 9):
        dec.push(codes[i:i + 9])
    assert [tuple(t.shape) for t in dec.state.tensors()] == shapes
    assert dec.state.nbytes() == size


def test_each_push_decodes_only_its_frames(decoder):
    """No re-decoding of past frames: every stage sees just the pushed frames."""
    seen = []
    hook = decoder.transformer.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[1]))
    try:
        dec = StreamingDecoder(decoder)
        dec.prime(random_codes(decoder, 30, seed=8))
        for n in (1, 4, 2):
            dec.push(random_codes(decoder, n, seed=n))
    finally:
        hook.remove()
    assert seen == [30, 1, 4, 2]


def test_reset_starts_a_new_stream(decoder):
    dec = StreamingDecoder(decoder)
    dec.push(random_codes(decoder, 40, seed=9))
    dec.reset()
    codes = random_codes(decoder, 30, seed=10)
    assert dec.frames == 0
    assert (stream(dec, codes, 4) - decoder.decode(codes)).abs().max().item() <= TOL


def test_interleaved_streams_share_weights_not_state(decoder):
    a_codes, b_codes = random_codes(decoder, 30, seed=11), random_codes(decoder, 30, seed=12)
    a, b = StreamingDecoder(decoder), StreamingDecoder(decoder)
    a_out, b_out = [], []
    for i in range(0, 30, 3):
        a_out.append(a.push(a_codes[i:i + 3]))
        b_out.append(b.push(b_codes[i:i + 3]))
    assert (torch.cat(a_out) - decoder.decode(a_codes)).abs().max().item() <= TOL
    assert (torch.cat(b_out) - decoder.decode(b_codes)).abs().max().item() <= TOL


def test_copies_of_a_primed_decoder_continue_exactly_and_independently(decoder):
    """What long ICL requests do: prime once (past the attention window, so the ring has
    wrapped), then one copy per segment; pushing into a copy never touches the original."""
    ref = random_codes(decoder, 60, seed=13)
    seg1, seg2 = random_codes(decoder, 20, seed=14), random_codes(decoder, 20, seed=15)
    hop = decoder.config.hop
    primed = StreamingDecoder(decoder)
    primed.prime(ref)
    first = primed.copy()
    out1 = stream(first, seg1, 3)
    second = primed.copy()
    out2 = stream(second, seg2, 3)
    assert first.frames == second.frames == 80 and primed.frames == 60
    assert (out1 - decoder.decode(torch.cat([ref, seg1]))[60 * hop:]).abs().max().item() <= TOL
    assert (out2 - decoder.decode(torch.cat([ref, seg2]))[60 * hop:]).abs().max().item() <= TOL
    assert torch.equal(stream(primed.copy(), seg1, 3), out1)


def test_empty_push_emits_nothing(decoder):
    dec = StreamingDecoder(decoder)
    assert dec.push(torch.zeros(0, 16, dtype=torch.long)).shape == (0,) and dec.frames == 0


# ---------------------------------------------------------------------------------------
# one test per streaming module: chunked == full pass


def chunked_equals_full(module, x: torch.Tensor, chunks, time_dim: int = -1, tol: float = TOL):
    """Feed x through `module` whole and in the given chunk lengths; compare (relative tol)."""
    with torch.inference_mode():
        full = module(x)
        state, outs, start = StreamState(), [], 0
        for n in chunks:
            outs.append(module(x.narrow(time_dim, start, n), state))
            start += n
        assert start == x.shape[time_dim]
        streamed = torch.cat(outs, dim=time_dim)
    assert streamed.shape == full.shape
    err = (streamed - full).abs().max().item() / full.abs().max().item()
    assert err <= tol, err
    return state


SPLITS = [[1] * 40, [3, 1, 7, 2, 25, 2], [40], [13, 27]]


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("kernel, dilation, groups", [(3, 1, 1), (7, 9, 1), (7, 1, 6), (1, 1, 1)])
def test_causal_conv_chunked(split, kernel, dilation, groups):
    torch.manual_seed(0)
    conv = CausalConv1d(6, 6, kernel, dilation=dilation, groups=groups)
    state = chunked_equals_full(conv, rand(2, 6, 40), split)
    held = [t.shape for t in state.tensors()]
    assert held == ([torch.Size([2, 6, (kernel - 1) * dilation])] if kernel > 1 else [])


@pytest.mark.parametrize("kernel, dilation", [(7, 3), (1, 1), (3, 1)])
def test_causal_conv_short_input_gemm_path(kernel, dilation):
    """Short inputs on wide layers take a GEMM path; it computes the same conv as F.conv1d."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    conv = CausalConv1d(64, 8, kernel, dilation=dilation)
    for length in (1, 3, 4, 40):  # 1-4: GEMM (length * 16 <= 64 channels), 40: oneDNN
        x = rand(2, 64, length, seed=length)
        with torch.inference_mode():
            want = F.conv1d(F.pad(x, (conv.context, 0)), conv.weight, conv.bias, dilation=dilation)
            assert (conv(x) - want).abs().max().item() <= 1e-5
    chunked_equals_full(conv, rand(2, 64, 40), [1] * 40)
    chunked_equals_full(conv, rand(2, 64, 40), [3, 4, 1, 32])


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("kernel, stride", [(10, 5), (2, 2), (9, 3), (5, 4)])
def test_causal_transposed_conv_chunked(split, kernel, stride):
    """64 input channels: chunks of <= 8 samples take the GEMM overlap-add path, the full pass
    PyTorch's transposed conv; both must agree."""
    torch.manual_seed(0)
    conv = CausalConvTranspose1d(64, 3, kernel, stride)
    x = rand(2, 64, 40)
    state = chunked_equals_full(conv, x, split)
    with torch.inference_mode():
        for length in (1, 5, 8, 40):
            want = torch.nn.functional.conv_transpose1d(x[..., :length], conv.weight, conv.bias, stride)
            assert (conv(x[..., :length]) - want[..., :length * stride]).abs().max().item() <= 1e-5
    assert [t.shape for t in state.tensors()] == ([torch.Size([2, 3, kernel - stride])] if kernel > stride else [])


@pytest.mark.parametrize("split", SPLITS)
def test_convnext_and_upsample_stage_chunked(split):
    torch.manual_seed(0)
    chunked_equals_full(ConvNeXtBlock(8), rand(1, 8, 40), split)
    chunked_equals_full(UpsampleStage(8, 2), rand(1, 8, 40), split)


@pytest.mark.parametrize("split", SPLITS)
def test_residual_unit_and_decoder_block_chunked(split):
    torch.manual_seed(0)
    chunked_equals_full(ResidualUnit(4, 9), rand(1, 4, 40), split)
    chunked_equals_full(DecoderBlock(8, 4, 3), rand(1, 8, 40), split)


@pytest.mark.parametrize("split", SPLITS + [[11] * 3 + [7], [2, 38]])
@pytest.mark.parametrize("kv_heads", [4, 2])
def test_sliding_window_transformer_chunked(split, kv_heads):
    """Ring KV cache of the window (8 frames): chunks shorter and longer than the window."""
    torch.manual_seed(0)
    cfg = CodecDecoderConfig(latent_dim=12, hidden_size=16, num_attention_heads=4, num_key_value_heads=kv_heads,
                             head_dim=6, intermediate_size=24, num_hidden_layers=2, sliding_window=8)
    model = DecoderTransformer(cfg)
    with torch.no_grad():
        for layer in model.layers:  # make the attention branch matter
            layer.attn_scale.fill_(1.0)
            layer.mlp_scale.fill_(1.0)
    state = chunked_equals_full(model, rand(2, 40, 12), split, time_dim=1)
    shapes = sorted(tuple(t.shape) for t in state.tensors())
    assert shapes == sorted([(2,), (2, 8)] + [(2, kv_heads, 8, 6)] * 4)  # per row: position, ring slots; k, v


def test_window_really_limits_attention():
    """A frame W or more steps back has no influence; one W-1 back does."""
    torch.manual_seed(0)
    cfg = CodecDecoderConfig(latent_dim=8, hidden_size=8, num_attention_heads=2, num_key_value_heads=2,
                             head_dim=4, intermediate_size=8, num_hidden_layers=1, sliding_window=5)
    model = DecoderTransformer(cfg)
    with torch.no_grad():
        model.layers[0].attn_scale.fill_(1.0)
        x = rand(1, 12, 8)
        base = model(x)[0, 10]
        for past, moves in ((5, False), (6, True)):
            y = x.clone()
            y[0, past] += 1.0
            assert bool((model(y)[0, 10] - base).abs().max() > 1e-4) == moves
